//! A user creates and deletes namespaces: each gets a `default` ServiceAccount;
//! deleting one marks it Terminating, removes everything in it, then removes it.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster, wait_for, wait_jsonpath, FakeKubelet};

#[test]
fn namespace_deletion_should_remove_everything_in_it() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a"], None)?;
    c.ok(&["create", "namespace", "team"])?;
    wait_jsonpath(
        &c,
        &["serviceaccount", "default", "-n", "team"],
        "{.metadata.name}",
        "default",
    )?;
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
        "-n",
        "team",
    ])?;
    c.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=b",
        "-n",
        "team",
    ])?;
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "-n",
        "team",
    ])?;
    c.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "team",
        "--timeout=60s",
    ])?;

    c.ok(&["delete", "namespace", "team", "--wait=false"])?;
    let phase = c.ok(&["get", "namespace", "team", "-o", "jsonpath={.status.phase}"]);
    if let Ok(p) = phase {
        assert_eq!(p, "Terminating");
    }
    let (status, _, err) = c.kubectl(&["create", "configmap", "late", "-n", "team"])?;
    assert!(
        !status.success() && (err.contains("being terminated") || err.contains("not found")),
        "{err}"
    );
    wait_for("namespace team gone", Duration::from_secs(60), || {
        let (status, out, err) = c.kubectl(&["get", "namespace", "team"])?;
        Ok((
            (!status.success() && err.contains("NotFound")).then_some(()),
            out,
        ))
    })?;
    for kind in [
        "pods",
        "replicasets",
        "deployments",
        "configmaps",
        "services",
        "serviceaccounts",
    ] {
        let out = c.ok(&["get", kind, "-n", "team", "-o", "name"])?;
        assert!(out.trim().is_empty(), "{kind} left in team: {out}");
    }
    // The default namespace keeps its ServiceAccount.
    wait_jsonpath(
        &c,
        &["serviceaccount", "default"],
        "{.metadata.name}",
        "default",
    )?;
    Ok(())
}
