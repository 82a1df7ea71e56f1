//! The taints the node lifecycle controller owns, and the node's taint list after a change.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Taint key of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key of a node whose Ready condition is Unknown (no heartbeat).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The node's Ready condition status: `True`, `False` or `Unknown` (also when missing).
pub fn ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map_or("Unknown", |c| c.status.as_str())
}

/// The lifecycle taint key a node with Ready `status` should carry, if any.
pub fn wanted_key(status: &str) -> Option<&'static str> {
    match status {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    }
}

/// The lifecycle taint key the node carries with `effect`, if any.
pub fn current_key(node: &Node, effect: &str) -> Option<&'static str> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    [NOT_READY, UNREACHABLE].into_iter().find(|k| {
        taints
            .into_iter()
            .flatten()
            .any(|t| t.key == *k && t.effect == effect)
    })
}

/// The node's taints with the lifecycle taints of `effect` replaced by `key` (none when `None`).
pub fn with_taint(
    node: &Node,
    effect: &str,
    key: Option<&str>,
    now: jiff::Timestamp,
) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !(t.effect == effect && (t.key == NOT_READY || t.key == UNREACHABLE)))
        .collect();
    if let Some(k) = key {
        taints.push(Taint {
            key: k.to_string(),
            effect: effect.to_string(),
            value: None,
            time_added: (effect == "NoExecute").then_some(Time(now)),
        });
    }
    taints
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn with_taint_should_swap_lifecycle_taints_and_keep_others() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": [
                {"key": NOT_READY, "effect": "NoExecute"},
                {"key": "dedicated", "effect": "NoExecute"}
            ]}
        }))
        .expect("node");
        assert_eq!(current_key(&node, "NoExecute"), Some(NOT_READY));
        let t = with_taint(&node, "NoExecute", Some(UNREACHABLE), crate::pods::now());
        let keys: Vec<&str> = t.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["dedicated", UNREACHABLE]);
        assert!(t[1].time_added.is_some());
        assert_eq!(wanted_key("True"), None);
        assert_eq!(wanted_key("Unknown"), Some(UNREACHABLE));
    }
}
