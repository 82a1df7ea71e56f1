//! The loopback plain-HTTP listener (`insecure_port`): HTTP/1.1 and HTTP/2 without
//! TLS, with the same header limit as the HTTPS port; and the accept loop and
//! per-connection serving both listeners share (the TLS one adds its handshake).

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use kubernel_sdk::CancellationToken;
use tokio::net::{TcpListener, TcpStream};

use crate::auth::Caller;

/// Serves `router` on `listener` until `stop`; every request is [`Caller::Insecure`].
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    max_header_bytes: usize,
    stop: CancellationToken,
) {
    while let Some((tcp, peer)) = accept(&listener, &stop).await {
        let (router, stop) = (router.clone(), stop.clone());
        tokio::spawn(async move {
            let conn = Connection {
                peer,
                caller: Caller::Insecure,
                router,
                max_header_bytes,
            };
            conn.serve(tcp, stop).await;
        });
    }
}

/// The next connection of `listener` with `TCP_NODELAY` set, or `None` once `stop`
/// is cancelled. A failed accept is logged and retried.
pub(crate) async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return None,
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
        return Some((tcp, peer));
    }
}

/// One accepted connection: who is on it, and where its requests go.
pub(crate) struct Connection {
    /// The client's address (each request's `ConnectInfo`).
    pub peer: SocketAddr,
    /// How the client reached us (each request's [`Caller`]).
    pub caller: Caller,
    /// The handlers.
    pub router: axum::Router,
    /// The header size limit.
    pub max_header_bytes: usize,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 on `io` until the client leaves or `stop` (then
    /// the connection gets 5 s to finish gracefully).
    pub(crate) async fn serve<I>(self, io: I, stop: CancellationToken)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            caller,
            router,
            max_header_bytes,
        } = self;
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(caller.clone());
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                let router = router.clone();
                async move {
                    use tower::ServiceExt;
                    router.oneshot(req.map(axum::body::Body::new)).await
                }
            });
        let builder = crate::limits::http_builder(max_header_bytes);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
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
    }
}
