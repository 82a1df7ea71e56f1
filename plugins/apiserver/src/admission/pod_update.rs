//! Pod update rules (`ValidatePodUpdate`): only images, activeDeadlineSeconds, added tolerations and removed scheduling gates may change.

use serde_json::{json, Value};

use super::compare::{diff, semantic_eq};
use super::names::inclusive_range_error;
use super::pod::{list, str_of, validate_pod_spec};
use super::{child, index};
use crate::status::Cause;

/// upstream `updatablePodSpecFields`, joined with `,` in the message.
const UPDATABLE: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// A Pod update: the new spec must be valid and differ from the old one only where allowed.
pub(super) fn validate_pod_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let (ns, os) = (
        new.get("spec").unwrap_or(&null),
        old.get("spec").unwrap_or(&null),
    );
    // An unchanged spec (every write to /status) was valid when it was stored.
    if ns != os {
        validate_pod_spec(ns, "spec", causes);
    }
    for key in ["containers", "initContainers"] {
        let (n, o) = (list(ns.get(key)), list(os.get(key)));
        let path = child("spec", key);
        if n.len() != o.len() {
            causes.push(Cause::forbidden(
                path,
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in n.iter().enumerate() {
            let image = str_of(c, "image");
            if image.is_empty() {
                causes.push(Cause::required(child(&index(&path, i), "image")));
            } else if image.trim() != image {
                causes.push(Cause::invalid(
                    child(&index(&path, i), "image"),
                    &json!(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    let old_deadline = os.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (
        ns.get("activeDeadlineSeconds").and_then(Value::as_i64),
        old_deadline,
    ) {
        (Some(d), _) if !(0..=i64::from(i32::MAX)).contains(&d) => {
            causes.push(Cause::invalid(
                "spec.activeDeadlineSeconds",
                &json!(d),
                &inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(d), Some(o)) if o < d => {
            causes.push(Cause::invalid(
                "spec.activeDeadlineSeconds",
                &json!(d),
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => {
            causes.push(Cause::invalid(
                "spec.activeDeadlineSeconds",
                &Value::Null,
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }
    only_added_tolerations(ns, os, causes);
    only_deleted_gates(ns, os, causes);
    if semantic_eq(Some(ns), Some(os)) {
        return;
    }
    let munged = munge(ns, os);
    if !semantic_eq(Some(&munged), Some(os)) {
        let changes = diff(Some(os), Some(&munged), "spec", 20).join("\n");
        causes.push(Cause::forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {}\n{changes}",
                UPDATABLE.join(",")
            ),
        ));
    }
}

/// The new spec with the fields that may change set back to their old values.
fn munge(new: &Value, old: &Value) -> Value {
    let mut munged = new.clone();
    for key in ["containers", "initContainers"] {
        let old_list = list(old.get(key));
        if let Some(items) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (c, o) in items.iter_mut().zip(old_list) {
                if let Some(c) = c.as_object_mut() {
                    match o.get("image") {
                        Some(image) => c.insert("image".into(), image.clone()),
                        None => c.remove("image"),
                    };
                }
            }
        }
    }
    let relax_grace = old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g < 0)
        && new
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(1);
    let mut carried = vec!["activeDeadlineSeconds", "schedulingGates", "tolerations"];
    if relax_grace {
        carried.push("terminationGracePeriodSeconds");
    }
    if let Some(m) = munged.as_object_mut() {
        for field in carried {
            match old.get(field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
    }
    munged
}

/// `validateOnlyAddedTolerations`: every old toleration is still there (its tolerationSeconds may change).
fn only_added_tolerations(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("tolerationSeconds");
        }
        t
    };
    let new_list: Vec<Value> = list(new.get("tolerations")).iter().map(strip).collect();
    for o in list(old.get("tolerations")) {
        let o = strip(o);
        if !new_list.iter().any(|n| semantic_eq(Some(n), Some(&o))) {
            causes.push(Cause::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
}

/// `validateOnlyDeletedSchedulingGates`.
fn only_deleted_gates(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let old_names: Vec<&str> = list(old.get("schedulingGates"))
        .iter()
        .map(|g| str_of(g, "name"))
        .collect();
    for (i, g) in list(new.get("schedulingGates")).iter().enumerate() {
        let name = str_of(g, "name");
        if !old_names.contains(&name) {
            causes.push(Cause::forbidden(
                index("spec.schedulingGates", i),
                &format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(image: &str, extra: Value) -> Value {
        let mut spec = json!({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "web", "image": image, "imagePullPolicy": "IfNotPresent", "terminationMessagePolicy": "File"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    fn texts(new: &Value, old: &Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate_pod_update(new, old, &mut causes);
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn image_changes_should_be_allowed() {
        assert!(texts(&pod("nginx:2", json!({})), &pod("nginx:1", json!({}))).is_empty());
    }

    #[test]
    fn other_spec_changes_should_be_forbidden_with_the_upstream_message() {
        let got = texts(
            &pod("nginx:1", json!({"restartPolicy": "Never"})),
            &pod("nginx:1", json!({})),
        );
        assert_eq!(
            got,
            vec!["spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n- spec.restartPolicy: \"Always\"\n+ spec.restartPolicy: \"Never\""]
        );
    }

    #[test]
    fn adding_containers_should_be_forbidden() {
        let mut new = pod("nginx:1", json!({}));
        new["spec"]["containers"] = json!([
            {"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent", "terminationMessagePolicy": "File"},
            {"name": "side", "image": "busybox", "imagePullPolicy": "IfNotPresent", "terminationMessagePolicy": "File"}
        ]);
        assert_eq!(
            texts(&new, &pod("nginx:1", json!({}))),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
    }

    #[test]
    fn active_deadline_may_only_shrink_or_be_added() {
        let old = pod("a", json!({"activeDeadlineSeconds": 100}));
        assert!(texts(&pod("a", json!({"activeDeadlineSeconds": 50})), &old).is_empty());
        assert_eq!(
            texts(&pod("a", json!({"activeDeadlineSeconds": 200})), &old),
            vec!["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"]
        );
        assert!(texts(
            &pod("a", json!({"activeDeadlineSeconds": 10})),
            &pod("a", json!({}))
        )
        .is_empty());
        assert_eq!(
            texts(&pod("a", json!({})), &old),
            vec!["spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value"]
        );
    }

    #[test]
    fn tolerations_may_only_be_added() {
        let t1 = json!({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10});
        let t2 = json!({"key": "b", "operator": "Exists"});
        let old = pod("a", json!({"tolerations": [t1]}));
        let mut changed = t1.clone();
        changed["tolerationSeconds"] = json!(20);
        assert!(texts(&pod("a", json!({"tolerations": [changed, t2]})), &old).is_empty());
        assert_eq!(
            texts(&pod("a", json!({"tolerations": [t2]})), &old),
            vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
        );
    }

    #[test]
    fn grace_period_may_only_go_from_negative_to_one() {
        let old = pod("a", json!({"terminationGracePeriodSeconds": -1}));
        assert!(texts(&pod("a", json!({"terminationGracePeriodSeconds": 1})), &old).is_empty());
        assert_eq!(
            texts(
                &pod("a", json!({"terminationGracePeriodSeconds": 5})),
                &pod("a", json!({}))
            )
            .len(),
            1
        );
    }

    #[test]
    fn scheduling_gates_may_only_be_removed() {
        let old = pod("a", json!({"schedulingGates": [{"name": "x"}]}));
        assert!(texts(&pod("a", json!({})), &old).is_empty());
        assert_eq!(
            texts(&pod("a", json!({"schedulingGates": [{"name": "y"}]})), &old),
            vec!["spec.schedulingGates[0]: Forbidden: only deletion is allowed, but found new scheduling gate 'y'"]
        );
    }
}
