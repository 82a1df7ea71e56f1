//! The sim kubelet registers simulated nodes that kubectl sees Ready, renews their Leases,
//! and stops renewing a node's Lease while that node is paused.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kubernel_e2e::{component_entry, Cluster};
use serde_json::Value;

const NODES: usize = 50;

fn start() -> Result<Cluster> {
    Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!(
            "runtime = \"sim\"\nnodes = {NODES}\nzones = [\"zone-a\", \"zone-b\"]\nlabels = {{ tier = \"lab\" }}\ntaints = [{{ key = \"dedicated\", value = \"lab\", effect = \"NoSchedule\" }}]\nlease_renew_interval = \"300ms\"\npaused_nodes = [\"sim-node-7\"]"
        ),
    ))
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            _ if Instant::now() > deadline => {
                bail!("timed out after {timeout:?} waiting for {what}")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn ready_nodes(c: &Cluster) -> Result<usize> {
    let out = c.ok(&["get", "nodes", "--no-headers"])?;
    Ok(out
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
        .count())
}

fn renew_time(c: &Cluster, node: &str) -> Result<String> {
    c.ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        node,
        "-o",
        "jsonpath={.spec.renewTime}",
    ])
}

/// Waits until `node`'s Lease is renewed past its current renewTime.
fn wait_renewed(c: &Cluster, node: &str) -> Result<()> {
    let before = renew_time(c, node)?;
    wait_for(
        &format!("{node}'s Lease renewed"),
        Duration::from_secs(20),
        || Ok(renew_time(c, node)? != before),
    )
}

/// Asserts `node`'s Lease is not renewed during `quiet`.
fn assert_not_renewed(c: &Cluster, node: &str, quiet: Duration) -> Result<()> {
    let before = renew_time(c, node)?;
    std::thread::sleep(quiet);
    let after = renew_time(c, node)?;
    assert_eq!(before, after, "{node}'s Lease was renewed while paused");
    Ok(())
}

#[test]
fn sim_kubelet_should_register_ready_nodes_with_their_templates() -> Result<()> {
    let c = start()?;
    wait_for("50 Ready nodes", Duration::from_secs(60), || {
        Ok(ready_nodes(&c)? == NODES)
    })?;
    let node: Value = serde_json::from_str(&c.ok(&["get", "node", "sim-node-1", "-o", "json"])?)?;
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "sim-node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["kubernel.io/sim"], "true");
    assert_eq!(labels["topology.kubernetes.io/zone"], "zone-b");
    assert_eq!(labels["tier"], "lab");
    assert_eq!(node["spec"]["podCIDR"], "10.128.1.0/24");
    assert_eq!(node["spec"]["taints"][0]["key"], "dedicated");
    let status = &node["status"];
    assert_eq!(status["capacity"]["cpu"], "32");
    assert_eq!(status["allocatable"]["pods"], "110");
    assert_eq!(status["addresses"][0]["type"], "InternalIP");
    assert_eq!(status["addresses"][0]["address"], "10.200.0.2");
    assert_eq!(status["nodeInfo"]["operatingSystem"], "linux");
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |kind: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| c["status"].clone())
    };
    assert_eq!(condition("Ready"), Some("True".into()));
    assert_eq!(condition("MemoryPressure"), Some("False".into()));
    assert_eq!(condition("DiskPressure"), Some("False".into()));
    assert_eq!(condition("PIDPressure"), Some("False".into()));
    let leases = c.ok(&["get", "leases", "-n", "kube-node-lease", "--no-headers"])?;
    assert_eq!(leases.lines().count(), NODES, "{leases}");
    Ok(())
}

#[test]
fn sim_kubelet_should_renew_leases_except_for_paused_nodes() -> Result<()> {
    let c = start()?;
    wait_for("50 Ready nodes", Duration::from_secs(60), || {
        Ok(ready_nodes(&c)? == NODES)
    })?;
    wait_renewed(&c, "sim-node-1")?;
    wait_renewed(&c, "sim-node-49")?;
    // Paused by config from the start.
    assert_not_renewed(&c, "sim-node-7", Duration::from_secs(2))?;

    // Paused by annotation at run time, then resumed.
    c.ok(&[
        "annotate",
        "node",
        "sim-node-2",
        "kubernel.io/sim-paused=true",
    ])?;
    std::thread::sleep(Duration::from_millis(700));
    assert_not_renewed(&c, "sim-node-2", Duration::from_secs(2))?;
    wait_renewed(&c, "sim-node-3")?;
    c.ok(&["annotate", "node", "sim-node-2", "kubernel.io/sim-paused-"])?;
    wait_renewed(&c, "sim-node-2")?;
    assert_not_renewed(&c, "sim-node-7", Duration::from_millis(800))?;
    Ok(())
}
