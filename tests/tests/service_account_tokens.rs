//! Service-account tokens: `kubectl create token` issues one through the
//! TokenRequest subresource; it authenticates as
//! `system:serviceaccount:<namespace>:<name>` with kubectl and raw HTTPS, gets
//! upstream's 403 text until RBAC grants it something, and stops working when its
//! ServiceAccount is deleted.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kubernel_e2e::{kubectl_as, Cluster};

/// A kubeconfig for `token`, with the cluster's server and CA.
fn token_kubeconfig(c: &Cluster, dir: &Path, token: &str) -> Result<std::path::PathBuf> {
    let admin = std::fs::read_to_string(&c.kubeconfig)?;
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .context("admin kubeconfig without a server")?;
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .context("admin kubeconfig without a CA")?;
    let path = dir.join("sa.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: sa\ncurrent-context: c\n"
        ),
    )?;
    Ok(path)
}

#[test]
fn kubectl_create_token_should_issue_a_token_that_authenticates_until_its_account_goes(
) -> Result<()> {
    let c = Cluster::start("")?;
    let (status, _, err) = c.kubectl(&["create", "serviceaccount", "robot"])?;
    assert!(status.success(), "{err}");
    let (status, token, err) = c.kubectl(&["create", "token", "robot", "--duration=20m"])?;
    assert!(status.success(), "{err}");
    let token = token.trim();
    assert!(
        token.starts_with("eyJ") && token.split('.').count() == 3,
        "{token}"
    );
    let dir = tempfile::tempdir()?;
    let kubeconfig = token_kubeconfig(&c, dir.path(), token)?;
    let (ok, out, err) = kubectl_as(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
        "",
    )?;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("system:serviceaccount:default:robot "),
        "{out}"
    );
    assert!(out.contains("system:serviceaccounts:default"), "{out}");
    let (ok, _, err) = kubectl_as(&kubeconfig, &["get", "pods"], "")?;
    assert!(!ok);
    assert!(err.contains("pods is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""), "{err}");
    let (status, _, err) = c.kubectl(&["delete", "serviceaccount", "robot"])?;
    assert!(status.success(), "{err}");
    let (ok, _, err) = kubectl_as(&kubeconfig, &["get", "pods"], "")?;
    assert!(!ok);
    if !err.contains("You must be logged in to the server") {
        bail!("a deleted account's token still authenticates: {err}");
    }
    Ok(())
}
