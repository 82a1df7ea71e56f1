//! The admin endpoint: `/metrics`, `/healthz`, `/livez`, `/readyz`, `/plugins`, `/bus`.
//!
//! `POST /bus/request/{target}/{kind}`, `POST /bus/send/{target}/{kind}` and
//! `POST /bus/publish/{kind}` put an
//! encoded message (the request body) on the bus as the sender `admin`; a request
//! answers with the encoded reply. A `traceparent` header goes into the message
//! envelope as the sender's trace context. They exist for tests and debugging tools and,
//! like the rest of this endpoint, belong on a loopback address.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::bus::{Envelope, HeldGuard, PluginState, Slot};
use crate::kernel::Kernel;
use crate::metrics::{decode_families, render};

/// Kind of the readiness message every plugin answers (see `kubernel_api::kernel`).
const CHECK_READY_KIND: &str = "kernel.CheckReady";

/// The admin router.
pub fn router(kernel: Arc<Kernel>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(live))
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .route("/readyz/{check}", get(ready_one))
        .route("/readyz/plugin/{name}", get(ready_plugin))
        .route("/plugins", get(list_plugins).post(swap_plugin))
        .route(
            "/plugins/{name}/config",
            axum::routing::put(reconfigure_plugin),
        )
        .route(
            "/bus/request/{target}/{kind}",
            axum::routing::post(bus_request),
        )
        .route("/bus/send/{target}/{kind}", axum::routing::post(bus_send))
        .route("/bus/publish/{kind}", axum::routing::post(bus_publish))
        .with_state(kernel)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn metrics(State(kernel): State<Arc<Kernel>>) -> Response {
    let result = tokio::task::spawn_blocking(move || gather(&kernel)).await;
    match result {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("gathering metrics: {e}\n"),
        ),
    }
}

/// Gathers kernel metrics and every plugin's metrics into one exposition.
fn gather(kernel: &Kernel) -> Result<String, prometheus::Error> {
    let m = &kernel.bus.metrics;
    m.plugins.reset();
    let mut families = Vec::new();
    for slot in kernel.bus.slots() {
        let info = slot.info();
        m.plugins
            .with_label_values(&[
                info.name.as_str(),
                info.kind.as_str(),
                info.version.as_str(),
                info.state.as_str(),
            ])
            .set(1);
        m.mailbox_depth
            .with_label_values(&[info.name.as_str()])
            .set(info.mailbox_depth);
        match plugin_metrics(&slot) {
            Ok(Some(mut f)) => families.append(&mut f),
            Ok(None) => {}
            Err(e) => {
                m.metrics_errors
                    .with_label_values(&[slot.name.as_str()])
                    .inc();
                tracing::warn!(plugin = %slot.name, error = %e, "plugin metrics not gathered");
            }
        }
    }
    families.extend(m.registry.gather());
    render(families)
}

fn plugin_metrics(slot: &Slot) -> Result<Option<Vec<prometheus::proto::MetricFamily>>, String> {
    let mut guard = slot
        .lock(Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    let _held = HeldGuard::new(slot.id);
    let Some(live) = guard.as_mut() else {
        return Ok(None);
    };
    let bytes = live.metrics().map_err(|e| e.to_string())?;
    drop(guard);
    decode_families(&bytes)
        .map(Some)
        .map_err(|e| format!("decoding: {e}"))
}

#[derive(Deserialize)]
struct CheckQuery {
    verbose: Option<String>,
    exclude: Option<String>,
}

async fn live(Query(q): Query<CheckQuery>) -> Response {
    if q.verbose.is_some() {
        text(StatusCode::OK, "[+]ping ok\nlivez check passed\n".into())
    } else {
        text(StatusCode::OK, "ok".into())
    }
}

/// Result of one readiness check: name and failure reason.
fn check_plugin(slot: &Slot) -> Result<(), String> {
    match slot.state() {
        PluginState::Running => {}
        other => return Err(other.as_str().to_string()),
    }
    // `CheckReady` is a unit struct (empty encoding); a plugin that is not ready
    // fails the request with the reason as its message.
    slot.bus
        .request(&slot.name, Envelope::new("kernel", CHECK_READY_KIND, &[]))
        .map(|_| ())
        .map_err(|e| e.message)
}

fn checks(kernel: &Kernel, exclude: &[&str]) -> Vec<(String, Result<(), String>)> {
    let mut out = vec![("ping".to_string(), Ok(()))];
    for slot in kernel.bus.slots() {
        let name = format!("plugin/{}", slot.name);
        if !exclude.contains(&name.as_str()) {
            out.push((name, check_plugin(&slot)));
        }
    }
    out
}

async fn ready(State(kernel): State<Arc<Kernel>>, Query(q): Query<CheckQuery>) -> Response {
    let exclude: Vec<String> = q
        .exclude
        .iter()
        .flat_map(|e| e.split(','))
        .map(str::to_string)
        .collect();
    let results = tokio::task::spawn_blocking(move || {
        let exclude: Vec<&str> = exclude.iter().map(String::as_str).collect();
        checks(&kernel, &exclude)
    })
    .await
    .unwrap_or_default();
    let failed = results.iter().any(|(_, r)| r.is_err());
    let mut body = String::new();
    for (name, r) in &results {
        match r {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => body.push_str(&format!("[-]{name} failed: {reason}\n")),
        }
    }
    let status = if failed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    if failed {
        body.push_str("readyz check failed\n");
        text(status, body)
    } else if q.verbose.is_some() {
        body.push_str("readyz check passed\n");
        text(status, body)
    } else {
        text(status, "ok".into())
    }
}

async fn ready_one(State(_kernel): State<Arc<Kernel>>, Path(check): Path<String>) -> Response {
    if check == "ping" {
        text(StatusCode::OK, "ok".into())
    } else {
        text(
            StatusCode::NOT_FOUND,
            format!("no readiness check {check:?}\n"),
        )
    }
}

async fn ready_plugin(State(kernel): State<Arc<Kernel>>, Path(name): Path<String>) -> Response {
    let Ok(slot) = kernel.bus.resolve(&name) else {
        return text(StatusCode::NOT_FOUND, format!("no plugin {name:?}\n"));
    };
    match tokio::task::spawn_blocking(move || check_plugin(&slot)).await {
        Ok(Ok(())) => text(StatusCode::OK, "ok".into()),
        Ok(Err(reason)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("[-]plugin/{name} failed: {reason}\n"),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn list_plugins(State(kernel): State<Arc<Kernel>>) -> Response {
    let infos: Vec<_> = kernel.bus.slots().iter().map(|s| s.info()).collect();
    Json(infos).into_response()
}

/// Body of `POST /plugins`: swap plugin `name` to the library at `path`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapRequest {
    name: String,
    path: PathBuf,
}

async fn swap_plugin(State(kernel): State<Arc<Kernel>>, body: axum::body::Bytes) -> Response {
    let req: SwapRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("POST /plugins: body must be {{\"name\": ..., \"path\": ...}}: {e}");
            return (
                StatusCode::BAD_REQUEST,
                Json(HashMap::from([("error", msg)])),
            )
                .into_response();
        }
    };
    // `scheduler:binpack` names extension `binpack` inside plugin `scheduler`.
    if let Some((name, extension)) = req.name.split_once(':') {
        if kernel.bus.resolve(name).is_err() {
            return swap_error(crate::swap::SwapError::NoSuchPlugin(name.to_string()));
        }
        return match kernel.swap_extension(name, extension, &req.path).await {
            Ok(report) => Json(serde_json::json!({
                "name": name,
                "extension": extension,
                "path": req.path,
                "report": report,
            }))
            .into_response(),
            Err(e) => swap_error(e),
        };
    }
    match kernel.swap_path(&req.name, &req.path).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => swap_error(e),
    }
}

/// `PUT /plugins/{name}/config`: a new `[plugin.config]` table as JSON, applied in
/// place when the plugin supports it, else by a hot swap.
async fn reconfigure_plugin(
    State(kernel): State<Arc<Kernel>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let config: toml::Table = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("PUT /plugins/{name}/config: body must be a JSON object that maps to a TOML table (the plugin's config): {e}");
            return (
                StatusCode::BAD_REQUEST,
                Json(HashMap::from([("error", msg)])),
            )
                .into_response();
        }
    };
    let mut plugin = match kernel.config().plugins.into_iter().find(|p| p.name == name) {
        Some(p) => p,
        None => return swap_error(crate::swap::SwapError::NoSuchPlugin(name)),
    };
    plugin.config = config;
    match kernel.reconfigure(plugin).await {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) => swap_error(e),
    }
}

/// The HTTP answer for a failed swap or reconfiguration.
fn swap_error(e: crate::swap::SwapError) -> Response {
    let status = match e {
        crate::swap::SwapError::NoSuchPlugin(_) => StatusCode::NOT_FOUND,
        crate::swap::SwapError::NotRunning(_) => StatusCode::CONFLICT,
        crate::swap::SwapError::Load { .. } | crate::swap::SwapError::Refused { .. } => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(HashMap::from([("error", e.to_string())]))).into_response()
}

/// HTTP status for a failed bus call.
fn call_status(status: kubernel_abi::Status) -> StatusCode {
    use kubernel_abi::Status as S;
    match status {
        S::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        S::TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
        S::UNKNOWN_KIND | S::BAD_MESSAGE => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn call_error(e: crate::loader::CallError) -> Response {
    (
        call_status(e.status),
        [("x-kubernel-status", e.status.name())],
        format!("{}: {}\n", e.status.name(), e.message),
    )
        .into_response()
}

/// The caller's W3C `traceparent` header, which goes into the message envelope.
fn trace_header(headers: &HeaderMap) -> Vec<u8> {
    headers
        .get("traceparent")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

async fn bus_request(
    State(kernel): State<Arc<Kernel>>,
    Path((target, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let trace = trace_header(&headers);
    let result = tokio::task::spawn_blocking(move || {
        let msg = Envelope {
            trace: &trace,
            ..Envelope::new("admin", &kind, &body)
        };
        kernel.bus.request(&target, msg)
    })
    .await;
    match result {
        Ok(Ok(reply)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            reply,
        )
            .into_response(),
        Ok(Err(e)) => call_error(e),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn bus_send(
    State(kernel): State<Arc<Kernel>>,
    Path((target, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let trace = trace_header(&headers);
    let msg = Envelope {
        trace: &trace,
        ..Envelope::new("admin", &kind, &body)
    };
    match kernel.bus.send(&target, msg) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => call_error(e),
    }
}

async fn bus_publish(
    State(kernel): State<Arc<Kernel>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let trace = trace_header(&headers);
    kernel.bus.publish(Envelope {
        trace: &trace,
        ..Envelope::new("admin", &kind, &body)
    });
    StatusCode::ACCEPTED.into_response()
}
