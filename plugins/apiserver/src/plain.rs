//! The loopback plain-HTTP listener (`insecure_port`): HTTP/1.1 and HTTP/2 without
//! TLS, with the same header limit as the HTTPS port.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use kubernel_sdk::CancellationToken;
use tokio::net::TcpListener;

use crate::auth::Caller;

/// Serves `router` on `listener` until `stop`; every request is [`Caller::Insecure`].
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    max_header_bytes: usize,
    stop: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // As Go's net/http: no Nagle delay, so a watch event is not held back behind
        // the client's delayed ACK of the previous one.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Caller::Insecure);
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                    let router = router.clone();
                    async move {
                        use tower::ServiceExt;
                        router.oneshot(req.map(axum::body::Body::new)).await
                    }
                },
            );
            let builder = crate::limits::http_builder(max_header_bytes);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %peer, error = %e, "connection ended");
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}
