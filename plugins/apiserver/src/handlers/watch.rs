//! WATCH: newline-delimited JSON events over a chunked response, from a revision or with initial ADDED events.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use kubernel_api::pointer::Pointer;
use kubernel_api::resources::table::{self, IncludeObject};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{Interval, Sleep};

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
                revision: None,
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
    let content_type = match output {
        Output::Json => "application/json",
        Output::Table(_) => TABLE_CONTENT_TYPE,
    };
    let started = state.store.watch(&prefix, from);
    let r = info.resource;
    let running = Running::new(state.metrics.longrunning.with_label_values(&[
        "WATCH",
        r.group,
        r.version,
        r.plural,
        "",
        info.scope(),
        "apiserver",
    ]));
    let mut enc = Encoder {
        output,
        info: info.clone(),
        columns_sent: false,
    };
    let sent = state.metrics.watch_events.with_label_values(&[r.kind]);
    // The initial ADDED events and the backlog go out as the first chunk.
    let mut head = Vec::new();
    let mut lines = 0u64;
    let live = match started {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let e = ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ));
            head.extend_from_slice(&enc.line("ERROR", e.to_status()));
            lines += 1;
            None
        }
        Err(e) => {
            head.extend_from_slice(
                &enc.line("ERROR", ApiError::unavailable(e.to_string()).to_status()),
            );
            lines += 1;
            None
        }
        Ok(mut w) => {
            let mut last = from;
            for object in initial {
                head.extend_from_slice(&enc.object("ADDED", &object));
                lines += 1;
            }
            for ev in std::mem::take(&mut w.backlog) {
                last = ev.revision;
                lines += u64::from(enc.event(&ev, &filter, &mut head));
            }
            let bookmarks = bookmarks.then(|| {
                let period =
                    Duration::from_secs(state.config.watch_bookmark_interval_seconds.max(1));
                tokio::time::interval_at(tokio::time::Instant::now() + period, period)
            });
            Some(Live {
                events: w.events,
                filter,
                last,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                bookmarks,
            })
        }
    };
    sent.inc_by(lines);
    let body = WatchBody {
        state,
        enc,
        sent,
        head: (!head.is_empty()).then(|| Bytes::from(head)),
        live,
        _running: running,
    };
    let stream = futures::stream::unfold(body, |mut body| async move {
        let chunk = body.next_chunk().await?;
        Some((Ok::<Bytes, Infallible>(chunk), body))
    });
    let mut resp = json(200, content_type, Body::from_stream(stream));
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// Most bytes of watch lines gathered into one chunk when events queue up.
const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// The response body of one watch: store events become chunks of watch lines as
/// the connection asks for them, with no task or channel in between. When events
/// queue up (a slow client, a burst of writes) they leave in one chunk, so a
/// loaded apiserver makes fewer, larger writes instead of falling further behind.
struct WatchBody {
    state: Arc<ApiState>,
    enc: Encoder,
    /// `apiserver_watch_events_total{kind}` of this watch's resource.
    sent: kubernel_sdk::prometheus::IntCounter,
    /// Lines to send first: initial ADDED events and the backlog, or an ERROR.
    head: Option<Bytes>,
    /// The live part; `None` once the watch ended.
    live: Option<Live>,
    _running: Running,
}

/// A watch past its start: store events, bookmarks and the timeout.
struct Live {
    events: mpsc::Receiver<Event>,
    filter: Filter,
    /// Revision of the last event seen (bookmarks carry it).
    last: Revision,
    deadline: Pin<Box<Sleep>>,
    bookmarks: Option<Interval>,
}

impl WatchBody {
    /// The next chunk of watch lines; `None` ends the response (timeout, the watcher
    /// fell behind and was dropped, or the server stops).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(head) = self.head.take() {
            return Some(head);
        }
        let WatchBody {
            state,
            enc,
            sent,
            live: live_slot,
            ..
        } = self;
        let live = live_slot.as_mut()?;
        loop {
            let first = tokio::select! {
                ev = live.events.recv() => ev,
                () = bookmark_due(&mut live.bookmarks) => {
                    sent.inc();
                    return Some(enc.bookmark(live.last));
                }
                () = &mut live.deadline => None,
                () = state.shutdown.cancelled() => None,
            };
            let Some(first) = first else {
                *live_slot = None;
                return None;
            };
            let mut chunk = Vec::new();
            let mut lines = 0u64;
            let mut next = Some(first);
            while let Some(ev) = next.take() {
                live.last = ev.revision;
                lines += u64::from(enc.event(&ev, &live.filter, &mut chunk));
                if chunk.len() < MAX_CHUNK_BYTES {
                    next = live.events.try_recv().ok();
                }
            }
            if lines > 0 {
                sent.inc_by(lines);
                return Some(Bytes::from(chunk));
            }
        }
    }
}

/// Completes at the next bookmark tick; never when bookmarks are off.
async fn bookmark_due(bookmarks: &mut Option<Interval>) {
    match bookmarks {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Counts a watch in `apiserver_longrunning_requests` while it lives.
struct Running(kubernel_sdk::prometheus::IntGauge);

impl Running {
    fn new(gauge: kubernel_sdk::prometheus::IntGauge) -> Running {
        gauge.inc();
        Running(gauge)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Appends the watch line `{"type":"<kind>","object":<object>}` to `out`.
fn frame(out: &mut Vec<u8>, kind: &str, object: &[u8]) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
}

/// The [`crate::store::Encodings`] key of a Table encoding: what it includes of
/// the object, and whether it carries the column definitions.
fn table_encoding_key(include: IncludeObject, with_columns: bool) -> u8 {
    let include = match include {
        IncludeObject::None => 0,
        IncludeObject::Metadata => 1,
        IncludeObject::Object => 2,
    };
    include * 2 + u8::from(with_columns)
}

/// Turns store events into watch lines for one request.
struct Encoder {
    output: Output,
    info: RequestInfo,
    columns_sent: bool,
}

impl Encoder {
    fn line(&self, kind: &str, object: Value) -> Bytes {
        let mut line = json!({ "type": kind, "object": object }).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn object(&mut self, kind: &str, object: &Value) -> Bytes {
        match self.output {
            Output::Json => self.line(kind, object.clone()),
            Output::Table(include) => {
                let with_columns = !self.columns_sent;
                self.columns_sent = true;
                let t = self.table(object, include, with_columns);
                let mut out = Vec::with_capacity(t.len() + 32);
                frame(&mut out, kind, &t);
                Bytes::from(out)
            }
        }
    }

    /// `object` as a one-row Table, with the column definitions or with `[]` (the
    /// watcher has them from an earlier event).
    fn table(&self, object: &Value, include: IncludeObject, with_columns: bool) -> Bytes {
        let rv = object
            .at("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut t = table::table(
            self.info.resource,
            &[object],
            include,
            rv,
            "",
            None,
            jiff::Timestamp::now(),
        );
        if !with_columns {
            t["columnDefinitions"] = json!([]);
        }
        Bytes::from(t.to_string())
    }

    /// Appends the watch line for a store event to `out`, honouring selector
    /// transitions (an object that stops matching is DELETED for this watcher, one
    /// that starts is ADDED); returns whether there was one.
    fn event(&mut self, ev: &Event, filter: &Filter, out: &mut Vec<u8>) -> bool {
        let now = filter.matches(&ev.object.object);
        let before = ev.prev.as_ref().is_some_and(|p| filter.matches(&p.object));
        let kind = match ev.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if now || before => "DELETED",
            _ => return false,
        };
        match self.output {
            // Framed around the stored object's bytes: no re-encoding per watcher.
            Output::Json => frame(out, kind, &ev.object.json),
            // Encoded once per event and format, shared by every Table watcher.
            Output::Table(include) => {
                let with_columns = !self.columns_sent;
                self.columns_sent = true;
                let key = table_encoding_key(include, with_columns);
                let t = ev.encodings.get_or_insert_with(key, || {
                    self.table(&ev.object.object, include, with_columns)
                });
                frame(out, kind, &t);
            }
        }
        true
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

#[cfg(test)]
mod tests {
    use kubernel_api::resources::table::IncludeObject;
    use serde_json::{json, Value};

    use super::{Encoder, Filter};
    use crate::negotiate::Output;
    use crate::request::{RequestInfo, Verb};
    use crate::selectors::{FieldSelector, LabelSelector};
    use crate::store::{Event, EventType, Stored};

    fn pods_watch(output: Output) -> Encoder {
        let resource = kubernel_api::resources::find("", "v1", "pods").expect("pods resource");
        Encoder {
            output,
            info: RequestInfo {
                verb: Verb::Watch,
                resource,
                subresource: String::new(),
                namespace: "default".into(),
                name: String::new(),
            },
            columns_sent: false,
        }
    }

    fn modified_pod(revision: u64) -> Event {
        let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "resourceVersion": revision.to_string(), "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Running"}});
        let stored = Stored {
            key: "pods/default/p".into(),
            json: serde_json::to_vec(&object).expect("json").into(),
            object: object.into(),
            create_revision: 1,
            mod_revision: revision,
        };
        Event {
            revision,
            kind: EventType::Modified,
            prev: Some(stored.clone()),
            object: stored,
            encodings: Default::default(),
        }
    }

    fn lines(out: &[u8]) -> Vec<Value> {
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("watch line is JSON"))
            .collect()
    }

    #[test]
    fn table_watch_should_encode_an_event_once_for_every_watcher() {
        let everything = Filter {
            labels: LabelSelector::parse("").expect("labels"),
            fields: FieldSelector::parse("", "Pod").expect("fields"),
        };
        let first = modified_pod(5);
        let second = modified_pod(6);
        let mut watchers: Vec<Encoder> = (0..50)
            .map(|_| pods_watch(Output::Table(IncludeObject::Metadata)))
            .collect();
        let mut outputs = vec![Vec::new(); watchers.len()];
        for (watcher, out) in watchers.iter_mut().zip(&mut outputs) {
            assert!(watcher.event(&first, &everything, out));
            assert!(watcher.event(&second, &everything, out));
        }
        // One encoding with the column definitions (each watcher's first event),
        // one without (its later events): not one per watcher.
        assert_eq!((first.encodings.len(), second.encodings.len()), (1, 1));
        assert!(outputs.iter().all(|out| *out == outputs[0]));
        let sent = lines(&outputs[0]);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0]["type"], "MODIFIED");
        assert_eq!(sent[0]["object"]["kind"], "Table");
        assert!(sent[0]["object"]["columnDefinitions"]
            .as_array()
            .is_some_and(|c| !c.is_empty()));
        assert_eq!(sent[1]["object"]["columnDefinitions"], json!([]));
        assert_eq!(
            sent[1]["object"]["rows"][0]["object"]["metadata"]["resourceVersion"],
            "6"
        );

        // Another format of the same event is another encoding; JSON watches use
        // the stored bytes and make none.
        let mut full = pods_watch(Output::Table(IncludeObject::Object));
        let mut out = Vec::new();
        assert!(full.event(&second, &everything, &mut out));
        assert_eq!(lines(&out)[0]["object"]["rows"][0]["object"]["kind"], "Pod");
        let mut plain = pods_watch(Output::Json);
        assert!(plain.event(&second, &everything, &mut Vec::new()));
        assert_eq!(second.encodings.len(), 2);
    }
}
