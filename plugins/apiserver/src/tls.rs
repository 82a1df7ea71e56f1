//! The HTTPS listener: rustls (TLS 1.2 and 1.3, ring), HTTP/2 and HTTP/1.1 by ALPN,
//! client certificates verified against the cluster CA when a client sends one.

use std::sync::Arc;
use std::time::Duration;

use kubernel_sdk::CancellationToken;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::auth::{user_from_certificate, Caller};
use crate::metrics::Metrics;

/// A TLS handshake that has not finished within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls server settings for the serving pair, trusting `ca_pem` for client certificates.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("serving key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| format!("CA certificate: {e}"))?;
        roots.add(ca).map_err(|e| format!("CA certificate: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("client certificate verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `router` over TLS on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    metrics: Metrics,
    max_header_bytes: usize,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    while let Some((tcp, peer)) = crate::plain::accept(&listener, &stop).await {
        let acceptor = acceptor.clone();
        let router = router.clone();
        let metrics = metrics.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    metrics.tls_handshake_errors.inc();
                    tracing::info!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.tls_handshake_errors.inc();
                    tracing::info!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| user_from_certificate(leaf.as_ref()));
            let caller = match user {
                None => Caller::Tls(None),
                Some(Ok(user)) => Caller::Tls(Some(user)),
                Some(Err(e)) => {
                    // Verified by the CA but unusable (no CN): refuse the connection.
                    metrics
                        .authentication_attempts
                        .with_label_values(&["error"])
                        .inc();
                    tracing::info!(peer = %peer, error = %e, "client certificate refused");
                    return;
                }
            };
            let conn = crate::plain::Connection {
                peer,
                caller,
                router,
                max_header_bytes,
            };
            conn.serve(tls, stop).await;
        });
    }
}
