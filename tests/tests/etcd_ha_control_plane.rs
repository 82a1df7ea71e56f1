//! A highly available control plane: two control-plane processes (apiserver, scheduler
//! and controller-manager each, leader election on) share one etcd, and a worker
//! process with simulated nodes talks to the second. Pods are created through the
//! second apiserver at a steady rate; the first process, holding both Leases, is
//! killed with SIGKILL in the middle. The second's scheduler and controller-manager
//! take over within the lease duration, every pod is bound exactly once, and a
//! Deployment scaled after the failover gets its pods.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kubernel_e2e::{component_entry, eventually, kernel_section, signal, Cluster, Etcd, Kernel};
use serde_json::Value;

const PODS: usize = 150;
const NODES: usize = 4;

fn control_plane(etcd: &Etcd) -> Result<Cluster> {
    let extra = component_entry(
        "scheduler",
        "scheduler",
        "[plugin.config.leader_election]\nleader_elect = true\nlease_duration = \"2s\"\nretry_period = \"200ms\"\n",
    ) + &component_entry(
        "controller-manager",
        "controller-manager",
        "[plugin.config.leader_election]\nlease_duration = \"2s\"\nretry_period = \"200ms\"\n",
    );
    Cluster::start_on_etcd(&etcd.endpoint, &extra)
}

fn worker(api: &str) -> Result<Kernel> {
    let config = kernel_section()
        + &component_entry(
            "kubelet",
            "kubelet",
            &format!(
                "runtime = \"sim\"\nnodes = {NODES}\nlease_renew_interval = \"1s\"\n\
                 [plugin.config.client]\nserver = \"{api}\"\n"
            ),
        );
    Kernel::start(&config, &[])
}

/// `leader_election_master_status{name=...}` of one process (0 when absent).
fn leading(k: &Kernel, lease: &str) -> f64 {
    let Ok((_, body)) = k.get("/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with("leader_election_master_status{"))
        .filter(|l| l.contains(&format!("name=\"{lease}\"")))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn json(c: &Cluster, path: &str) -> Result<Value> {
    let (status, body) = c.get(path)?;
    if status != 200 {
        bail!("GET {path}: {status} {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

#[test]
fn the_standby_control_plane_should_take_over_without_binding_a_pod_twice() -> Result<()> {
    let etcd = Etcd::start()?;
    let a = control_plane(&etcd)?;
    let led = eventually(Duration::from_secs(30), "A leads both", || {
        Ok(leading(&a.kernel, "kube-scheduler") == 1.0
            && leading(&a.kernel, "kube-controller-manager") == 1.0)
    });
    if let Err(e) = led {
        bail!("{e}\n{}", a.kernel.logs());
    }
    let b = control_plane(&etcd)?;
    let _worker = worker(&b.api)?;
    eventually(Duration::from_secs(30), "nodes registered via B", || {
        let nodes = json(&a, "/api/v1/nodes")?;
        Ok(nodes["items"].as_array().map_or(0, Vec::len) == NODES)
    })?;
    assert_eq!(leading(&b.kernel, "kube-scheduler"), 0.0);
    b.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ])?;

    // Pods through B at a steady rate; A is killed a third of the way in.
    let started = Instant::now();
    let mut killed_at = None;
    for i in 0..PODS {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p-{i}"}},"spec":{{"containers":[{{"name":"c","image":"nginx"}}]}}}}"#
        );
        let (status, text) = b.send(
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            body.as_bytes(),
        )?;
        assert_eq!(status, 201, "create p-{i} through B: {text}");
        if i == PODS / 3 {
            signal(a.kernel.pid(), "KILL");
            killed_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let killed_at = killed_at.unwrap_or(started);
    eventually(Duration::from_secs(20), "B leads both", || {
        Ok(leading(&b.kernel, "kube-scheduler") == 1.0
            && leading(&b.kernel, "kube-controller-manager") == 1.0)
    })?;
    println!(
        "B leads {:.1} s after A was killed",
        killed_at.elapsed().as_secs_f64()
    );

    eventually(
        Duration::from_secs(60),
        "every pod bound and Running",
        || {
            let pods = json(&b, "/api/v1/namespaces/default/pods")?;
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let running = items
                .iter()
                .filter(|p| {
                    p["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("p-"))
                })
                .filter(|p| p["status"]["phase"] == "Running")
                .count();
            Ok(running == PODS)
        },
    )?;
    // One Scheduled event per pod, from whichever scheduler bound it.
    let events = json(
        &b,
        "/api/v1/namespaces/default/events?fieldSelector=reason%3DScheduled",
    )?;
    let mut per_pod: BTreeMap<String, i64> = BTreeMap::new();
    for e in events["items"].as_array().cloned().unwrap_or_default() {
        if let Some(name) = e["involvedObject"]["name"].as_str() {
            if name.starts_with("p-") {
                *per_pod.entry(name.to_string()).or_default() += e["count"].as_i64().unwrap_or(1);
            }
        }
    }
    let twice: Vec<_> = per_pod.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "scheduled more than once: {twice:?}");
    // Events are written after the binding and best-effort: the one or two pods A bound
    // in its last instant may have lost theirs with it.
    assert!(
        per_pod.len() + 2 >= PODS,
        "Scheduled events for only {} of {PODS} pods",
        per_pod.len()
    );

    // The controller-manager's successor keeps the Deployment at its replicas.
    b.ok(&["scale", "deployment", "web", "--replicas=4"])?;
    eventually(Duration::from_secs(30), "4 web pods Running", || {
        let pods = json(
            &b,
            "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&fieldSelector=status.phase%3DRunning",
        )?;
        Ok(pods["items"].as_array().map_or(0, Vec::len) == 4)
    })?;
    Ok(())
}
