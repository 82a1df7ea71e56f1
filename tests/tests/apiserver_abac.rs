//! ABAC through the real kubectl: a policy file that lets alice read pods in one
//! namespace, modes evaluated in order with RBAC after ABAC, and a malformed policy
//! file refused at start naming the file and the line.

use anyhow::{bail, Result};
use kubernel_e2e::{kubectl_as, run_refused, Cluster};

const POLICY: &str = r#"# alice may read pods in team-a
{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "alice", "namespace": "team-a", "resource": "pods", "apiGroup": "", "readonly": true}}
"#;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  containers:
  - name: c
    image: busybox:1.36
"#;

#[test]
fn abac_policy_should_allow_only_what_it_names() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("abac.jsonl");
    std::fs::write(&policy, POLICY)?;
    let c = Cluster::start(&format!(
        "authorization_modes = [\"ABAC\", \"RBAC\"]\nauthorization_policy_file = \"{}\"\n",
        policy.display()
    ))?;
    c.ok(&["create", "namespace", "team-a"])?;
    c.ok(&["create", "namespace", "team-b"])?;
    c.ok_stdin(
        &["create", "-n", "team-a", "-f", "-"],
        &POD.replace("NAME", "web"),
    )?;
    let alice = c.issue_kubeconfig(dir.path(), "alice", &[])?;
    let bob = c.issue_kubeconfig(dir.path(), "bob", &[])?;
    let carol = c.issue_kubeconfig(dir.path(), "carol", &[])?;

    let (ok, out, err) = kubectl_as(&alice, &["get", "pods", "-n", "team-a", "-o", "name"], "")?;
    assert!(ok && out.contains("pod/web"), "{out}{err}");
    let (ok, _, err) = kubectl_as(&alice, &["get", "pod", "web", "-n", "team-a"], "")?;
    assert!(ok, "{err}");

    let (ok, _, err) = kubectl_as(
        &alice,
        &["create", "-n", "team-a", "-f", "-"],
        &POD.replace("NAME", "mine"),
    )?;
    assert!(!ok);
    assert!(
        err.contains(r#"pods is forbidden: User "alice" cannot create resource "pods" in API group "" in the namespace "team-a": No policy matched."#),
        "{err}"
    );
    let (ok, _, err) = kubectl_as(&alice, &["get", "pods", "-n", "team-b"], "")?;
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-b""#),
        "{err}"
    );
    let (_, out, _) = kubectl_as(
        &alice,
        &["auth", "can-i", "list", "pods", "-n", "team-a"],
        "",
    )?;
    assert_eq!(out.trim(), "yes");
    let (_, out, _) = kubectl_as(
        &alice,
        &["auth", "can-i", "create", "pods", "-n", "team-a"],
        "",
    )?;
    assert_eq!(out.trim(), "no");
    let (ok, _, err) = kubectl_as(&alice, &["get", "deployments", "-n", "team-a"], "")?;
    assert!(!ok && err.contains("forbidden"), "{err}");

    let (ok, _, err) = kubectl_as(&bob, &["get", "pods", "-n", "team-a"], "")?;
    assert!(!ok && err.contains(r#"User "bob" cannot list"#), "{err}");

    // RBAC after ABAC still decides for the users ABAC has no opinion on.
    c.ok(&[
        "create",
        "rolebinding",
        "carol-view",
        "-n",
        "team-b",
        "--clusterrole=view",
        "--user=carol",
    ])?;
    let (ok, _, err) = kubectl_as(&carol, &["get", "pods", "-n", "team-b"], "")?;
    assert!(ok, "{err}");
    let (ok, _, _) = kubectl_as(&carol, &["get", "pods", "-n", "team-a"], "")?;
    assert!(!ok);
    Ok(())
}

fn refused(policy_text: &str, modes: &str) -> Result<(Option<i32>, String, String)> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("abac.jsonl");
    std::fs::write(&policy, policy_text)?;
    let config = format!(
        "{}\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nsecure_port = 0\nauthorization_modes = {modes}\nauthorization_policy_file = \"{}\"\n",
        kubernel_e2e::kernel_section(),
        kubernel_e2e::apiserver_lib().display(),
        policy.display()
    );
    let (code, err) = run_refused(&config, &[])?;
    Ok((code, err, policy.display().to_string()))
}

#[test]
fn a_malformed_abac_policy_should_be_refused_at_start() -> Result<()> {
    let (code, err, file) = refused(
        &format!("{POLICY}{{\"apiVersion\": \"abac.authorization.kubernetes.io/v1beta1\", \"kind\": \"Policy\", \"spec\": {{\"user\": \"bob\"\n"),
        "[\"ABAC\"]",
    )?;
    assert_ne!(code, Some(0));
    if !(err.contains(&file) && err.contains("line 3")) {
        bail!("unclear refusal: {err}");
    }
    let (code, err, file) = refused(POLICY, "[\"RBAC\"]")?;
    assert_ne!(code, Some(0));
    if !(err.contains(&file) && err.contains("no \"ABAC\"")) {
        bail!("unclear refusal: {err}");
    }
    Ok(())
}
