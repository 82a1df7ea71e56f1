//! Watches over the kernel bus: an `api.Watch` runs through the HTTP handler chain, and its body's chunks go to the watcher's mailbox.
//!
//! The watch request is the HTTP watch request (same router, so the same
//! authentication, authorization, selectors, `resourceVersion`, bookmarks,
//! `timeoutSeconds`, Table output, metrics and 410s). Each chunk of its streamed
//! body (one or more watch lines, batched when events queue up) becomes one
//! `api.WatchEvents` sent to the watcher; the end of the body, a stop or an
//! unreachable watcher ends it with one `api.WatchEnded`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use kubernel_api::rest::{ApiResponse, ApiWatch, ApiWatchEnded, ApiWatchEvents};
use kubernel_sdk::{CancellationToken, Context};
use parking_lot::Mutex;
use tracing::debug;

use crate::status::ApiError;

/// `api.WatchEnded` reason after an `api.WatchStop`.
pub const STOPPED: &str = "stopped";
/// `api.WatchEnded` reason when the watch itself ended (timeout, fell behind, apiserver stopping).
pub const CLOSED: &str = "closed";

/// A watch's key: the watcher plugin's name and the watch id.
type WatchKey = (String, String);

/// One open bus watch.
#[derive(Clone)]
struct OpenWatch {
    /// Tells registrations of one id apart.
    serial: u64,
    /// Cancelled by an `api.WatchStop`.
    stop: CancellationToken,
    /// Set, under its lock, by whoever sends the `api.WatchEnded`; held while an
    /// `api.WatchEvents` is sent, so nothing follows the end.
    ended: Arc<Mutex<bool>>,
}

/// The open bus watches.
#[derive(Clone, Default)]
pub struct BusWatches {
    open: Arc<Mutex<HashMap<WatchKey, OpenWatch>>>,
    serial: Arc<AtomicU64>,
}

impl BusWatches {
    /// Registers watch `id` of `watcher`; `None` when that watcher has one by that id.
    fn register(&self, watcher: &str, id: &str) -> Option<OpenWatch> {
        let mut open = self.open.lock();
        let key = (watcher.to_owned(), id.to_owned());
        if open.contains_key(&key) {
            return None;
        }
        let entry = OpenWatch {
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
            stop: CancellationToken::new(),
            ended: Arc::new(Mutex::new(false)),
        };
        open.insert(key, entry.clone());
        Some(entry)
    }

    /// Forgets watch `id` of `watcher` if it is still registration `serial`.
    fn forget(&self, watcher: &str, id: &str, serial: u64) {
        let mut open = self.open.lock();
        let key = (watcher.to_owned(), id.to_owned());
        if open.get(&key).is_some_and(|w| w.serial == serial) {
            open.remove(&key);
        }
    }

    /// Stops watch `id` of `watcher`; whether it was open.
    pub fn stop(&self, watcher: &str, id: &str) -> bool {
        let removed = self
            .open
            .lock()
            .remove(&(watcher.to_owned(), id.to_owned()));
        match removed {
            Some(w) => {
                w.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Ends every open watch with `api.WatchEnded` `closed` now (the apiserver is
    /// stopping: its runtime drops the watches' tasks without letting them finish).
    pub fn close_all(&self, ctx: &Context) {
        let open: Vec<(WatchKey, OpenWatch)> = self.open.lock().drain().collect();
        for ((watcher, id), w) in open {
            // Ended first: a pump that sees the cancel then sends nothing more.
            end(ctx, &watcher, &id, &w.ended, CLOSED);
            w.stop.cancel();
        }
    }

    /// Number of open bus watches.
    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Whether no bus watch is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends watch `id`'s `api.WatchEnded` to `watcher` unless it was sent already.
fn end(ctx: &Context, watcher: &str, id: &str, ended: &Mutex<bool>, reason: &str) {
    let mut ended = ended.lock();
    if *ended {
        return;
    }
    *ended = true;
    let message = ApiWatchEnded {
        id: id.to_owned(),
        reason: reason.to_owned(),
    };
    if let Err(e) = ctx.send(watcher, &message) {
        debug!(watcher = %watcher, id = %id, error = %e, "bus watch end not delivered");
    }
}

/// The answer the handler chain's response head (status, `Content-Type`,
/// `Warning`s) and `body` make, for a bus request or watch.
pub fn answer(parts: &axum::http::response::Parts, body: Vec<u8>) -> ApiResponse {
    ApiResponse {
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body,
        warnings: parts
            .headers
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect(),
    }
}

/// An error answer to an `api.Watch`, an `api.Request` or an `api.Call` the
/// handler chain never saw.
pub fn refused(e: &ApiError) -> ApiResponse {
    ApiResponse {
        status: e.code,
        content_type: "application/json".into(),
        body: e.to_status().to_string().into_bytes(),
        warnings: Vec::new(),
    }
}

/// `path` with `watch=true` as its only `watch` parameter.
fn watch_path(path: &str) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && *p != "watch" && !p.starts_with("watch="))
        .collect();
    params.push("watch=true");
    format!("{base}?{}", params.join("&"))
}

/// What a started watch needs to run.
pub struct Start {
    /// The apiserver's router (the HTTP handler chain).
    pub router: axum::Router,
    /// The apiserver's runtime.
    pub runtime: tokio::runtime::Handle,
    /// The apiserver's bus handle, to send the events.
    pub ctx: Context,
    /// Open bus watches.
    pub watches: BusWatches,
    /// Largest error body read.
    pub limit: usize,
}

/// Starts `req` for plugin `watcher`: blocks until the handler chain answered
/// (the reply), then streams the events from the apiserver's runtime.
pub fn start(s: Start, watcher: &str, req: ApiWatch) -> ApiResponse {
    if req.id.is_empty() {
        return refused(&ApiError::bad_request("api.Watch: id must not be empty"));
    }
    let Some(open) = s.watches.register(watcher, &req.id) else {
        return refused(&ApiError::bad_request(format!(
            "api.Watch: plugin {watcher:?} already has an open watch with id {:?}",
            req.id
        )));
    };
    let mut builder = axum::http::Request::builder()
        .method("GET")
        .uri(watch_path(&req.path));
    if !req.accept.is_empty() {
        builder = builder.header(axum::http::header::ACCEPT, req.accept.as_str());
    }
    let request = match builder.body(axum::body::Body::empty()) {
        Ok(mut r) => {
            r.extensions_mut()
                .insert(crate::auth::Caller::Bus(watcher.to_string()));
            r
        }
        Err(e) => {
            s.watches.forget(watcher, &req.id, open.serial);
            return refused(&ApiError::bad_request(format!(
                "invalid api.Watch path {:?}: {e}",
                req.path
            )));
        }
    };
    let (head_tx, head_rx) = std::sync::mpsc::channel();
    let watcher = watcher.to_owned();
    let id = req.id;
    let Start {
        router,
        runtime,
        ctx,
        watches,
        limit,
    } = s;
    runtime.spawn(async move {
        use tower::ServiceExt;
        let Ok(resp) = router.oneshot(request).await;
        let (parts, body) = resp.into_parts();
        if parts.status != axum::http::StatusCode::OK {
            watches.forget(&watcher, &id, open.serial);
            let body = axum::body::to_bytes(body, limit)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            let _ = head_tx.send(answer(&parts, body));
            return;
        }
        let _ = head_tx.send(answer(&parts, Vec::new()));
        let reason = pump(&ctx, &watcher, &id, body, &open).await;
        watches.forget(&watcher, &id, open.serial);
        end(&ctx, &watcher, &id, &open.ended, reason);
    });
    match head_rx.recv() {
        Ok(head) => head,
        Err(_) => refused(&ApiError::unavailable("the apiserver is stopping")),
    }
}

/// Sends the body's chunks to `watcher` until the body ends, the watch is stopped
/// or ended, or the watcher cannot be reached; returns the `api.WatchEnded` reason.
async fn pump(
    ctx: &Context,
    watcher: &str,
    id: &str,
    body: axum::body::Body,
    open: &OpenWatch,
) -> &'static str {
    let mut chunks = body.into_data_stream();
    loop {
        let chunk = tokio::select! {
            () = open.stop.cancelled() => return STOPPED,
            chunk = chunks.next() => chunk,
        };
        let Some(Ok(lines)) = chunk else {
            return CLOSED;
        };
        let events = ApiWatchEvents {
            id: id.to_owned(),
            lines: lines.to_vec(),
        };
        let ended = open.ended.lock();
        if *ended {
            return CLOSED;
        }
        if let Err(e) = ctx.send(watcher, &events) {
            debug!(watcher = %watcher, id = %id, error = %e, "bus watcher unreachable; watch closed");
            return CLOSED;
        }
        drop(ended);
    }
}

#[cfg(test)]
mod tests {
    use super::{watch_path, BusWatches};

    #[test]
    fn watch_path_should_carry_watch_true_once() {
        assert_eq!(watch_path("/api/v1/pods"), "/api/v1/pods?watch=true");
        assert_eq!(
            watch_path("/api/v1/pods?watch=false&labelSelector=a%3Db&watch"),
            "/api/v1/pods?labelSelector=a%3Db&watch=true"
        );
    }

    #[test]
    fn bus_watches_should_refuse_a_second_open_watch_with_one_id() {
        let watches = BusWatches::default();
        let first = watches.register("p", "w").expect("first");
        assert!(watches.register("p", "w").is_none());
        assert!(watches.register("q", "w").is_some());
        assert!(watches.stop("p", "w"));
        assert!(first.stop.is_cancelled());
        let second = watches.register("p", "w").expect("id free again");
        watches.forget("p", "w", first.serial);
        assert_eq!(watches.len(), 2, "a stale forget keeps the new watch");
        watches.forget("p", "w", second.serial);
        assert_eq!(watches.len(), 1);
    }
}
