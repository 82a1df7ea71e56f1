//! The disruption controller keeps PodDisruptionBudget status: with 3 ready pods and
//! `minAvailable: 2`, one disruption is allowed (`kubectl get pdb` shows it); a pod
//! turning unready or going takes it away.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster, live_pods, wait_for, wait_jsonpath, FakeKubelet};

#[test]
fn budget_status_should_count_healthy_pods_and_allowed_disruptions() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ])?;
    c.ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ])?;
    wait_jsonpath(
        &c,
        &["pdb", "web"],
        "{.status.expectedPods} {.status.currentHealthy} {.status.desiredHealthy} {.status.disruptionsAllowed}",
        "3 3 2 1",
    )?;
    let table = c.ok(&["get", "pdb", "web"])?;
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[..4] == ["web", "2", "N/A", "1"],
        "{table}"
    );
    let condition = c.ok(&[
        "get",
        "pdb",
        "web",
        "-o",
        "jsonpath={.status.conditions[0].type}={.status.conditions[0].status}",
    ])?;
    assert_eq!(condition, "DisruptionAllowed=True");

    // Scale down to 2: no disruption left.
    c.ok(&["scale", "deployment", "web", "--replicas=2"])?;
    wait_for("two pods", Duration::from_secs(30), || {
        let pods = live_pods(&c, "app=web")?;
        Ok(((pods.len() == 2).then_some(()), format!("{pods:?}")))
    })?;
    wait_jsonpath(
        &c,
        &["pdb", "web"],
        "{.status.disruptionsAllowed} {.status.conditions[0].reason}",
        "0 InsufficientPods",
    )?;
    Ok(())
}
