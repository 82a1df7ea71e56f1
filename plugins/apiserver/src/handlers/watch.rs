//! WATCH: newline-delimited JSON events over a chunked response, from a revision or with initial ADDED events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use kubernel_api::resources::table;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::read::Filter;
use super::{ApiState, Query};
use crate::negotiate::{self, json, Output, TABLE_CONTENT_TYPE};
use crate::request::RequestInfo;
use crate::status::ApiError;
use crate::store::{Event, EventType, ListOptions, Revision, StoreError};

/// Default watch duration when the client gives no `timeoutSeconds` (kube-apiserver picks 30-60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Starts a watch; the response streams until the timeout, the client leaves or the server stops.
pub fn watch(
    state: Arc<ApiState>,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, query.get("includeObject").map(String::as_str))?;
    let filter = Filter::parse(info, query)?;
    let timeout = match query.get("timeoutSeconds").map(String::as_str) {
        None | Some("") => DEFAULT_TIMEOUT,
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
    };
    let bookmarks = matches!(
        query.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let prefix = info.collection_prefix();
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let (initial, from) = if rv.is_empty() || rv == "0" {
        let res = state
            .store
            .list(&ListOptions {
                prefix: prefix.clone(),
                start_after: None,
                limit: None,
            })
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let items: Vec<Value> = res
            .items
            .iter()
            .filter(|s| filter.matches(&s.object))
            .map(|s| (*s.object).clone())
            .collect();
        (items, res.revision)
    } else {
        let from: Revision = rv.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {rv:?}: must be an integer"
            ))
        })?;
        (Vec::new(), from)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let content_type = match output {
        Output::Json => "application/json",
        Output::Table(_) => TABLE_CONTENT_TYPE,
    };
    let started = state.store.watch(&prefix, from);
    let info = info.clone();
    let r = info.resource;
    let longrunning = state.metrics.longrunning.with_label_values(&[
        "WATCH",
        r.group,
        r.version,
        r.plural,
        "",
        info.scope(),
        "apiserver",
    ]);
    tokio::spawn(async move {
        longrunning.inc();
        let mut enc = Encoder {
            output,
            info: &info,
            columns_sent: false,
            sent: state
                .metrics
                .watch_events
                .with_label_values(&[info.resource.kind]),
        };
        match started {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                let e = ApiError::expired(format!(
                    "too old resource version: {requested} ({compacted})"
                ));
                let _ = tx.send(enc.line("ERROR", e.to_status())).await;
            }
            Err(e) => {
                let _ = tx
                    .send(enc.line("ERROR", ApiError::unavailable(e.to_string()).to_status()))
                    .await;
            }
            Ok(mut w) => {
                let mut last = from;
                let mut ok = true;
                for object in initial {
                    ok = ok && tx.send(enc.object("ADDED", &object)).await.is_ok();
                }
                for ev in std::mem::take(&mut w.backlog) {
                    last = ev.revision;
                    if let Some(line) = enc.event(&ev, &filter) {
                        ok = ok && tx.send(line).await.is_ok();
                    }
                }
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                let mut bookmark = tokio::time::interval(Duration::from_secs(
                    state.config.watch_bookmark_interval_seconds.max(1),
                ));
                bookmark.tick().await;
                while ok {
                    tokio::select! {
                        ev = w.events.recv() => match ev {
                            Some(ev) => {
                                last = ev.revision;
                                if let Some(line) = enc.event(&ev, &filter) {
                                    ok = tx.send(line).await.is_ok();
                                }
                            }
                            None => break,
                        },
                        _ = bookmark.tick(), if bookmarks => {
                            ok = tx.send(enc.bookmark(last)).await.is_ok();
                        }
                        _ = &mut deadline => break,
                        _ = state.shutdown.cancelled() => break,
                        _ = tx.closed() => break,
                    }
                }
            }
        }
        longrunning.dec();
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let mut resp = json(200, content_type, Body::from_stream(stream));
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// Turns store events into watch lines for one request.
struct Encoder<'a> {
    output: Output,
    info: &'a RequestInfo,
    columns_sent: bool,
    /// `apiserver_watch_events_total{kind}` of this watch's resource.
    sent: kubernel_sdk::prometheus::IntCounter,
}

impl Encoder<'_> {
    fn line(&self, kind: &str, object: Value) -> Bytes {
        self.sent.inc();
        let mut line = json!({ "type": kind, "object": object }).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    /// A JSON watch line around an object that is already serialized (no re-encoding).
    fn raw_line(&self, kind: &str, object_json: &[u8]) -> Bytes {
        self.sent.inc();
        let mut line = Vec::with_capacity(object_json.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(object_json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn object(&mut self, kind: &str, object: &Value) -> Bytes {
        match self.output {
            Output::Json => self.line(kind, object.clone()),
            Output::Table(include) => {
                let rv = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let mut t = table::table(
                    self.info.resource,
                    &[object],
                    include,
                    &rv,
                    "",
                    None,
                    jiff::Timestamp::now(),
                );
                if self.columns_sent {
                    t["columnDefinitions"] = json!([]);
                }
                self.columns_sent = true;
                self.line(kind, t)
            }
        }
    }

    /// The watch line for a store event, honouring selector transitions (an object
    /// that stops matching is DELETED for this watcher, one that starts is ADDED).
    fn event(&mut self, ev: &Event, filter: &Filter) -> Option<Bytes> {
        let now = filter.matches(&ev.object.object);
        let before = ev.prev.as_ref().is_some_and(|p| filter.matches(&p.object));
        let kind = match ev.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if now || before => "DELETED",
            _ => return None,
        };
        if self.output == Output::Json {
            return Some(self.raw_line(kind, &ev.object.json));
        }
        let object = ev.object.object.clone();
        Some(self.object(kind, &object))
    }

    fn bookmark(&self, revision: Revision) -> Bytes {
        let r = self.info.resource;
        let object = json!({
            "kind": r.kind,
            "apiVersion": r.api_version(),
            "metadata": { "resourceVersion": revision.to_string() }
        });
        self.line("BOOKMARK", object)
    }
}
