//! A ReplicaSet's status from the pods it controls.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubernel_client::ClientError;

use crate::pods::{is_available, is_ready};

/// The status of `rs` given its active pods and the error of the last create or
/// delete (which sets the `ReplicaFailure` condition).
pub fn compute_status(
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    manage_error: Option<&ClientError>,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    let fully_labeled = count(&|p: &Pod| {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    });
    let ready = count(&is_ready);
    let available = count(&|p: &Pod| is_available(p, min_ready, now));
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old
        .conditions
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    if let Some(e) = manage_error {
        let want = spec.replicas.unwrap_or(1);
        let reason = if (active.len() as i32) < want {
            "FailedCreate"
        } else {
            "FailedDelete"
        };
        let previous = rs
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "ReplicaFailure"));
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(e.to_string()),
            last_transition_time: previous
                .and_then(|c| c.last_transition_time.clone())
                .or(Some(Time(now))),
        });
    }
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_should_count_ready_available_and_fully_labeled_pods() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": 10, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}}
        }))
        .expect("rs");
        let pod = |labels: serde_json::Value, ready_at: Option<&str>| {
            let conditions = match ready_at {
                Some(t) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]),
                None => json!([]),
            };
            Arc::new(
                serde_json::from_value::<Pod>(json!({
                    "metadata": {"name": "p", "labels": labels},
                    "status": {"phase": "Running", "conditions": conditions}
                }))
                .expect("pod"),
            )
        };
        let pods = vec![
            pod(
                json!({"app": "web", "tier": "front"}),
                Some("2024-01-01T00:00:00Z"),
            ),
            pod(json!({"app": "web"}), Some("2024-01-01T00:00:55Z")),
            pod(json!({"app": "web", "tier": "front"}), None),
        ];
        let now: jiff::Timestamp = "2024-01-01T00:01:00Z".parse().expect("now");
        let s = compute_status(&rs, &pods, None, now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(3));
        assert!(s.conditions.is_none());
    }
}
