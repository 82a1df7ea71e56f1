//! Preemption on simulated nodes: a high-priority pod that fits nowhere evicts a
//! lower-priority pod, is nominated to that node, then binds there; a
//! PodDisruptionBudget steers the choice away from the pods it protects; the
//! Events say what happened, with kube-scheduler's texts.
//!
//! Priorities are set with `spec.priority` directly: the apiserver does not serve
//! scheduling.k8s.io/v1 PriorityClass objects (its Priority admission knows only
//! the two system classes).

use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{component_entry, eventually, Cluster};
use serde_json::Value;

fn cluster() -> Result<Cluster> {
    let kubelet = component_entry(
        "kubelet",
        "kubelet",
        "runtime = \"sim\"\nnodes = 2\nlease_renew_interval = \"1s\"\ncapacity = { cpu = \"2\", memory = \"8Gi\", pods = \"110\" }",
    );
    let scheduler = component_entry("scheduler", "scheduler", "");
    Cluster::start(&(kubelet + &scheduler))
}

/// A pod asking for one CPU at `priority`, optionally pinned to `node` and labelled.
fn pod(name: &str, priority: i32, node: Option<&str>, labels: &str) -> String {
    let selector = node
        .map(|n| format!("  nodeSelector:\n    kubernetes.io/hostname: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  priority: {priority}\n  terminationGracePeriodSeconds: 1\n{selector}  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n    resources:\n      requests:\n        cpu: \"1\"\n"
    )
}

fn get_pod(c: &Cluster, name: &str) -> Result<Option<Value>> {
    let (status, out, err) = c.kubectl(&["get", "pod", name, "-o", "json"])?;
    if !status.success() {
        if err.contains("NotFound") || err.contains("not found") {
            return Ok(None);
        }
        anyhow::bail!("kubectl get pod {name}: {err}");
    }
    Ok(Some(serde_json::from_str(&out)?))
}

fn events(c: &Cluster, selector: &str) -> Result<Vec<Value>> {
    let out = c.ok(&["get", "events", "--field-selector", selector, "-o", "json"])?;
    let list: Value = serde_json::from_str(&out)?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

#[test]
fn a_high_priority_pod_should_preempt_an_unprotected_victim_then_bind() -> Result<()> {
    let c = cluster()?;
    eventually(Duration::from_secs(30), "2 simulated nodes", || {
        Ok(c.ok(&["get", "nodes", "-o", "name"])?.lines().count() == 2)
    })?;
    // sim-node-0 runs the least important pods, but a budget protects them;
    // sim-node-1 runs more important, unprotected ones. Both nodes are full.
    for (name, prio, node, labels) in [
        ("low0", 5, "sim-node-0", "tier: protected"),
        ("low1", 5, "sim-node-0", "tier: protected"),
        ("mid0", 10, "sim-node-1", "tier: batch"),
        ("mid1", 10, "sim-node-1", "tier: batch"),
    ] {
        c.ok_stdin(&["create", "-f", "-"], &pod(name, prio, Some(node), labels))?;
    }
    c.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: protected\nspec:\n  minAvailable: 2\n  selector:\n    matchLabels:\n      tier: protected\n",
    )?;
    eventually(Duration::from_secs(30), "4 low pods Running", || {
        let mut running = 0;
        for name in ["low0", "low1", "mid0", "mid1"] {
            if get_pod(&c, name)?.is_some_and(|p| p["status"]["phase"] == "Running") {
                running += 1;
            }
        }
        Ok(running == 4)
    })?;

    c.ok_stdin(&["create", "-f", "-"], &pod("high", 1000, None, ""))?;
    let high_uid = get_pod(&c, "high")?
        .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
        .unwrap_or_default();
    eventually(Duration::from_secs(30), "high nominated and bound", || {
        let Some(p) = get_pod(&c, "high")? else {
            return Ok(false);
        };
        Ok(p["status"]["nominatedNodeName"] == "sim-node-1"
            && p["spec"]["nodeName"] == "sim-node-1")
    })?;
    // Exactly one unprotected victim went; the protected pods stayed.
    let mut gone = Vec::new();
    for name in ["low0", "low1", "mid0", "mid1"] {
        if get_pod(&c, name)?.is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null()) {
            gone.push(name);
        }
    }
    assert_eq!(gone.len(), 1, "one victim: {gone:?}");
    assert!(
        gone[0].starts_with("mid"),
        "the budget protects low0/low1: {gone:?}"
    );

    let preempted = events(
        &c,
        &format!("involvedObject.name={},reason=Preempted", gone[0]),
    )?;
    assert_eq!(preempted.len(), 1, "{preempted:?}");
    assert_eq!(
        preempted[0]["message"],
        format!("Preempted by pod {high_uid} on node sim-node-1").as_str()
    );
    assert_eq!(preempted[0]["source"]["component"], "default-scheduler");
    let failed = events(&c, "involvedObject.name=high,reason=FailedScheduling")?;
    assert!(
        failed
            .iter()
            .any(|e| e["message"] == "0/2 nodes are available: 2 Insufficient cpu."),
        "{failed:?}"
    );
    let scheduled = events(&c, "involvedObject.name=high,reason=Scheduled")?;
    assert_eq!(
        scheduled.first().map(|e| e["message"].clone()),
        Some(Value::from(
            "Successfully assigned default/high to sim-node-1"
        ))
    );

    // A pod of lower priority than everything running cannot preempt, and says why.
    c.ok_stdin(&["create", "-f", "-"], &pod("lowest", 1, None, ""))?;
    eventually(Duration::from_secs(30), "lowest explained", || {
        Ok(events(&c, "involvedObject.name=lowest,reason=FailedScheduling")?
            .iter()
            .any(|e| {
                e["message"]
                    == "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
                        2 No preemption victims found for incoming pod.."
            }))
    })?;
    let metrics = c.kernel.get("/metrics")?.1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("scheduler_preemption_attempts_total") && !l.ends_with(" 0")),
        "preemption attempts counted"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("scheduler_preemption_victims_count") && l.ends_with(" 1")),
        "one preemption with victims"
    );
    Ok(())
}
