//! The scheduler on simulated nodes: pods bound (exactly once) and Running,
//! unschedulable pods explained like kube-scheduler, nodeSelector honoured, and
//! a scoring plugin enabled and its `.so` swapped while the cluster runs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{component_entry, component_lib, eventually, kubernel, Cluster};
use serde_json::Value;

const NODES: usize = 4;

fn kubelet() -> String {
    component_entry(
        "kubelet",
        "kubelet",
        &format!("runtime = \"sim\"\nnodes = {NODES}\nlease_renew_interval = \"1s\"\ncapacity = {{ cpu = \"4\", memory = \"8Gi\", pods = \"110\" }}"),
    )
}

fn scheduler(extra: &str) -> String {
    component_entry("scheduler", "scheduler", extra)
}

fn pod(name: &str, cpu: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n    resources:\n      requests:\n        cpu: {cpu}\n        memory: 64Mi\n"
    )
}

fn pods(c: &Cluster) -> Result<Vec<Value>> {
    let list: Value = serde_json::from_str(&c.ok(&["get", "pods", "-o", "json"])?)?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Waits up to 30 s for `cond` (the harness's `eventually`).
fn wait_for(what: &str, cond: impl FnMut() -> Result<bool>) -> Result<()> {
    eventually(Duration::from_secs(30), what, cond)
}

fn node_of(c: &Cluster, name: &str) -> Result<String> {
    c.ok(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"])
}

/// Waits until the nodes are registered and in the scheduler's cache (its
/// `scheduler_scheduler_cache_size{type="nodes"}`), so that spreading sees them all.
fn wait_nodes(c: &Cluster) -> Result<()> {
    wait_for("simulated nodes", || {
        Ok(c.ok(&["get", "nodes", "-o", "name"])?.lines().count() == NODES)
    })?;
    wait_for("the nodes in the scheduler's cache", || {
        let metrics = c.kernel.get("/metrics")?.1;
        Ok(metrics.lines().any(|l| {
            l.starts_with("scheduler_scheduler_cache_size{")
                && l.contains("type=\"nodes\"")
                && l.ends_with(&format!(" {NODES}"))
        }))
    })
}

#[test]
fn scheduler_should_bind_pods_and_explain_unschedulable_ones() -> Result<()> {
    let c = Cluster::start(&(kubelet() + &scheduler("")))?;
    wait_nodes(&c)?;
    for i in 0..8 {
        c.ok_stdin(&["create", "-f", "-"], &pod(&format!("p{i}"), "100m", ""))?;
    }
    wait_for("8 pods Running", || {
        Ok(pods(&c)?
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 8)
    })?;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods(&c)? {
        *per_node
            .entry(p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_node.len(),
        NODES,
        "LeastAllocated spreads: {per_node:?}"
    );
    wait_for("Scheduled events", || {
        let events = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=Scheduled",
            "-o",
            "name",
        ])?;
        Ok(events.lines().count() >= 8)
    })?;
    let scheduled = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=p0,reason=Scheduled",
        "-o",
        "jsonpath={.items[0].message}",
    ])?;
    assert!(
        scheduled.starts_with("Successfully assigned default/p0 to sim-node-"),
        "{scheduled}"
    );
    // API Priority and Fairness put the components' requests in their own levels:
    // bindings and Events in kube-scheduler's, pod status in system-nodes', node
    // status and leases in system-node-high's.
    for (schema, level) in [
        ("kube-scheduler", "workload-high"),
        ("system-nodes", "system"),
        ("system-node-high", "node-high"),
    ] {
        let dispatched = c.kernel.sample(
            "apiserver_flowcontrol_dispatched_requests_total",
            &[
                &format!("flow_schema=\"{schema}\""),
                &format!("priority_level=\"{level}\""),
            ],
        )?;
        assert!(
            dispatched.unwrap_or(0.0) > 0.0,
            "no requests dispatched in {schema}/{level}"
        );
    }

    c.ok_stdin(&["create", "-f", "-"], &pod("big", "100", ""))?;
    wait_for("PodScheduled=False on the big pod", || {
        let msg = c.ok(&[
            "get",
            "pod",
            "big",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ])?;
        Ok(msg.starts_with("0/4 nodes are available: 4 Insufficient cpu."))
    })?;
    let reason = c.ok(&[
        "get",
        "pod",
        "big",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
    ])?;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(node_of(&c, "big")?, "");
    let failed = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=big,reason=FailedScheduling",
        "-o",
        "jsonpath={.items[0].type}",
    ])?;
    assert_eq!(failed, "Warning");

    c.ok_stdin(
        &["create", "-f", "-"],
        &pod(
            "pinned",
            "100m",
            "  nodeSelector:\n    kubernetes.io/hostname: sim-node-2\n",
        ),
    )?;
    wait_for("the pinned pod bound", || {
        Ok(!node_of(&c, "pinned")?.is_empty())
    })?;
    assert_eq!(node_of(&c, "pinned")?, "sim-node-2");

    c.ok(&["taint", "nodes", "--all", "lab=only:NoSchedule"])?;
    c.ok_stdin(&["create", "-f", "-"], &pod("intolerant", "100m", ""))?;
    wait_for("the intolerant pod explained", || {
        let msg = c.ok(&[
            "get",
            "pod",
            "intolerant",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ])?;
        Ok(msg.contains("4 node(s) had untolerated taint {lab: only}"))
    })?;
    c.ok(&["taint", "nodes", "--all", "lab=only:NoSchedule-"])?;
    wait_for("the intolerant pod bound once the taint is gone", || {
        Ok(!node_of(&c, "intolerant")?.is_empty())
    })?;

    let metrics = c.kernel.get("/metrics")?.1;
    assert!(metrics.contains("scheduler_schedule_attempts_total{plugin=\"scheduler\",profile=\"default-scheduler\",result=\"scheduled\"}")
        || metrics.lines().any(|l| l.starts_with("scheduler_schedule_attempts_total") && l.contains("result=\"scheduled\"")), "attempts exported");
    Ok(())
}

#[test]
fn scoring_plugin_should_be_enabled_and_swapped_while_pods_keep_coming() -> Result<()> {
    let binpack = component_lib("scheduler-binpack").display().to_string();
    let c = Cluster::start(
        &(kubelet()
            + &scheduler(&format!(
                "[[plugin.config.external_plugins]]\nname = \"Binpack\"\npath = \"{binpack}\"\n"
            ))),
    )?;
    wait_nodes(&c)?;
    for i in 0..4 {
        c.ok_stdin(
            &["create", "-f", "-"],
            &pod(&format!("spread{i}"), "200m", ""),
        )?;
    }
    wait_for("4 spread pods bound", || {
        Ok((0..4).all(|i| node_of(&c, &format!("spread{i}")).is_ok_and(|n| !n.is_empty())))
    })?;
    let spread: std::collections::BTreeSet<String> = (0..4)
        .map(|i| node_of(&c, &format!("spread{i}")))
        .collect::<Result<_>>()?;
    assert_eq!(spread.len(), 4, "default profile spreads: {spread:?}");

    // Enable the bin-packing scorer in place, with a weight that dominates.
    let config = serde_json::json!({
        "external_plugins": [{"name": "Binpack", "path": binpack}],
        "profiles": [{"scheduler_name": "default-scheduler", "plugins": {"score": {"enabled": [{"name": "Binpack", "weight": 50}]}}}],
    });
    let (status, body) = c
        .kernel
        .send_json("PUT", "/plugins/scheduler/config", &config)?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("in_place"), "{body}");
    for i in 0..4 {
        c.ok_stdin(
            &["create", "-f", "-"],
            &pod(&format!("packed{i}"), "200m", ""),
        )?;
    }
    wait_for("4 packed pods bound", || {
        Ok((0..4).all(|i| node_of(&c, &format!("packed{i}")).is_ok_and(|n| !n.is_empty())))
    })?;
    let packed: std::collections::BTreeSet<String> = (0..4)
        .map(|i| node_of(&c, &format!("packed{i}")))
        .collect::<Result<_>>()?;
    assert_eq!(packed.len(), 1, "Binpack packs onto one node: {packed:?}");

    // Swap the scorer's .so (a fresh copy of the library) through the CLI.
    let data = c.kernel.data_dir().display().to_string();
    let (status, out, err) = kubernel(
        &["--data-dir", &data, "swap", "scheduler:Binpack", &binpack],
        &[],
    )?;
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("scheduler plugin Binpack now runs"), "{out}");
    let (status, _, err) = kubernel(
        &["--data-dir", &data, "swap", "scheduler:Nope", &binpack],
        &[],
    )?;
    assert!(!status.success());
    assert!(
        err.contains("no external scheduler plugin \"Nope\""),
        "{err}"
    );
    c.ok_stdin(&["create", "-f", "-"], &pod("after-swap", "200m", ""))?;
    wait_for("a pod bound after the swap", || {
        Ok(!node_of(&c, "after-swap")?.is_empty())
    })?;
    assert!(
        packed.contains(&node_of(&c, "after-swap")?),
        "still packing after the swap"
    );

    wait_for("a PluginSwapped event", || {
        Ok(!c
            .ok(&[
                "-n",
                "kube-system",
                "get",
                "events",
                "--field-selector",
                "reason=PluginSwapped",
                "-o",
                "name",
            ])?
            .is_empty())
    })?;
    let metrics = c.kernel.get("/metrics")?.1;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("kubernel_scheduler_plugin_swaps_total") && l.contains("Binpack")
        ),
        "swap metric"
    );
    // Every pod was bound once: one Scheduled event each.
    let scheduled = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Scheduled",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.name} {.count}{\"\\n\"}{end}",
    ])?;
    for line in scheduled.lines() {
        assert!(line.ends_with(" 1"), "bound more than once: {line}");
    }
    Ok(())
}

/// Runs `kubernel bench scheduler` on 10 nodes and 40 pods with `extra` arguments
/// and checks its report holds every line of `expected`.
fn bench_should_print(extra: &[&str], expected: &[&str]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().into_owned();
    let mut args = vec![
        "--data-dir",
        &data,
        "bench",
        "scheduler",
        "--nodes",
        "10",
        "--pods",
        "40",
        "--concurrency",
        "4",
        "--timeout-seconds",
        "60",
    ];
    args.extend_from_slice(extra);
    let (status, out, err) = kubernel(&args, &[])?;
    assert!(status.success(), "bench failed: {err}\n{out}");
    for line in expected {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn bench_scheduler_should_report_every_pod_bound_and_done() -> Result<()> {
    bench_should_print(
        &[],
        &[
            "bound:                     40 of 40",
            "Scheduled Events written:  40 of 40",
            "reported Running:          40 of 40",
            "all done:",
            "CPU per pod:",
            "apiserver 429 answers:     none",
        ],
    )
}

#[test]
fn bench_scheduler_without_running_pods_should_measure_the_scheduler_alone() -> Result<()> {
    bench_should_print(
        &["--run-pods", "false"],
        &[
            "bound:                     40 of 40",
            "Scheduled Events written:  40 of 40",
            "reported Running:          0 (--run-pods false: the nodes leave their pods alone)",
            "every binding and Event,",
        ],
    )
}
