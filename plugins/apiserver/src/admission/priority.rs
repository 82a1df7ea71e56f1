//! Priority admission (upstream `plugin/pkg/admission/priority`): a new pod's
//! `spec.priority` and `preemptionPolicy` come from its PriorityClass, or from the
//! global default class; and the rules of PriorityClass objects themselves.
//!
//! One difference on purpose: a pod without `priorityClassName` that sets
//! `spec.priority` itself keeps it when no global default class exists (upstream
//! refuses it), so scheduling experiments can set priorities without classes.

use kubernel_api::pointer::Pointer;
use serde_json::{json, Value};

use crate::status::Cause;
use crate::store::{ListOptions, Store};

/// The classes every cluster has: name, value, description.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// upstream `HighestUserDefinablePriority`.
const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

const POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];

/// The storage prefix of PriorityClasses.
pub const PREFIX: &str = "priorityclasses.scheduling.k8s.io/";

/// A PriorityClass: `system-` names are reserved, user values stay at or below 1e9.
pub(super) fn validate_priority_class(object: &Value, causes: &mut Vec<Cause>) {
    let name = object
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let value = object.get("value").and_then(Value::as_i64).unwrap_or(0);
    let system = SYSTEM_CLASSES
        .iter()
        .any(|(n, v, _)| *n == name && *v == value);
    if name.starts_with("system-") && !system {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "priority class names with 'system-' prefix are reserved for system use only",
        ));
    }
    if value > HIGHEST_USER_DEFINABLE && !system {
        causes.push(Cause::forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"
            ),
        ));
    }
    if let Some(policy) = object.get("preemptionPolicy").and_then(Value::as_str) {
        if !POLICIES.contains(&policy) {
            causes.push(Cause::not_supported(
                "preemptionPolicy",
                &json!(policy),
                POLICIES,
            ));
        }
    }
}

/// A PriorityClass update: its value and preemption policy stay as they are.
pub(super) fn validate_priority_class_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    for field in ["value", "preemptionPolicy"] {
        if new.get(field) != old.get(field) {
            causes.push(Cause::forbidden(field, "may not be changed in an update."));
        }
    }
}

/// Sets a new pod's priority from its class (or the global default class).
/// `requested` is the `spec.priority` the request itself carried. `Err` is the
/// reason for a 403 (`no PriorityClass with name x was found`, ...).
pub fn resolve(store: &dyn Store, pod: &mut Value, requested: Option<i64>) -> Result<(), String> {
    let class_name = pod
        .at("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let class = if class_name.is_empty() {
        global_default(store)?
    } else {
        let found = store
            .get(&format!("{PREFIX}{class_name}"))
            .map_err(|e| format!("reading PriorityClass {class_name}: {e}"))?;
        match found {
            Some(stored) => Some((*stored.object).clone()),
            None => return Err(format!("no PriorityClass with name {class_name} was found")),
        }
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let Some(class) = class else {
        spec.insert("priority".into(), json!(requested.unwrap_or(0)));
        return Ok(());
    };
    let value = class.get("value").and_then(Value::as_i64).unwrap_or(0);
    if let Some(asked) = requested {
        if asked != value && !class_name.is_empty() {
            return Err(format!("the integer value of priority ({asked}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"));
        }
    }
    let name = class
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    spec.insert("priorityClassName".into(), json!(name));
    spec.insert("priority".into(), json!(value));
    let policy = class
        .get("preemptionPolicy")
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority");
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

/// The global default class with the lowest value, as upstream picks it.
fn global_default(store: &dyn Store) -> Result<Option<Value>, String> {
    let classes = store
        .list(&ListOptions {
            prefix: PREFIX.into(),
            ..ListOptions::default()
        })
        .map_err(|e| format!("reading PriorityClasses: {e}"))?;
    Ok(classes
        .items
        .iter()
        .filter(|c| c.object.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.object.get("value").and_then(Value::as_i64).unwrap_or(0))
        .map(|c| (*c.object).clone()))
}

/// A system class object to store at start.
pub fn system_class(name: &str, value: i64, description: &str) -> Value {
    json!({
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {
            "name": name,
            "uid": crate::objects::new_uid(),
            "creationTimestamp": crate::objects::now(),
        },
        "value": value,
        "description": description,
        "preemptionPolicy": "PreemptLowerPriority",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(object: Value) -> Vec<String> {
        let mut c = Vec::new();
        validate_priority_class(&object, &mut c);
        c.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn user_classes_should_stay_below_a_billion_and_off_the_system_prefix() {
        assert!(causes(json!({"metadata": {"name": "high"}, "value": 1000})).is_empty());
        assert_eq!(
            causes(json!({"metadata": {"name": "huge"}, "value": 2_000_000_000i64})),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        let reserved = causes(json!({"metadata": {"name": "system-mine"}, "value": 1}));
        assert_eq!(reserved.len(), 1, "{reserved:?}");
        assert!(
            reserved[0].contains("reserved for system use only"),
            "{reserved:?}"
        );
        assert!(causes(
            json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000i64})
        )
        .is_empty());
    }

    #[test]
    fn value_changes_should_be_forbidden() {
        let mut c = Vec::new();
        validate_priority_class_update(&json!({"value": 2}), &json!({"value": 1}), &mut c);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].message, "Forbidden: may not be changed in an update.");
    }
}
