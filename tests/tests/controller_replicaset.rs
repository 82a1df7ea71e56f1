//! A user creates, scales and edits ReplicaSets: the controller-manager keeps the
//! pod count, replaces deleted pods, adopts and releases pods by label, and reports status.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster, live_pods, wait_for, wait_jsonpath, FakeKubelet};

fn replica_set(replicas: i32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: {replicas}
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
"#
    )
}

fn wait_pod_count(c: &kubernel_e2e::Cluster, selector: &str, n: usize) -> Result<Vec<String>> {
    wait_for(
        &format!("{n} live pods with {selector}"),
        Duration::from_secs(30),
        || {
            let pods = live_pods(c, selector)?;
            let seen = format!("{pods:?}");
            Ok(((pods.len() == n).then_some(pods), seen))
        },
    )
}

#[test]
fn replicaset_should_create_replace_and_scale_its_pods() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a", "node-b"], None)?;
    c.ok_stdin(&["apply", "-f", "-"], &replica_set(3))?;
    let pods = wait_pod_count(&c, "app=web", 3)?;
    wait_jsonpath(
        &c,
        &["rs", "web"],
        "{.status.replicas} {.status.readyReplicas} {.status.availableReplicas} {.status.fullyLabeledReplicas} {.status.observedGeneration}",
        "3 3 3 3 1",
    )?;
    let owner = c.ok(&["get", "pod", &pods[0], "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.ownerReferences[0].controller}"])?;
    assert_eq!(owner, "ReplicaSet/web true");

    // A deleted pod is replaced.
    c.ok(&["delete", "pod", &pods[0], "--wait=false"])?;
    let after = wait_for("a replacement pod", Duration::from_secs(30), || {
        let now = live_pods(&c, "app=web")?;
        let seen = format!("{now:?}");
        Ok((
            (now.len() == 3 && !now.contains(&pods[0])).then_some(now),
            seen,
        ))
    })?;
    assert_eq!(after.len(), 3);

    // Scale up and down.
    c.ok(&["scale", "rs", "web", "--replicas=5"])?;
    wait_pod_count(&c, "app=web", 5)?;
    c.ok(&["scale", "rs", "web", "--replicas=1"])?;
    wait_pod_count(&c, "app=web", 1)?;
    wait_jsonpath(
        &c,
        &["rs", "web"],
        "{.status.replicas} {.status.readyReplicas} {.status.observedGeneration}",
        "1 1 3",
    )?;
    Ok(())
}

#[test]
fn replicaset_should_adopt_matching_orphans_and_release_relabelled_pods() -> Result<()> {
    let c = cluster()?;
    // An orphan pod with the selector's labels exists before the ReplicaSet.
    c.ok(&["run", "orphan", "--image=nginx", "--labels=app=web"])?;
    c.ok_stdin(&["apply", "-f", "-"], &replica_set(2))?;
    let pods = wait_pod_count(&c, "app=web", 2)?;
    assert!(pods.contains(&"orphan".to_string()), "{pods:?}");
    wait_jsonpath(
        &c,
        &["pod", "orphan"],
        "{.metadata.ownerReferences[0].name}",
        "web",
    )?;

    // Relabelled: released (no owner), and a new pod takes its place.
    c.ok(&["label", "pod", "orphan", "app=other", "--overwrite"])?;
    wait_jsonpath(
        &c,
        &["pod", "orphan"],
        "{.metadata.ownerReferences[*].name}",
        "",
    )?;
    wait_pod_count(&c, "app=web", 2)?;
    Ok(())
}

#[test]
fn replicaset_should_report_available_replicas_after_min_ready_seconds() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    let manifest = replica_set(2).replace(
        "spec:\n  replicas: 2",
        "spec:\n  minReadySeconds: 2\n  replicas: 2",
    );
    c.ok_stdin(&["apply", "-f", "-"], &manifest)?;
    wait_jsonpath(&c, &["rs", "web"], "{.status.readyReplicas}", "2")?;
    let available = c.ok(&[
        "get",
        "rs",
        "web",
        "-o",
        "jsonpath={.status.availableReplicas}",
    ])?;
    assert!(
        available == "0" || available.is_empty() || available == "2",
        "{available}"
    );
    wait_jsonpath(&c, &["rs", "web"], "{.status.availableReplicas}", "2")?;
    Ok(())
}

#[test]
fn replicaset_with_negative_replicas_should_be_refused() -> Result<()> {
    let c = cluster()?;
    let (status, _, err) = c.kubectl_stdin(&["apply", "-f", "-"], &replica_set(-1))?;
    assert!(!status.success());
    assert!(err.contains("spec.replicas"), "{err}");
    Ok(())
}
