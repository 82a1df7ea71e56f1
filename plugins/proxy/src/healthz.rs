//! `/healthz` on `healthz_bind_address`, as kube-proxy serves it: 200 with the last
//! sync time while syncs happen, 503 once none happened for two sync periods.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kubernel_client::CancellationToken;
use tracing::{info, warn};

/// Serves until `stop`; a bind failure is logged (the proxy keeps proxying).
pub async fn serve(
    addr: SocketAddr,
    last_sync: Arc<AtomicI64>,
    period: Duration,
    stop: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve /healthz");
            return;
        }
    };
    info!(%addr, "serving /healthz");
    let limit = i64::try_from(period.as_secs().saturating_mul(2))
        .unwrap_or(i64::MAX)
        .max(2);
    let handler = move || {
        let last = last_sync.load(Ordering::Relaxed);
        async move {
            let now = jiff::Timestamp::now();
            let body = serde_json::json!({
                "lastUpdated": jiff::Timestamp::from_second(last).map(|t| t.to_string()).unwrap_or_default(),
                "currentTime": now.to_string(),
            })
            .to_string();
            let healthy = last > 0 && now.as_second() - last <= limit;
            let code = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, [("content-type", "application/json")], body).into_response()
        }
    };
    let app = axum::Router::new()
        .route("/healthz", get(handler.clone()))
        .route("/livez", get(handler));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
}
