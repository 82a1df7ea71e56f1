//! A user deletes owners with each propagation policy: the garbage collector
//! removes (Background, Foreground) or orphans (Orphan) their dependents, and
//! collects objects whose owner does not exist.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster, live_pods, wait_for, wait_jsonpath, FakeKubelet};
use kubernel_e2e::Cluster;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
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

fn names(c: &Cluster, kind: &str) -> Result<Vec<String>> {
    let out = c.ok(&[
        "get",
        kind,
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {end}",
    ])?;
    Ok(out.split_whitespace().map(str::to_string).collect())
}

fn wait_gone(c: &Cluster, kind: &str) -> Result<()> {
    wait_for(&format!("no {kind} left"), Duration::from_secs(30), || {
        let left = names(c, kind)?;
        Ok((left.is_empty().then_some(()), format!("{left:?}")))
    })
}

fn deploy(c: &Cluster) -> Result<()> {
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT)?;
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    Ok(())
}

#[test]
fn kubectl_delete_deployment_should_remove_its_replicasets_and_pods() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    deploy(&c)?;
    c.ok(&["delete", "deployment", "web"])?;
    wait_gone(&c, "rs")?;
    wait_gone(&c, "pods")?;
    Ok(())
}

#[test]
fn foreground_deletion_should_remove_dependents_before_the_owner() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    deploy(&c)?;
    let out = c.ok(&[
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ])?;
    assert!(out.contains("deleted"), "{out}");
    c.ok(&["wait", "--for=delete", "deployment/web", "--timeout=60s"])?;
    assert!(names(&c, "rs")?.is_empty());
    assert!(live_pods(&c, "app=web")?.is_empty());
    Ok(())
}

#[test]
fn orphan_deletion_should_keep_the_dependents_without_owner() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    deploy(&c)?;
    c.ok(&["delete", "deployment", "web", "--cascade=orphan"])?;
    let rss = names(&c, "rs")?;
    assert_eq!(rss.len(), 1, "{rss:?}");
    wait_jsonpath(
        &c,
        &["rs", &rss[0]],
        "{.metadata.ownerReferences[*].name}",
        "",
    )?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        live_pods(&c, "app=web")?.len(),
        2,
        "pods stay with their ReplicaSet"
    );
    Ok(())
}

#[test]
fn object_whose_owner_does_not_exist_should_be_collected() -> Result<()> {
    let c = cluster()?;
    let manifest = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: stray
  labels:
    app: web
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: gone
    uid: 3a7b0c1e-0000-4000-8000-000000000000
data:
  k: v
"#;
    c.ok_stdin(&["create", "-f", "-"], manifest)?;
    wait_gone(&c, "configmaps")?;
    Ok(())
}
