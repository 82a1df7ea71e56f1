//! Which pods a ReplicaSet deletes first when it scales down (upstream `ActivePodsWithRanks`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::pods::{is_ready, ready_since};

/// `pods` ordered from the first to delete to the last: unscheduled before
/// scheduled, Pending before Unknown before Running, not ready before ready,
/// pods sharing a node with more siblings first, recently ready before long
/// ready, more restarts first, newest first.
pub fn deletion_order(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(node) = node_of(p) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Pod| node_of(p).map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
    let mut ranked: Vec<(usize, Arc<Pod>)> = pods.iter().map(|p| (rank(p), p.clone())).collect();
    ranked.sort_by(|(ra, a), (rb, b)| compare(a, *ra, b, *rb));
    ranked.into_iter().map(|(_, p)| p).collect()
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| {
            cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
        })
}

/// Less means "delete first".
fn compare(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    node_of(a)
        .is_some()
        .cmp(&node_of(b).is_some())
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(rank_b.cmp(&rank_a))
        .then_with(|| match (is_ready(a), is_ready(b)) {
            (true, true) => ready_since(b).cmp(&ready_since(a)),
            _ => Ordering::Equal,
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase, "conditions": [
                    {"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": created}
                ]}
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn deletion_order_should_prefer_unscheduled_not_ready_then_newest_pods() {
        let pods = vec![
            pod(
                "old-ready",
                Some("n1"),
                "Running",
                true,
                "2024-01-01T00:00:00Z",
            ),
            pod(
                "new-ready",
                Some("n2"),
                "Running",
                true,
                "2024-01-02T00:00:00Z",
            ),
            pod(
                "not-ready",
                Some("n3"),
                "Running",
                false,
                "2024-01-01T00:00:00Z",
            ),
            pod(
                "unscheduled",
                None,
                "Pending",
                false,
                "2024-01-01T00:00:00Z",
            ),
        ];
        let order: Vec<String> = deletion_order(&pods)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            order,
            ["unscheduled", "not-ready", "new-ready", "old-ready"]
        );
    }
}
