//! A node stops heartbeating: after NodeMonitorGracePeriod it is Ready=Unknown
//! and tainted unreachable, its pods are evicted after their toleration and
//! recreated on the healthy node, and the taints leave when it comes back.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster_with, wait_for, wait_jsonpath, FakeKubelet};
use kubernel_e2e::Cluster;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx
"#;

/// `pod=node deleting` for every pod of the Deployment.
fn placement(c: &Cluster) -> Result<Vec<(String, String, bool)>> {
    let out = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}={.metadata.deletionTimestamp} {end}"])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| {
            let mut parts = p.splitn(3, '=');
            Some((
                parts.next()?.to_string(),
                parts.next()?.to_string(),
                !parts.next()?.is_empty(),
            ))
        })
        .collect())
}

fn metric_line(c: &Cluster, name: &str, zone: &str) -> Result<Option<f64>> {
    let (_, body) = c.kernel.get("/metrics")?;
    Ok(body
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("zone=\"{zone}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok()))
}

#[test]
fn pods_of_a_silent_node_should_be_evicted_and_recreated_elsewhere() -> Result<()> {
    let c = cluster_with(
        "default_not_ready_toleration_seconds = 6\ndefault_unreachable_toleration_seconds = 6\n",
        "node_monitor_period = \"1s\"\nnode_monitor_grace_period = \"4s\"\npod_eviction_timeout = \"6s\"\n",
    )?;
    let kubelet = FakeKubelet::start(&c, &["node-a", "node-b"], Some("zone-a"))?;
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT)?;
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let on_a: Vec<String> = placement(&c)?
        .into_iter()
        .filter(|(_, n, _)| n == "node-a")
        .map(|(p, _, _)| p)
        .collect();
    assert!(!on_a.is_empty(), "round-robin placed pods on node-a");

    kubelet.pause("node-a");
    wait_jsonpath(
        &c,
        &["node", "node-a"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "Unknown",
    )?;
    wait_jsonpath(
        &c,
        &["node", "node-a"],
        "{.spec.taints[?(@.effect==\"NoExecute\")].key}",
        "node.kubernetes.io/unreachable",
    )?;
    let health = metric_line(&c, "node_collector_zone_health", "zone-a")?;
    assert_eq!(health, Some(50.0), "one of two nodes ready");

    // After the 6 s toleration the pods on node-a are evicted and replaced on node-b.
    wait_for(
        "pods evicted from node-a and replaced on node-b",
        Duration::from_secs(40),
        || {
            let pods = placement(&c)?;
            let evicted = on_a.iter().all(|p| {
                pods.iter().any(|(n, _, deleting)| n == p && *deleting)
                    || !pods.iter().any(|(n, _, _)| n == p)
            });
            let live_b = pods
                .iter()
                .filter(|(_, node, deleting)| node == "node-b" && !deleting)
                .count();
            Ok(((evicted && live_b == 4).then_some(()), format!("{pods:?}")))
        },
    )?;
    assert!(metric_line(&c, "node_collector_evictions_total", "zone-a")?.unwrap_or(0.0) >= 1.0);

    // The node comes back: taints removed.
    kubelet.resume("node-a")?;
    wait_jsonpath(&c, &["node", "node-a"], "{.spec.taints[*].key}", "")?;
    wait_jsonpath(
        &c,
        &["node", "node-a"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    )?;
    Ok(())
}
