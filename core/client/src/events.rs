//! Kubernetes Events (core/v1) written on behalf of a component, with repeats
//! folded into one Event whose `count` grows, as client-go's recorder does.
//!
//! As client-go's broadcaster, [`EventRecorder::record`] only queues the Event:
//! a few writers send them, and an Event past a full queue is dropped, so a
//! burst of Events never floods the apiserver ahead of the component's real work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::ObjectReference;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::ObjectResource;
use crate::Client;

/// Most distinct (object, reason, message) triples remembered for folding repeats.
const MAX_REMEMBERED: usize = 4096;

/// How often [`EventRecorder::record`] retries an Event refused with 429.
const RETRIES_ON_429: u32 = 8;

/// Events queued for writing, per recorder. client-go's `maxQueuedEvents` is 1,000:
/// at 2,000 pods/s that dropped two thirds of the scheduler's `Scheduled` Events,
/// and every scheduled pod should be explained.
const MAX_QUEUED: usize = 10_000;

/// Events written at once, per recorder: enough to keep up with the scheduler
/// at 2,000 pods/s on 2 cores (8 fell behind).
const WRITERS: usize = 32;

/// The object's name as the start of a valid Event name (a DNS subdomain):
/// lowercase, other characters than `a-z0-9.-` replaced by `-`.
fn event_name_prefix(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .take(200)
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '-' || c == '.');
    if trimmed.is_empty() {
        "object".to_string()
    } else {
        trimmed.to_string()
    }
}

/// (object uid or name, reason, message): what makes two Events the same.
type RepeatKey = (String, String, String);

/// (namespace, Event name, count) of the Event repeats are folded into.
type Folded = (String, String, u32);

/// Writes Events about objects; cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    writer: Arc<Writer>,
    /// Events waiting for a writer; the writers start with the first Event.
    queue: Arc<OnceLock<mpsc::Sender<Queued>>>,
}

/// What writes the Events.
struct Writer {
    client: Client,
    component: String,
    host: String,
    seen: Mutex<HashMap<RepeatKey, Folded>>,
    /// Events dropped because the queue was full.
    dropped: AtomicU64,
}

/// One Event waiting in the queue.
struct Queued {
    object: ObjectReference,
    type_: String,
    reason: String,
    message: String,
}

impl EventRecorder {
    /// A recorder whose Events say `source.component = component` (and `host` when not empty).
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        EventRecorder {
            writer: Arc::new(Writer {
                client,
                component: component.to_string(),
                host: host.to_string(),
                seen: Mutex::new(HashMap::new()),
                dropped: AtomicU64::new(0),
            }),
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// The reference an Event uses for `object`.
    pub fn reference<K: ObjectResource>(object: &K) -> ObjectReference {
        let meta = object.metadata();
        ObjectReference {
            api_version: Some(K::API_VERSION.to_string()),
            kind: Some(K::KIND.to_string()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path: None,
        }
    }

    /// Records an Event (`type_` is `Normal` or `Warning`) in the background; a
    /// failure is logged, never returned: Events are best effort, as upstream. Like
    /// upstream's event broadcaster, it queues the Event for one of a few writers
    /// (dropped, and logged, when 10,000 already wait), and an Event refused for load
    /// (429) is retried (100 ms doubling to 2 s, 8 times). Call it on a runtime.
    pub fn record(&self, object: ObjectReference, type_: &str, reason: &str, message: &str) {
        let queue = self.queue.get_or_init(|| self.start_writers());
        let event = Queued {
            object,
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if let Err(mpsc::error::TrySendError::Full(event)) = queue.try_send(event) {
            let dropped = self.writer.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::warn!(reason = %event.reason, dropped, "events dropped: {MAX_QUEUED} already wait to be written");
            }
        }
    }

    /// Starts the writers on the current runtime; returns their queue.
    fn start_writers(&self) -> mpsc::Sender<Queued> {
        let (tx, rx) = mpsc::channel::<Queued>(MAX_QUEUED);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            let (writer, rx) = (self.writer.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(e) = next else { return };
                    writer.write_retrying(&e).await;
                }
            });
        }
        tx
    }

    /// Records an Event and waits for the apiserver's answer.
    pub async fn write(
        &self,
        object: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), crate::ClientError> {
        self.writer.write(object, type_, reason, message).await
    }
}

impl Writer {
    /// Writes a queued Event, retrying it while the apiserver answers 429.
    async fn write_retrying(&self, e: &Queued) {
        let mut delay = std::time::Duration::from_millis(100);
        for attempt in 0..=RETRIES_ON_429 {
            match self.write(&e.object, &e.type_, &e.reason, &e.message).await {
                Ok(()) => return,
                Err(crate::ClientError::Api { code: 429, .. }) if attempt < RETRIES_ON_429 => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                Err(err) => {
                    tracing::warn!(reason = %e.reason, error = %err, "event not recorded");
                    return;
                }
            }
        }
    }

    async fn write(
        &self,
        object: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), crate::ClientError> {
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let ns = object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let identity = object
            .uid
            .clone()
            .or_else(|| object.name.clone())
            .unwrap_or_default();
        let key = (identity, reason.to_string(), message.to_string());
        let repeat = self.seen.lock().get(&key).cloned();
        if let Some((event_ns, name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let path = format!("/api/v1/namespaces/{event_ns}/events/{name}");
            let body = serde_json::to_vec(&patch).unwrap_or_default();
            if self
                .client
                .send("PATCH", &path, Some(("application/merge-patch+json", body)))
                .await
                .is_ok()
            {
                self.seen.lock().insert(key, (event_ns, name, count + 1));
                return Ok(());
            }
        }
        let name = format!(
            "{}.{:x}",
            event_name_prefix(object.name.as_deref().unwrap_or("object")),
            jiff::Timestamp::now().as_nanosecond()
        );
        let event = NewEvent {
            api_version: "v1",
            kind: "Event",
            metadata: EventMeta {
                name: &name,
                namespace: &ns,
            },
            involved_object: object,
            reason,
            message,
            type_,
            count: 1,
            first_timestamp: &now,
            last_timestamp: &now,
            source: EventSource {
                component: &self.component,
                host: &self.host,
            },
            reporting_component: &self.component,
            reporting_instance: &self.host,
        };
        let body = serde_json::to_vec(&event).map_err(|source| crate::ClientError::Decode {
            what: "Event body".into(),
            source,
        })?;
        let path = format!("/api/v1/namespaces/{ns}/events");
        self.client
            .send("POST", &path, Some(("application/json", body)))
            .await?;
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(key, (ns, name, 1));
        Ok(())
    }
}

/// The body of a new core/v1 Event, serialized straight from the recorder's
/// borrowed fields (no JSON tree built per Event).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct NewEvent<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: EventMeta<'a>,
    involved_object: &'a ObjectReference,
    reason: &'a str,
    message: &'a str,
    #[serde(rename = "type")]
    type_: &'a str,
    count: i32,
    first_timestamp: &'a str,
    last_timestamp: &'a str,
    source: EventSource<'a>,
    reporting_component: &'a str,
    reporting_instance: &'a str,
}

#[derive(serde::Serialize)]
struct EventMeta<'a> {
    name: &'a str,
    namespace: &'a str,
}

#[derive(serde::Serialize)]
struct EventSource<'a> {
    component: &'a str,
    host: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_event_should_serialize_as_a_core_v1_event() {
        let object = ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("ns".into()),
            name: Some("web-0".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let event = NewEvent {
            api_version: "v1",
            kind: "Event",
            metadata: EventMeta {
                name: "web-0.1f",
                namespace: "ns",
            },
            involved_object: &object,
            reason: "Scheduled",
            message: "Successfully assigned ns/web-0 to n1",
            type_: "Normal",
            count: 1,
            first_timestamp: "2026-11-27T10:00:00Z",
            last_timestamp: "2026-11-27T10:00:00Z",
            source: EventSource {
                component: "default-scheduler",
                host: "h",
            },
            reporting_component: "default-scheduler",
            reporting_instance: "h",
        };
        assert_eq!(
            serde_json::to_value(&event).ok(),
            Some(serde_json::json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "web-0.1f", "namespace": "ns"},
                "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "web-0", "uid": "u1"},
                "reason": "Scheduled", "message": "Successfully assigned ns/web-0 to n1",
                "type": "Normal", "count": 1,
                "firstTimestamp": "2026-11-27T10:00:00Z", "lastTimestamp": "2026-11-27T10:00:00Z",
                "source": {"component": "default-scheduler", "host": "h"},
                "reportingComponent": "default-scheduler", "reportingInstance": "h"
            }))
        );
    }

    #[test]
    fn event_names_should_be_valid_dns_subdomains() {
        assert_eq!(event_name_prefix("Binpack"), "binpack");
        assert_eq!(event_name_prefix("web-0"), "web-0");
        assert_eq!(event_name_prefix("a_b:c"), "a-b-c");
        assert_eq!(event_name_prefix("__"), "object");
    }
}
