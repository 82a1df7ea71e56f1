//! The Node authorizer through the real kubectl with node kubeconfigs issued by
//! `kubernel kubeconfig` (`system:node:<name>` in `system:nodes`): a kubelet writes
//! its own Node, Lease and pods' status, reads only the secrets its pods refer to,
//! and gets upstream's 403 text for the rest.

use anyhow::Result;
use kubernel_e2e::{kubectl_as, Cluster};

fn node(name: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n")
}

/// A pod bound to `node` that mounts the secret `secret`.
fn pod(name: &str, node: &str, secret: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: busybox:1.36
  volumes:
  - name: s
    secret:
      secretName: {secret}
"#
    )
}

fn lease(name: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: kube-node-lease\nspec:\n  holderIdentity: {name}\n"
    )
}

const READY: &str = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}"#;
const RUNNING: &str = r#"{"status":{"phase":"Running"}}"#;

#[test]
fn a_node_should_reach_only_its_own_objects() -> Result<()> {
    let c = Cluster::start("")?;
    let dir = tempfile::tempdir()?;
    let n1 = c.issue_kubeconfig(dir.path(), "system:node:n1", &["system:nodes"])?;
    for name in ["n1", "n2"] {
        c.ok_stdin(&["create", "-f", "-"], &node(name))?;
    }
    c.ok(&["create", "secret", "generic", "s1", "--from-literal=k=v"])?;
    c.ok(&["create", "secret", "generic", "s2", "--from-literal=k=v"])?;
    c.ok_stdin(&["create", "-f", "-"], &pod("p1", "n1", "s1"))?;
    c.ok_stdin(&["create", "-f", "-"], &pod("p2", "n2", "s2"))?;

    // Its own Node and its status; every Node readable.
    let (ok, _, err) = kubectl_as(
        &n1,
        &[
            "patch",
            "node",
            "n1",
            "--subresource=status",
            "--type=merge",
            "-p",
            READY,
        ],
        "",
    )?;
    assert!(ok, "{err}");
    let status = c.ok(&[
        "get",
        "node",
        "n1",
        "-o",
        "jsonpath={.status.conditions[0].reason}",
    ])?;
    assert_eq!(status, "KubeletReady");
    let (ok, out, err) = kubectl_as(&n1, &["get", "nodes", "-o", "name"], "")?;
    assert!(ok, "{err}");
    assert!(out.contains("node/n2"), "{out}");
    let (ok, _, err) = kubectl_as(&n1, &["label", "node", "n1", "zone=a"], "")?;
    assert!(ok, "{err}");
    // NodeRestriction: not the labels reserved to the cluster, not its taints.
    for (label, message) in [
        (
            "node-restriction.kubernetes.io/pool=gpu",
            "node-restriction.kubernetes.io/pool",
        ),
        (
            "node-role.kubernetes.io/worker=",
            "node-role.kubernetes.io/worker",
        ),
    ] {
        let (ok, _, err) = kubectl_as(&n1, &["label", "node", "n1", label], "")?;
        assert!(!ok, "{label} set by the node");
        assert!(
            err.contains(&format!(
                "node \"system:node:n1\" is not allowed to modify labels: {message}"
            )) || err.contains(&format!(
                "node \"n1\" is not allowed to modify labels: {message}"
            )),
            "{err}"
        );
    }
    let (ok, _, err) = kubectl_as(&n1, &["taint", "node", "n1", "dedicated=x:NoSchedule"], "")?;
    assert!(!ok, "taint set by the node");
    assert!(err.contains("is not allowed to modify taints"), "{err}");
    c.ok(&[
        "label",
        "node",
        "n1",
        "node-restriction.kubernetes.io/pool=gpu",
    ])?;
    let (ok, _, err) = kubectl_as(&n1, &["label", "node", "n1", "zone=b", "--overwrite"], "")?;
    assert!(
        ok,
        "a label the cluster set stays, others still change: {err}"
    );

    // Not another node's.
    let (ok, _, err) = kubectl_as(
        &n1,
        &[
            "patch",
            "node",
            "n2",
            "--subresource=status",
            "--type=merge",
            "-p",
            READY,
        ],
        "",
    )?;
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden): nodes \"n2\" is forbidden: User \"system:node:n1\" cannot patch resource \"nodes/status\" in API group \"\" at the cluster scope"),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(&n1, &["delete", "node", "n2"], "")?;
    assert!(!ok);
    assert!(
        err.contains("nodes \"n2\" is forbidden: User \"system:node:n1\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope"),
        "{err}"
    );
    // Creating a Node: only one named after itself (NodeRestriction).
    let (ok, _, err) = kubectl_as(&n1, &["create", "-f", "-"], &node("n3"))?;
    assert!(!ok);
    assert!(
        err.contains("nodes \"n3\" is forbidden: node \"n1\" is not allowed to modify node \"n3\""),
        "{err}"
    );

    // Its own Lease in kube-node-lease only.
    if !c
        .kubectl(&["get", "namespace", "kube-node-lease"])?
        .0
        .success()
    {
        c.ok(&["create", "namespace", "kube-node-lease"])?;
    }
    let (ok, _, err) = kubectl_as(&n1, &["create", "-f", "-"], &lease("n1"))?;
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl_as(&n1, &["create", "-f", "-"], &lease("n2"))?;
    assert!(!ok);
    assert!(
        err.contains("can only access node lease with the same name as the requesting node"),
        "{err}"
    );

    // Secrets: the one its pod mounts, not another.
    let (ok, out, err) = kubectl_as(&n1, &["get", "secret", "s1", "-o", "name"], "")?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "secret/s1");
    let (ok, _, err) = kubectl_as(&n1, &["get", "secret", "s2"], "")?;
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden): secrets \"s2\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object"),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(&n1, &["get", "secrets"], "")?;
    assert!(!ok, "a node lists no secrets");
    assert!(err.contains("cannot list resource \"secrets\""), "{err}");

    // Pod status: its own pod's, not another node's.
    let (ok, _, err) = kubectl_as(
        &n1,
        &[
            "patch",
            "pod",
            "p1",
            "--subresource=status",
            "--type=merge",
            "-p",
            RUNNING,
        ],
        "",
    )?;
    assert!(ok, "{err}");
    assert_eq!(
        c.ok(&["get", "pod", "p1", "-o", "jsonpath={.status.phase}"])?,
        "Running"
    );
    let (ok, _, err) = kubectl_as(
        &n1,
        &[
            "patch",
            "pod",
            "p2",
            "--subresource=status",
            "--type=merge",
            "-p",
            RUNNING,
        ],
        "",
    )?;
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden): pods \"p2\" is forbidden: User \"system:node:n1\" cannot patch resource \"pods/status\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let (ok, out, err) = kubectl_as(&n1, &["get", "pods", "-o", "name"], "")?;
    assert!(ok, "{err}");
    assert!(out.contains("pod/p2"), "{out}");
    Ok(())
}

#[test]
fn the_group_alone_should_grant_nothing_of_system_node() -> Result<()> {
    let c = Cluster::start("")?;
    let dir = tempfile::tempdir()?;
    // Not a system:node:<name> user: RBAC decides, and system:node is bound to nobody.
    let kubelet = c.issue_kubeconfig(dir.path(), "system:kubelet", &["system:nodes"])?;
    c.ok_stdin(&["create", "-f", "-"], &node("n2"))?;
    let (ok, _, err) = kubectl_as(
        &kubelet,
        &[
            "patch",
            "node",
            "n2",
            "--subresource=status",
            "--type=merge",
            "-p",
            READY,
        ],
        "",
    )?;
    assert!(!ok);
    assert!(
        err.contains("nodes \"n2\" is forbidden: User \"system:kubelet\" cannot get resource \"nodes/status\" in API group \"\" at the cluster scope"),
        "{err}"
    );
    let binding = c.ok(&["get", "clusterrolebinding", "system:node", "-o", "json"])?;
    let binding: serde_json::Value = serde_json::from_str(&binding)?;
    assert!(
        binding["subjects"].as_array().is_none_or(|s| s.is_empty()),
        "{binding}"
    );
    Ok(())
}
