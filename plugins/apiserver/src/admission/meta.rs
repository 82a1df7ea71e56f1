//! `metadata` validation on create and update (`ValidateObjectMeta`, `ValidateObjectMetaUpdate`).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::child;
use super::names::{dns1123_label, label_value, qualified_name, NameRule};
use super::render::go_string_slice;
use crate::status::Cause;

/// upstream `TotalAnnotationSizeLimitB`: 256 KiB.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn meta<'a>(object: &'a Value, field: &str) -> Option<&'a Value> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .filter(|v| !v.is_null())
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    meta(object, field).and_then(Value::as_str).unwrap_or("")
}

/// The metadata of a new object: name (or generateName) per `rule`, namespace per scope, labels, annotations, owner references, finalizers.
pub(super) fn validate_object_meta(
    object: &Value,
    namespaced: bool,
    rule: NameRule,
    causes: &mut Vec<Cause>,
) {
    let generate_name = meta_str(object, "generateName");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            causes.push(Cause::invalid(
                "metadata.generateName",
                &json!(generate_name),
                &msg,
            ));
        }
    }
    let name = meta_str(object, "name");
    if name.is_empty() {
        causes.push(Cause::required_because(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in rule.check(name, false) {
            causes.push(Cause::invalid("metadata.name", &json!(name), &msg));
        }
    }
    let namespace = meta_str(object, "namespace");
    if namespaced {
        if namespace.is_empty() {
            causes.push(Cause::required("metadata.namespace"));
        } else {
            for msg in dns1123_label(namespace) {
                causes.push(Cause::invalid(
                    "metadata.namespace",
                    &json!(namespace),
                    &msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        causes.push(Cause::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta(object, "generation")
        .and_then(Value::as_i64)
        .filter(|g| *g < 0)
    {
        causes.push(Cause::invalid(
            "metadata.generation",
            &json!(g),
            "must be greater than or equal to 0",
        ));
    }
    validate_common(object, causes);
}

/// Labels, annotations, owner references and finalizers: checked on create and update alike.
fn validate_common(object: &Value, causes: &mut Vec<Cause>) {
    validate_labels(meta(object, "labels"), "metadata.labels", causes);
    validate_annotations(meta(object, "annotations"), "metadata.annotations", causes);
    validate_owner_references(meta(object, "ownerReferences"), causes);
    validate_finalizers(meta(object, "finalizers"), causes);
}

/// The metadata of an update: what may not change, no finalizers added while deleting, and the create-time checks of labels and the like.
pub(super) fn validate_object_meta_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if meta(old, "deletionTimestamp").is_some() {
        let before: BTreeSet<&str> = strings(meta(old, "finalizers")).collect();
        let extra: BTreeSet<&str> = strings(meta(new, "finalizers"))
            .filter(|f| !before.contains(f))
            .collect();
        if !extra.is_empty() {
            let extra = Value::from(extra.into_iter().collect::<Vec<_>>());
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                &format!("no new finalizers can be added if the object is being deleted, found new finalizers {}", go_string_slice(Some(&extra))),
            ));
        }
    }
    let generation = |o: &Value| meta(o, "generation").and_then(Value::as_i64).unwrap_or(0);
    if generation(new) < generation(old) {
        causes.push(Cause::invalid(
            "metadata.generation",
            &json!(generation(new)),
            "must not be decremented",
        ));
    }
    for field in ["name", "namespace", "uid"] {
        if meta_str(new, field) != meta_str(old, field) {
            causes.push(Cause::invalid(
                child("metadata", field),
                &json!(meta_str(new, field)),
                "field is immutable",
            ));
        }
    }
    validate_common(new, causes);
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// `ValidateLabels`: qualified-name keys and label values, all reported at `path`.
pub(super) fn validate_labels(labels: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    for (k, v) in labels.and_then(Value::as_object).into_iter().flatten() {
        for msg in qualified_name(k) {
            causes.push(Cause::invalid(path, &json!(k), &msg));
        }
        match v.as_str() {
            Some(s) => {
                for msg in label_value(s) {
                    causes.push(Cause::invalid(path, v, &msg));
                }
            }
            None => causes.push(Cause::invalid(path, v, "must be a string")),
        }
    }
}

/// `ValidateAnnotations`: case-insensitive qualified-name keys, 256 KiB in total.
pub(super) fn validate_annotations(
    annotations: Option<&Value>,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for msg in qualified_name(&k.to_ascii_lowercase()) {
            causes.push(Cause::invalid(path, &json!(k), &msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_MAX_BYTES {
        causes.push(Cause::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
}

/// `ValidateOwnerReferences`: complete references, at most one controller.
fn validate_owner_references(refs: Option<&Value>, causes: &mut Vec<Cause>) {
    let path = "metadata.ownerReferences";
    let mut controller: Option<String> = None;
    for r in refs.and_then(Value::as_array).into_iter().flatten() {
        let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("");
        let version = field("apiVersion").rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            causes.push(Cause::invalid(
                child(path, "apiVersion"),
                &json!(field("apiVersion")),
                "version must not be empty",
            ));
        }
        for f in ["kind", "name", "uid"] {
            if field(f).is_empty() {
                causes.push(Cause::invalid(
                    child(path, f),
                    &json!(""),
                    "must not be empty",
                ));
            }
        }
        if field("apiVersion") == "v1" && field("kind") == "Event" {
            causes.push(Cause::invalid(
                path,
                r,
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let this = format!("{}/{}", field("kind"), field("name"));
            match &controller {
                Some(first) => causes.push(Cause::invalid(
                    path,
                    refs.unwrap_or(&Value::Null),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                )),
                None => controller = Some(this),
            }
        }
    }
}

/// `ValidateFinalizers`: qualified names, not both `orphan` and `foregroundDeletion`.
fn validate_finalizers(finalizers: Option<&Value>, causes: &mut Vec<Cause>) {
    let path = "metadata.finalizers";
    let all: Vec<&str> = strings(finalizers).collect();
    for f in &all {
        for msg in qualified_name(f) {
            causes.push(Cause::invalid(path, &json!(f), &msg));
        }
    }
    if all.contains(&"orphan") && all.contains(&"foregroundDeletion") {
        causes.push(Cause::invalid(
            path,
            finalizers.unwrap_or(&Value::Null),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn object_meta_should_require_a_name_or_generate_name() {
        let mut causes = Vec::new();
        validate_object_meta(
            &json!({"metadata": {"namespace": "default"}}),
            true,
            NameRule::Subdomain,
            &mut causes,
        );
        assert_eq!(
            texts(&causes),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn object_meta_should_check_name_and_generate_name_prefix() {
        let mut causes = Vec::new();
        let o = json!({"metadata": {"name": "Bad_Name", "generateName": "ok-", "namespace": "default"}});
        validate_object_meta(&o, true, NameRule::Subdomain, &mut causes);
        assert_eq!(causes.len(), 1);
        assert!(causes[0]
            .message
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        let mut causes = Vec::new();
        let o = json!({"metadata": {"name": "x", "generateName": "Bad-", "namespace": "default"}});
        validate_object_meta(&o, true, NameRule::Subdomain, &mut causes);
        assert_eq!(
            causes.first().map(|c| c.field.as_str()),
            Some("metadata.generateName")
        );
    }

    #[test]
    fn object_meta_should_enforce_scope() {
        let mut causes = Vec::new();
        validate_object_meta(
            &json!({"metadata": {"name": "n", "namespace": "x"}}),
            false,
            NameRule::Subdomain,
            &mut causes,
        );
        assert_eq!(
            texts(&causes),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let mut causes = Vec::new();
        validate_object_meta(
            &json!({"metadata": {"name": "n"}}),
            true,
            NameRule::Subdomain,
            &mut causes,
        );
        assert_eq!(texts(&causes), vec!["metadata.namespace: Required value"]);
    }

    #[test]
    fn labels_should_report_keys_and_values_at_the_labels_path() {
        let mut causes = Vec::new();
        let long = "v".repeat(64);
        validate_labels(
            Some(&json!({"bad key": "ok", "ok": long})),
            "metadata.labels",
            &mut causes,
        );
        assert_eq!(causes.len(), 2);
        assert!(causes[0].message.starts_with(
            "Invalid value: \"bad key\": name part must consist of alphanumeric characters"
        ));
        assert_eq!(
            causes[1].message,
            format!("Invalid value: \"{long}\": must be no more than 63 characters")
        );
        assert!(causes.iter().all(|c| c.field == "metadata.labels"));
    }

    #[test]
    fn annotations_should_be_limited_to_256_kib() {
        let mut causes = Vec::new();
        let big = "x".repeat(ANNOTATIONS_MAX_BYTES);
        validate_annotations(
            Some(&json!({"a": big, "Example.com/Key": "v"})),
            "metadata.annotations",
            &mut causes,
        );
        assert_eq!(
            texts(&causes),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn owner_references_should_allow_one_controller() {
        let mut causes = Vec::new();
        let o = json!({"metadata": {"name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
        ]}});
        validate_object_meta(&o, false, NameRule::Subdomain, &mut causes);
        assert_eq!(causes.len(), 1);
        assert!(causes[0]
            .message
            .ends_with("Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"));
    }

    #[test]
    fn update_should_forbid_new_finalizers_while_deleting() {
        let old = json!({"metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x.io/a"]}});
        let new = json!({"metadata": {"name": "a", "finalizers": ["x.io/a", "x.io/b"]}});
        let mut causes = Vec::new();
        validate_object_meta_update(&new, &old, &mut causes);
        assert_eq!(
            texts(&causes),
            vec!["metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"x.io/b\"}"]
        );
    }

    #[test]
    fn update_should_keep_the_name_immutable() {
        let mut causes = Vec::new();
        validate_object_meta_update(
            &json!({"metadata": {"name": "b"}}),
            &json!({"metadata": {"name": "a"}}),
            &mut causes,
        );
        assert_eq!(
            texts(&causes),
            vec!["metadata.name: Invalid value: \"b\": field is immutable"]
        );
    }
}
