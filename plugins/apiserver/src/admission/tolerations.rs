//! The DefaultTolerationSeconds admission plugin: new pods tolerate `not-ready` and `unreachable` nodes for a while.
//!
//! As kube-apiserver's `plugin/pkg/admission/defaulttolerationseconds`: on pod
//! create, a pod that does not already tolerate the `NoExecute` taint the node
//! lifecycle controller puts on a not-ready (or unreachable) node gets a
//! toleration of it for a bounded time, after which the taint manager evicts it.

use serde_json::{json, Value};

/// The taint on a node whose Ready condition is False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// The taint on a node whose Ready condition is Unknown (no heartbeat).
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// How long new pods tolerate each taint, seconds (`--default-not-ready-toleration-seconds`
/// and `--default-unreachable-toleration-seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TolerationSeconds {
    /// For `node.kubernetes.io/not-ready:NoExecute`.
    pub not_ready: i64,
    /// For `node.kubernetes.io/unreachable:NoExecute`.
    pub unreachable: i64,
}

/// Adds `<taint>:NoExecute op=Exists tolerationSeconds=<n>` for each taint the pod does
/// not tolerate yet. A toleration with an empty key (every taint) or an empty effect
/// (every effect) counts as tolerating, as upstream; the rest of the pod is left alone.
pub fn default_toleration_seconds(pod: &mut Value, seconds: TolerationSeconds) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |taint: &str| {
        existing.iter().any(|t| {
            let field = |name: &str| t.get(name).and_then(Value::as_str).unwrap_or("");
            (field("key") == taint || field("key").is_empty())
                && (field("effect") == "NoExecute" || field("effect").is_empty())
        })
    };
    let mut added: Vec<Value> = Vec::new();
    for (taint, secs) in [
        (NOT_READY_TAINT, seconds.not_ready),
        (UNREACHABLE_TAINT, seconds.unreachable),
    ] {
        if !tolerates(taint) {
            added.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": secs,
            }));
        }
    }
    if added.is_empty() {
        return;
    }
    let mut tolerations = existing;
    tolerations.extend(added);
    spec.insert("tolerations".into(), Value::Array(tolerations));
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: TolerationSeconds = TolerationSeconds {
        not_ready: 300,
        unreachable: 300,
    };

    fn tolerations(spec: Value, seconds: TolerationSeconds) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "spec": spec});
        default_toleration_seconds(&mut pod, seconds);
        pod.pointer("/spec/tolerations")
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[test]
    fn default_toleration_seconds_should_add_both_tolerations() {
        assert_eq!(
            tolerations(json!({"containers": []}), DEFAULTS),
            json!([
                {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
    }

    #[test]
    fn default_toleration_seconds_should_use_the_configured_seconds() {
        let got = tolerations(
            json!({}),
            TolerationSeconds {
                not_ready: 60,
                unreachable: 20,
            },
        );
        assert_eq!(got.pointer("/0/tolerationSeconds"), Some(&json!(60)));
        assert_eq!(got.pointer("/1/tolerationSeconds"), Some(&json!(20)));
    }

    #[test]
    fn default_toleration_seconds_should_keep_existing_tolerations_first() {
        let own = json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"});
        let got = tolerations(json!({"tolerations": [own.clone()]}), DEFAULTS);
        assert_eq!(got.pointer("/0"), Some(&own));
        assert_eq!(got.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn default_toleration_seconds_should_respect_tolerations_the_pod_has() {
        let not_ready = json!({"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let got = tolerations(json!({"tolerations": [not_ready.clone()]}), DEFAULTS);
        assert_eq!(got.pointer("/0"), Some(&not_ready));
        assert_eq!(got.pointer("/1/key"), Some(&json!(UNREACHABLE_TAINT)));
        assert_eq!(got.as_array().map(Vec::len), Some(2));

        // An empty effect tolerates every effect; an empty key (operator Exists) every taint.
        let any_effect = json!({"key": UNREACHABLE_TAINT, "operator": "Exists"});
        let got = tolerations(json!({"tolerations": [any_effect]}), DEFAULTS);
        assert_eq!(got.pointer("/1/key"), Some(&json!(NOT_READY_TAINT)));
        assert_eq!(got.as_array().map(Vec::len), Some(2));
        let everything = json!([{"operator": "Exists"}]);
        assert_eq!(
            tolerations(json!({"tolerations": everything.clone()}), DEFAULTS),
            everything
        );

        // A NoSchedule toleration of the taint does not cover NoExecute.
        let no_schedule =
            json!({"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoSchedule"});
        let got = tolerations(json!({"tolerations": [no_schedule]}), DEFAULTS);
        assert_eq!(got.as_array().map(Vec::len), Some(3));
    }
}
