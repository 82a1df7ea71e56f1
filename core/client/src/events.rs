//! Kubernetes Events (core/v1) written on behalf of a component, with repeats
//! folded into one Event whose `count` grows, as client-go's recorder does.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use parking_lot::Mutex;
use serde_json::json;

use crate::api::ObjectResource;
use crate::Client;

/// Most distinct (object, reason, message) triples remembered for folding repeats.
const MAX_REMEMBERED: usize = 4096;

/// The object's name as the start of a valid Event name (a DNS subdomain):
/// lowercase, other characters than `a-z0-9.-` replaced by `-`.
/// How often [`EventRecorder::record`] retries an Event refused with 429.
const RETRIES_ON_429: u32 = 8;

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
    client: Client,
    component: String,
    host: String,
    seen: Arc<Mutex<HashMap<RepeatKey, Folded>>>,
}

impl EventRecorder {
    /// A recorder whose Events say `source.component = component` (and `host` when not empty).
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        EventRecorder {
            client,
            component: component.to_string(),
            host: host.to_string(),
            seen: Arc::new(Mutex::new(HashMap::new())),
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
    /// upstream's event broadcaster, an Event refused for load (429) is retried
    /// (100 ms doubling to 2 s, 8 times) rather than dropped.
    pub fn record(&self, object: ObjectReference, type_: &str, reason: &str, message: &str) {
        let this = self.clone();
        let (type_, reason, message) = (type_.to_string(), reason.to_string(), message.to_string());
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(100);
            for attempt in 0..=RETRIES_ON_429 {
                match this.write(&object, &type_, &reason, &message).await {
                    Ok(()) => return,
                    Err(crate::ClientError::Api { code: 429, .. }) if attempt < RETRIES_ON_429 => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(2));
                    }
                    Err(e) => {
                        tracing::warn!(reason = %reason, error = %e, "event not recorded");
                        return;
                    }
                }
            }
        });
    }

    /// Records an Event and waits for the apiserver's answer.
    pub async fn write(
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
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": object,
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_should_be_valid_dns_subdomains() {
        assert_eq!(event_name_prefix("Binpack"), "binpack");
        assert_eq!(event_name_prefix("web-0"), "web-0");
        assert_eq!(event_name_prefix("a_b:c"), "a-b-c");
        assert_eq!(event_name_prefix("__"), "object");
    }
}
