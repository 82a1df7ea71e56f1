//! Bootstrap tokens and the kubelet's TLS bootstrap: a bootstrap token Secret in
//! kube-system authenticates `system:bootstrap:<id>` in `system:bootstrappers`
//! until it expires or is deleted; a worker kubelet with only that token asks for
//! its client certificate with a CertificateSigningRequest, the controller-manager
//! approves and signs it, and the kubelet registers its Node as
//! `system:node:<name>`; `kubectl get csr` shows it Approved,Issued.

use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{
    component_entry, eventually, free_port, kernel_section, kubectl_as, Cluster, Kernel,
};

const TOKEN: &str = "abcdef.0123456789abcdef";

fn bootstrap_secret(id: &str, secret: &str, expiration: Option<&str>) -> String {
    let expiration = expiration
        .map(|e| format!("  expiration: {e}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: bootstrap-token-{id}, namespace: kube-system}}
type: bootstrap.kubernetes.io/token
stringData:
  token-id: {id}
  token-secret: {secret}
  usage-bootstrap-authentication: 'true'
{expiration}"
    )
}

#[test]
fn a_worker_kubelet_should_get_its_certificate_with_a_bootstrap_token() -> Result<()> {
    let c = Cluster::start(&component_entry(
        "controller-manager",
        "controller-manager",
        "",
    ))?;
    c.ok_stdin(
        &["apply", "-f", "-"],
        &bootstrap_secret("abcdef", "0123456789abcdef", None),
    )?;
    let dir = tempfile::tempdir()?;
    let bootstrap = c.token_kubeconfig(dir.path(), TOKEN)?;
    let (ok, out, err) = kubectl_as(
        &bootstrap,
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
        out.starts_with("system:bootstrap:abcdef [\"system:bootstrappers\""),
        "{out}"
    );
    // The token may ask for certificates, nothing else.
    let (ok, _, err) = kubectl_as(&bootstrap, &["get", "pods"], "")?;
    assert!(!ok && err.contains("forbidden"), "{err}");

    let kubeconfig = dir.path().join("kubelet").join("kubelet.kubeconfig");
    let port = free_port()?;
    let worker = Kernel::start(
        &(kernel_section()
            + &component_entry(
                "kubelet",
                "kubelet",
                &format!(
                    "runtime = \"process\"\nnetwork = \"host\"\nnode_name = \"boot-1\"\nport = {port}\nlease_renew_interval = \"1s\"\nbootstrap_kubeconfig = \"{}\"\ntls_bootstrap_timeout = \"30s\"\n[plugin.config.client]\nkubeconfig = \"{}\"\n",
                    bootstrap.display(),
                    kubeconfig.display()
                ),
            )),
        &[],
    )?;
    eventually(Duration::from_secs(30), "boot-1 Ready", || {
        let ready = c.ok(&[
            "get",
            "node",
            "boot-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        Ok(ready.is_ok_and(|r| r == "True"))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", worker.logs()))?;
    let csrs = c.ok(&["get", "csr"])?;
    assert!(
        csrs.contains("kubernetes.io/kube-apiserver-client-kubelet"),
        "{csrs}"
    );
    assert!(csrs.contains("system:bootstrap:abcdef"), "{csrs}");
    assert!(csrs.contains("Approved,Issued"), "{csrs}");
    // The kubelet's own kubeconfig names its node.
    let (ok, out, err) = kubectl_as(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        "",
    )?;
    assert!(ok, "{err}");
    assert_eq!(out, "system:node:boot-1");

    // Deleting the Secret revokes the token; an expired one is refused.
    c.ok(&[
        "delete",
        "secret",
        "-n",
        "kube-system",
        "bootstrap-token-abcdef",
    ])?;
    let (ok, _, err) = kubectl_as(&bootstrap, &["auth", "whoami"], "")?;
    assert!(!ok && err.contains("You must be logged in"), "{err}");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &bootstrap_secret("zzzzzz", "0123456789abcdef", Some("2020-01-01T00:00:00Z")),
    )?;
    let expired = c.token_kubeconfig(dir.path(), "zzzzzz.0123456789abcdef")?;
    let (ok, _, err) = kubectl_as(&expired, &["auth", "whoami"], "")?;
    assert!(!ok && err.contains("You must be logged in"), "{err}");
    drop(worker);
    Ok(())
}

#[test]
fn a_client_certificate_request_should_be_approved_by_hand_and_signed() -> Result<()> {
    let c = Cluster::start(&component_entry(
        "controller-manager",
        "controller-manager",
        "",
    ))?;
    let (csr, _key) = kubernel_pki::client_request("alice", "devs").map_err(anyhow::Error::msg)?;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, csr.as_bytes());
    c.ok_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: alice}}\nspec:\n  request: {b64}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n"),
    )?;
    let shown = c.ok(&["get", "csr", "alice"])?;
    assert!(shown.contains("Pending"), "{shown}");
    c.ok(&["certificate", "approve", "alice"])?;
    eventually(Duration::from_secs(15), "alice's certificate", || {
        Ok(!c
            .ok(&[
                "get",
                "csr",
                "alice",
                "-o",
                "jsonpath={.status.certificate}",
            ])?
            .is_empty())
    })?;
    let shown = c.ok(&["get", "csr", "alice"])?;
    assert!(shown.contains("Approved,Issued"), "{shown}");
    let requester = c.ok(&["get", "csr", "alice", "-o", "jsonpath={.spec.username}"])?;
    assert_eq!(requester, "kubernetes-admin", "the server sets who asked");
    Ok(())
}
