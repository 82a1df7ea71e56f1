//! CertificateSigningRequests: the approving controller approves kubelet client
//! certificates asked for with a bootstrap token (or by the node itself, to renew),
//! and the signing controller signs approved client-certificate requests with the
//! cluster CA, as kube-controller-manager's `csrapproving` and `csrsigning` do.
//!
//! Differs on purpose: the approver decides from the request's groups (a bootstrap
//! token's `system:bootstrappers`, or the node's own user) rather than by a
//! SubjectAccessReview of `certificatesigningrequests/nodeclient`.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kubernel_client::{Cache, Change, Client, ClientError};
use serde_json::json;

use crate::controller::{on_change, run_workers, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;

/// Kubelet client certificates.
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Client certificates for anyone (approved by hand).
pub const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// Lifetime of a signed certificate when the request names none.
const DEFAULT_DAYS: i64 = 365;

/// Why a CSR could not be approved or signed. Retrying may help.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// The API refused or failed.
    #[error("certificatesigningrequest {name}: {source}")]
    Api {
        /// The CSR.
        name: String,
        /// The failed request.
        #[source]
        source: ClientError,
    },
    /// The CA could not be read.
    #[error("certificatesigningrequest {name}: {message}")]
    Signing {
        /// The CSR.
        name: String,
        /// What is wrong.
        message: String,
    },
}

struct Csrs {
    client: Client,
    requests: Cache<CertificateSigningRequest>,
    /// CA certificate and key files, for the signer.
    ca_files: Option<(PathBuf, PathBuf)>,
}

/// Starts the approving controller.
pub fn start_approver(ctx: &ControllerContext, informers: &mut Informers) {
    start(ctx, informers, "certificatesigningrequest_approving", None);
}

/// Starts the signing controller with the CA files of the config (or the kernel's
/// `pki/ca.crt` and `pki/ca.key`).
pub fn start_signer(ctx: &ControllerContext, informers: &mut Informers) {
    let config = &ctx.config;
    let pki = ctx.kernel_data_dir.as_ref().map(|d| d.join("pki"));
    let cert = config
        .cluster_signing_cert_file
        .clone()
        .or_else(|| pki.as_ref().map(|p| p.join("ca.crt")));
    let key = config
        .cluster_signing_key_file
        .clone()
        .or_else(|| pki.as_ref().map(|p| p.join("ca.key")));
    let Some(files) = cert.zip(key) else {
        tracing::warn!("certificatesigningrequest-signing-controller: no CA files (cluster_signing_cert_file/key_file); nothing is signed");
        return;
    };
    start(
        ctx,
        informers,
        "certificatesigningrequest_signing",
        Some(files),
    );
}

fn start(
    ctx: &ControllerContext,
    informers: &mut Informers,
    name: &'static str,
    ca_files: Option<(PathBuf, PathBuf)>,
) {
    let (requests, changes) = informers.subscribe::<CertificateSigningRequest>();
    let queue = ctx.queue(name);
    let q = queue.clone();
    on_change(changes, ctx.shutdown.clone(), move |change| {
        if let Change::Added(csr) | Change::Updated { new: csr, .. } = change {
            q.add(csr.metadata.name.clone().unwrap_or_default());
        }
    });
    let controller = Arc::new(Csrs {
        client: ctx.client.clone(),
        requests,
        ca_files,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.requests.wait_synced().await;
        run_workers(name, queue, workers, shutdown, move |key: String| {
            let c = controller.clone();
            async move {
                if c.ca_files.is_some() {
                    c.sign(&key).await
                } else {
                    c.approve(&key).await
                }
            }
        });
    });
}

/// The types of a CSR's `True` conditions.
fn conditions(csr: &CertificateSigningRequest) -> Vec<String> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.status == "True")
        .map(|c| c.type_.clone())
        .collect()
}

/// The request's PEM text.
fn request_pem(csr: &CertificateSigningRequest) -> String {
    String::from_utf8_lossy(&csr.spec.request.0).into_owned()
}

impl Csrs {
    fn api_error(name: &str) -> impl Fn(ClientError) -> CsrError + '_ {
        move |source| CsrError::Api {
            name: name.to_string(),
            source,
        }
    }

    async fn approve(&self, name: &str) -> Result<Action, CsrError> {
        let Some(csr) = self.requests.get(name) else {
            return Ok(Action::AwaitChange);
        };
        if csr.spec.signer_name != KUBELET_CLIENT || !conditions(&csr).is_empty() {
            return Ok(Action::AwaitChange);
        }
        let Ok((cn, orgs)) = kubernel_pki::request_subject(&request_pem(&csr)) else {
            return Ok(Action::AwaitChange);
        };
        let node_client = cn.starts_with("system:node:") && orgs == ["system:nodes"];
        let groups = csr.spec.groups.clone().unwrap_or_default();
        let by_bootstrap = groups.iter().any(|g| g == "system:bootstrappers");
        let by_itself = csr.spec.username.as_deref() == Some(cn.as_str());
        if !node_client || !(by_bootstrap || by_itself) {
            return Ok(Action::AwaitChange);
        }
        let mut approved = serde_json::to_value(&*csr).map_err(|e| CsrError::Signing {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        approved["status"]["conditions"] = json!([{
            "type": "Approved",
            "status": "True",
            "reason": "AutoApproved",
            "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
            "lastUpdateTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]);
        let path =
            format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/approval");
        match self
            .client
            .send(
                "PUT",
                &path,
                Some(("application/json", approved.to_string().into_bytes())),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(csr = %name, node = %cn, "approved a kubelet client certificate");
                Ok(Action::AwaitChange)
            }
            Err(e) if e.is_conflict() => Ok(Action::Requeue(std::time::Duration::from_millis(100))),
            Err(e) if e.is_not_found() => Ok(Action::AwaitChange),
            Err(e) => Err(Self::api_error(name)(e)),
        }
    }

    async fn sign(&self, name: &str) -> Result<Action, CsrError> {
        let Some(csr) = self.requests.get(name) else {
            return Ok(Action::AwaitChange);
        };
        let types = conditions(&csr);
        let issued = csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some_and(|c| !c.0.is_empty());
        let signer = csr.spec.signer_name.as_str();
        if issued
            || !types.iter().any(|t| t == "Approved")
            || types.iter().any(|t| t == "Denied" || t == "Failed")
            || !(signer == KUBELET_CLIENT || signer == CLIENT)
        {
            return Ok(Action::AwaitChange);
        }
        let signing = |message: String| CsrError::Signing {
            name: name.to_string(),
            message,
        };
        let Some((cert_file, key_file)) = &self.ca_files else {
            return Ok(Action::AwaitChange);
        };
        let read =
            |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let ca = kubernel_pki::Ca {
            cert_pem: read(cert_file).map_err(signing)?,
            key_pem: read(key_file).map_err(signing)?,
        };
        let days = csr
            .spec
            .expiration_seconds
            .map_or(DEFAULT_DAYS, |s| (i64::from(s) / 86_400).max(1));
        let pem = match kubernel_pki::sign_client_request(&ca, &request_pem(&csr), days) {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(csr = %name, error = %e, "cannot sign the certificate request");
                return Ok(Action::AwaitChange);
            }
        };
        let mut signed = serde_json::to_value(&*csr).map_err(|e| signing(e.to_string()))?;
        signed["status"]["certificate"] =
            json!(base64::engine::general_purpose::STANDARD.encode(pem.as_bytes()));
        let path = format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/status");
        match self
            .client
            .send(
                "PUT",
                &path,
                Some(("application/json", signed.to_string().into_bytes())),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(csr = %name, signer, "signed a certificate");
                Ok(Action::AwaitChange)
            }
            Err(e) if e.is_conflict() => Ok(Action::Requeue(std::time::Duration::from_millis(100))),
            Err(e) if e.is_not_found() => Ok(Action::AwaitChange),
            Err(e) => Err(Self::api_error(name)(e)),
        }
    }
}
