//! The HTTPS listener: rustls (TLS 1.2 and 1.3, ring), HTTP/2 and HTTP/1.1 by ALPN,
//! client certificates verified against the cluster CA when a client sends one.

use std::sync::Arc;
use std::time::Duration;

use kubernel_sdk::CancellationToken;
use tokio::net::TcpListener;

use crate::auth::{user_from_certificate, Caller};
use crate::metrics::Metrics;

/// A TLS handshake that has not finished within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls client settings for kubelet APIs: the apiserver's kubelet-client pair.
///
/// As kube-apiserver without `--kubelet-certificate-authority`, the kubelet's
/// serving certificate (self-signed by each kubelet) is not checked against a CA;
/// the handshake's signatures still are.
pub fn kubelet_client_config(pair: &kubernel_pki::CertKey) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .map_err(|e| format!("kubelet client key: {e}"))?;
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyKubelet(provider)))
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("kubelet client certificate: {e}"))
}

/// Accepts any kubelet serving certificate, verifying the handshake's signatures.
#[derive(Debug)]
struct AnyKubelet(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyKubelet {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
