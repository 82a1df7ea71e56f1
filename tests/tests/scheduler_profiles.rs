//! Two scheduler profiles side by side on simulated nodes: `default-scheduler`
//! spreads its pods (LeastAllocated), `binpack-scheduler` packs its own with the
//! out-of-tree Binpack scorer; each places only the pods naming it, records its
//! Events under its own name, and a pod naming no profile is left alone.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{component_entry, component_lib, eventually, Cluster};
use serde_json::Value;

const NODES: usize = 4;

fn pod(name: &str, scheduler: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  schedulerName: {scheduler}\n  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n    resources:\n      requests:\n        cpu: 200m\n        memory: 64Mi\n"
    )
}

fn node_of(c: &Cluster, name: &str) -> Result<String> {
    c.ok(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"])
}

#[test]
fn two_profiles_should_each_place_their_own_pods_by_their_own_policy() -> Result<()> {
    let binpack = component_lib("scheduler-binpack").display().to_string();
    let kubelet = component_entry(
        "kubelet",
        "kubelet",
        &format!("runtime = \"sim\"\nnodes = {NODES}\nlease_renew_interval = \"1s\"\ncapacity = {{ cpu = \"4\", memory = \"8Gi\", pods = \"110\" }}"),
    );
    let scheduler = component_entry(
        "scheduler",
        "scheduler",
        &format!(
            "[[plugin.config.external_plugins]]\nname = \"Binpack\"\npath = \"{binpack}\"\n\
             [[plugin.config.profiles]]\nscheduler_name = \"default-scheduler\"\n\
             [[plugin.config.profiles]]\nscheduler_name = \"binpack-scheduler\"\n\
             plugins.score.enabled = [{{ name = \"Binpack\", weight = 50 }}]\n"
        ),
    );
    let c = Cluster::start(&(kubelet + &scheduler))?;
    eventually(Duration::from_secs(30), "simulated nodes", || {
        Ok(c.ok(&["get", "nodes", "-o", "name"])?.lines().count() == NODES)
    })?;
    // Spreading must see every node: wait until they are in the scheduler's cache.
    eventually(
        Duration::from_secs(30),
        "the nodes in the scheduler's cache",
        || {
            let metrics = c.kernel.get("/metrics")?.1;
            Ok(metrics.lines().any(|l| {
                l.starts_with("scheduler_scheduler_cache_size{")
                    && l.contains("type=\"nodes\"")
                    && l.ends_with(&format!(" {NODES}"))
            }))
        },
    )?;
    let nodes = |prefix: &str| -> Result<BTreeSet<String>> {
        (0..4)
            .map(|i| node_of(&c, &format!("{prefix}{i}")))
            .collect()
    };
    let all_bound = |prefix: &str| {
        eventually(
            Duration::from_secs(30),
            &format!("4 {prefix} pods bound"),
            || Ok(!nodes(prefix)?.contains("")),
        )
    };
    // Binpack first (ties between empty nodes are broken at random, so spreading
    // pods created in between could split the pack); then the spreading profile,
    // which sees the packed node as the most loaded.
    for i in 0..4 {
        c.ok_stdin(
            &["create", "-f", "-"],
            &pod(&format!("packed{i}"), "binpack-scheduler"),
        )?;
    }
    all_bound("packed")?;
    for i in 0..4 {
        c.ok_stdin(
            &["create", "-f", "-"],
            &pod(&format!("spread{i}"), "default-scheduler"),
        )?;
    }
    c.ok_stdin(&["create", "-f", "-"], &pod("orphan", "no-such-scheduler"))?;
    all_bound("spread")?;
    let packed = nodes("packed")?;
    let spread = nodes("spread")?;
    assert_eq!(packed.len(), 1, "binpack-scheduler packs: {packed:?}");
    assert_eq!(spread.len(), 3, "default-scheduler spreads: {spread:?}");
    assert!(
        spread.is_disjoint(&packed),
        "default-scheduler avoids the packed node: {spread:?} {packed:?}"
    );

    // Events name the profile that placed the pod.
    for (name, component) in [
        ("packed0", "binpack-scheduler"),
        ("spread0", "default-scheduler"),
    ] {
        let out = c.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason=Scheduled"),
            "-o",
            "json",
        ])?;
        let list: Value = serde_json::from_str(&out)?;
        assert_eq!(
            list["items"][0]["source"]["component"], component,
            "{name}: {out}"
        );
    }
    // No profile named `no-such-scheduler`: the pod waits, without any Event from us.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node_of(&c, "orphan")?, "");
    let orphan_events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=orphan",
        "-o",
        "name",
    ])?;
    assert_eq!(orphan_events.trim(), "");
    Ok(())
}
