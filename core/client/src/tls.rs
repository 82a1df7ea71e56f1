//! TLS to an `https://` apiserver: rustls (ring), trusting the kubeconfig's CA only,
//! with the kubeconfig's client certificate when it has one.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Endpoint;
use crate::ClientError;

/// The rustls client settings for `endpoint`.
pub(crate) fn client_config(endpoint: &Endpoint) -> Result<rustls::ClientConfig, ClientError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ClientError::Config(format!("server {}: {what}: {e}", endpoint.server))
    };
    if endpoint.insecure_skip_verify {
        return Err(ClientError::Config(format!(
            "server {}: insecure-skip-tls-verify is not supported; give the cluster's certificate-authority",
            endpoint.server
        )));
    }
    let Some(ca) = &endpoint.ca_pem else {
        return Err(ClientError::Config(format!(
            "server {} is https:// but no certificate-authority is given (use a kubeconfig with certificate-authority-data, e.g. one from `kubernel kubeconfig`)",
            endpoint.server
        )));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| bad("certificate-authority", &e))?;
        roots
            .add(cert)
            .map_err(|e| bad("certificate-authority", &e))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Config(format!(
            "server {}: certificate-authority holds no PEM certificate",
            endpoint.server
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("TLS versions", &e))?
        .with_root_certificates(roots);
    let mut config = match &endpoint.client_pem {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| bad("client-certificate", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("client-key", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
