//! A user rolls Deployments out with kubectl: apply, rollout status, image
//! changes within maxSurge/maxUnavailable, undo, Recreate, pause/resume, the
//! progress deadline and revision history.

mod controller_support;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use controller_support::{cluster, live_pods, wait_for, wait_jsonpath, FakeKubelet};
use kubernel_e2e::Cluster;

fn deployment(image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
{extra_spec}  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: {image}
"#
    )
}

fn rollout_status(c: &Cluster) -> Result<String> {
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
}

fn replica_sets(c: &Cluster) -> Result<Vec<String>> {
    let out = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.replicas}@{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {end}"])?;
    Ok(out.split_whitespace().map(str::to_string).collect())
}

#[test]
fn deployment_should_roll_out_update_within_surge_and_undo() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a", "node-b"], None)?;
    let strategy = "  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n";
    c.ok_stdin(&["apply", "-f", "-"], &deployment("nginx:1", strategy))?;
    let out = rollout_status(&c)?;
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(live_pods(&c, "app=web")?.len(), 3);
    let hash = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.labels.pod-template-hash}",
    ])?;
    assert!(!hash.is_empty());
    assert_eq!(
        c.ok(&[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}"
        ])?,
        format!("web-{hash}")
    );
    wait_jsonpath(&c, &["deploy", "web"], "{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.status.conditions[?(@.type==\"Available\")].status}", "1 True")?;

    // A new image: never more than 4 pods, never fewer than 3 ready.
    c.ok(&["set", "image", "deployment/web", "web=nginx:2"])?;
    let started = Instant::now();
    let (mut most, mut fewest_ready) = (0usize, usize::MAX);
    loop {
        let out = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.deletionTimestamp}|{.status.conditions[?(@.type==\"Ready\")].status}|{.spec.containers[0].image} {end}"])?;
        let live: Vec<&str> = out
            .split_whitespace()
            .filter(|p| p.starts_with('|'))
            .collect();
        most = most.max(live.len());
        fewest_ready = fewest_ready.min(live.iter().filter(|p| p.contains("|True|")).count());
        if live.len() == 3 && live.iter().all(|p| p.ends_with("nginx:2")) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("rollout did not finish: {out}");
        }
    }
    assert!(most <= 4, "maxSurge 1 exceeded: {most} pods");
    assert!(
        fewest_ready >= 3,
        "maxUnavailable 0 broken: {fewest_ready} ready"
    );
    rollout_status(&c)?;
    wait_jsonpath(
        &c,
        &["deploy", "web"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        "2",
    )?;
    let history = c.ok(&["rollout", "history", "deployment/web"])?;
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Undo goes back to nginx:1, reusing the first ReplicaSet as revision 3.
    c.ok(&["rollout", "undo", "deployment/web"])?;
    rollout_status(&c)?;
    wait_jsonpath(&c, &["deploy", "web"], "{.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}", "nginx:1 3")?;
    let rss = replica_sets(&c)?;
    assert_eq!(rss.len(), 2, "{rss:?}");
    assert!(rss.contains(&format!("web-{hash}=3@3")), "{rss:?}");

    // kubectl scale resizes the active ReplicaSet.
    c.ok(&["scale", "deployment/web", "--replicas=5"])?;
    rollout_status(&c)?;
    wait_for("5 pods", Duration::from_secs(30), || {
        let pods = live_pods(&c, "app=web")?;
        Ok(((pods.len() == 5).then_some(()), format!("{pods:?}")))
    })?;
    Ok(())
}

#[test]
fn recreate_deployment_should_remove_old_pods_before_starting_new_ones() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    c.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("nginx:1", "  strategy:\n    type: Recreate\n"),
    )?;
    rollout_status(&c)?;
    c.ok(&["set", "image", "deployment/web", "web=nginx:2"])?;
    let started = Instant::now();
    loop {
        let out = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
        ])?;
        let images: Vec<&str> = out.split_whitespace().collect();
        assert!(
            !(images.contains(&"nginx:1") && images.contains(&"nginx:2")),
            "old and new pods at once: {images:?}"
        );
        if images.len() == 3 && images.iter().all(|i| *i == "nginx:2") {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("recreate did not finish: {images:?}");
        }
    }
    rollout_status(&c)?;
    Ok(())
}

#[test]
fn paused_deployment_should_not_roll_out_until_resumed() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    c.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("nginx:1", "  revisionHistoryLimit: 1\n"),
    )?;
    rollout_status(&c)?;
    c.ok(&["rollout", "pause", "deployment/web"])?;
    c.ok(&["set", "image", "deployment/web", "web=nginx:2"])?;
    wait_jsonpath(
        &c,
        &["deploy", "web"],
        "{.status.conditions[?(@.type==\"Progressing\")].reason}",
        "DeploymentPaused",
    )?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(replica_sets(&c)?.len(), 1, "no new ReplicaSet while paused");
    c.ok(&["rollout", "resume", "deployment/web"])?;
    rollout_status(&c)?;
    c.ok(&["set", "image", "deployment/web", "web=nginx:3"])?;
    rollout_status(&c)?;
    // revisionHistoryLimit 1: the current ReplicaSet and one old one remain.
    wait_for("2 ReplicaSets", Duration::from_secs(30), || {
        let rss = replica_sets(&c)?;
        Ok(((rss.len() == 2).then_some(()), format!("{rss:?}")))
    })?;
    Ok(())
}

#[test]
fn rollout_status_should_fail_after_the_progress_deadline() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    c.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("never-ready:1", "  progressDeadlineSeconds: 2\n"),
    )?;
    let (status, out, err) =
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    assert!(!status.success(), "{out}");
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    wait_jsonpath(
        &c,
        &["deploy", "web"],
        "{.status.conditions[?(@.type==\"Progressing\")].reason}",
        "ProgressDeadlineExceeded",
    )?;
    Ok(())
}

#[test]
fn deployment_whose_selector_misses_its_template_should_be_refused() -> Result<()> {
    let c = cluster()?;
    let bad = deployment("nginx", "")
        .replace("      app: web\n  template", "      app: other\n  template");
    let (status, _, err) = c.kubectl_stdin(&["apply", "-f", "-"], &bad)?;
    assert!(!status.success());
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    Ok(())
}
