//! The kubelet's TLS bootstrap, as upstream's `--bootstrap-kubeconfig`: a kubelet
//! whose kubeconfig does not exist yet authenticates with the bootstrap kubeconfig
//! (a bootstrap token), asks for its client certificate with a
//! CertificateSigningRequest (CN `system:node:<name>`, O `system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`), waits until the cluster approves
//! and signs it, and writes its kubeconfig with that certificate; every later start
//! uses that kubeconfig.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use kubernel_client::{Client, ClientConfig};
use serde_json::{json, Value};

/// How often the request is read again while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Gets a client certificate for `node` through `bootstrap` and writes the kubeconfig
/// `target`, unless `target` exists already. Gives up after `timeout`.
pub async fn ensure(
    bootstrap: &Path,
    target: &Path,
    node: &str,
    timeout: Duration,
) -> Result<(), String> {
    if target.exists() {
        return Ok(());
    }
    let config = ClientConfig {
        kubeconfig: bootstrap.to_path_buf(),
        ..ClientConfig::default()
    };
    let client = Client::new(&config, None, None)
        .map_err(|e| format!("bootstrap kubeconfig {}: {e}", bootstrap.display()))?;
    let user = format!("system:node:{node}");
    let (csr_pem, key_pem) = kubernel_pki::client_request(&user, "system:nodes")?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let request = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": b64(&csr_pem),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "key encipherment", "client auth"],
        },
    });
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let created = client
        .send(
            "POST",
            path,
            Some(("application/json", request.to_string().into_bytes())),
        )
        .await
        .map_err(|e| format!("creating the certificate signing request: {e}"))?;
    let created: Value = serde_json::from_slice(&created)
        .map_err(|e| format!("the created certificate signing request: {e}"))?;
    let name = created["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    tracing::info!(csr = %name, node, "waiting for the client certificate to be approved and signed");
    let deadline = Instant::now() + timeout;
    let cert_pem = loop {
        let current = client
            .send("GET", &format!("{path}/{name}"), None)
            .await
            .map_err(|e| format!("reading certificate signing request {name}: {e}"))?;
        let current: Value = serde_json::from_slice(&current)
            .map_err(|e| format!("certificate signing request {name}: {e}"))?;
        let refused = current["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["status"] == "True" && (c["type"] == "Denied" || c["type"] == "Failed"));
        if let Some(c) = refused {
            return Err(format!(
                "certificate signing request {name} was {}: {}",
                c["type"].as_str().unwrap_or_default().to_lowercase(),
                c["message"].as_str().unwrap_or_default()
            ));
        }
        if let Some(cert) = current["status"]["certificate"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(cert)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    format!("certificate signing request {name}: the certificate is not base64 PEM")
                })?;
            break pem;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "certificate signing request {name} was not approved and signed within {timeout:?} (is a controller-manager running? `kubectl certificate approve {name}` approves it by hand)"
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    let ca = client
        .ca_pem()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .ok_or_else(|| {
            format!(
                "bootstrap kubeconfig {}: no certificate authority",
                bootstrap.display()
            )
        })?;
    let kubeconfig = kubernel_pki::kubeconfig(
        client.server(),
        &ca,
        &user,
        &kubernel_pki::CertKey { cert_pem, key_pem },
    );
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    kubernel_pki::write_private(target, &kubeconfig)?;
    tracing::info!(csr = %name, kubeconfig = %target.display(), "kubelet client certificate issued");
    Ok(())
}
