//! Validation of the smaller kinds: Node taints, ConfigMap and Secret data, PodDisruptionBudgets, RBAC bindings.

use kubernel_api::pointer::Pointer;
use serde_json::{json, Value};

use super::names::{config_map_key, qualified_name};
use super::pod::{list, str_of, TAINT_EFFECTS};
use super::selector::validate_label_selector;
use super::{child, index, key};
use crate::status::Cause;

/// The RBAC API group.
pub(super) const RBAC: &str = "rbac.authorization.k8s.io";
/// upstream `MaxSecretSize`: 1 MiB.
const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Node taints: qualified keys, supported effects, no duplicates.
pub(super) fn validate_taints(object: &Value, causes: &mut Vec<Cause>) {
    let mut seen = Vec::new();
    for (i, taint) in list(object.at("/spec/taints")).iter().enumerate() {
        let p = index("spec.taints", i);
        let (k, effect) = (str_of(taint, "key"), str_of(taint, "effect"));
        causes.extend(
            qualified_name(k)
                .iter()
                .map(|m| Cause::invalid(child(&p, "key"), &json!(k), m)),
        );
        match effect {
            "" => causes.push(Cause::required(child(&p, "effect"))),
            e if TAINT_EFFECTS.contains(&e) => {}
            e => causes.push(Cause::not_supported(
                child(&p, "effect"),
                &json!(e),
                TAINT_EFFECTS,
            )),
        }
        if seen.contains(&(k, effect)) {
            causes.push(Cause::duplicate(&p, &json!(format!("{k}:{effect}"))));
        }
        seen.push((k, effect));
    }
}

/// ConfigMap and Secret data: valid keys, no key in both maps, Secret size and per-type keys.
pub(super) fn validate_data(object: &Value, secret: bool, causes: &mut Vec<Cause>) {
    let data = object.get("data").and_then(Value::as_object);
    let binary = object.get("binaryData").and_then(Value::as_object);
    let mut size = 0usize;
    for (k, v) in data.into_iter().flatten() {
        causes.extend(
            config_map_key(k)
                .iter()
                .map(|m| Cause::invalid("data", &json!(k), m)),
        );
        size += v.as_str().map_or(0, str::len);
    }
    for (k, _) in binary.into_iter().flatten() {
        causes.extend(
            config_map_key(k)
                .iter()
                .map(|m| Cause::invalid("binaryData", &json!(k), m)),
        );
        if data.is_some_and(|d| d.contains_key(k)) {
            causes.push(Cause::invalid(
                "data",
                &json!(k),
                "duplicate of key present in binaryData",
            ));
        }
    }
    if !secret {
        return;
    }
    if size * 3 / 4 > MAX_SECRET_BYTES {
        causes.push(Cause::too_long("data", MAX_SECRET_BYTES));
    }
    let required: &[&str] = match str_of(object, "type") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for k in required {
        if !data.is_some_and(|d| d.contains_key(*k)) {
            causes.push(Cause::required(key("data", k)));
        }
    }
    if str_of(object, "type") == "kubernetes.io/service-account-token"
        && object
            .at("/metadata/annotations/kubernetes.io~1service-account.name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        causes.push(Cause::required(
            "metadata.annotations[kubernetes.io/service-account.name]",
        ));
    }
}

/// Immutable ConfigMaps and Secrets, and the Secret type.
pub(super) fn validate_data_update(kind: &str, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if kind == "Secret" && str_of(new, "type") != str_of(old, "type") {
        causes.push(Cause::invalid(
            "type",
            &json!(str_of(new, "type")),
            "field is immutable",
        ));
    }
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        causes.push(Cause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in ["data", "binaryData"] {
        if new.get(field) != old.get(field) {
            causes.push(Cause::forbidden(
                field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// A PodDisruptionBudget: a valid selector, and not both minAvailable and maxUnavailable.
pub(super) fn validate_pdb(object: &Value, causes: &mut Vec<Cause>) {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    if spec.get("minAvailable").is_some_and(|v| !v.is_null())
        && spec.get("maxUnavailable").is_some_and(|v| !v.is_null())
    {
        causes.push(Cause::invalid(
            "spec",
            spec,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(sel) = spec.get("selector").filter(|s| s.is_object()) {
        validate_label_selector(sel, "spec.selector", causes);
    }
}

/// RoleBinding / ClusterRoleBinding: a complete roleRef of a supported kind, and well-formed subjects.
pub(super) fn validate_binding(kind: &str, object: &Value, causes: &mut Vec<Cause>) {
    let role_ref = object.get("roleRef").unwrap_or(&Value::Null);
    if str_of(role_ref, "apiGroup") != RBAC {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            &json!(str_of(role_ref, "apiGroup")),
            &[RBAC],
        ));
    }
    let kinds: &[&str] = if kind == "RoleBinding" {
        &["ClusterRole", "Role"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&str_of(role_ref, "kind")) {
        causes.push(Cause::not_supported(
            "roleRef.kind",
            &json!(str_of(role_ref, "kind")),
            kinds,
        ));
    }
    if str_of(role_ref, "name").is_empty() {
        causes.push(Cause::required("roleRef.name"));
    }
    for (i, s) in list(object.get("subjects")).iter().enumerate() {
        let p = index("subjects", i);
        if str_of(s, "name").is_empty() {
            causes.push(Cause::required(child(&p, "name")));
        }
        match str_of(s, "kind") {
            "ServiceAccount"
                if kind == "ClusterRoleBinding" && str_of(s, "namespace").is_empty() =>
            {
                causes.push(Cause::required(child(&p, "namespace")));
            }
            "User" | "Group" if str_of(s, "apiGroup") != RBAC => {
                causes.push(Cause::not_supported(
                    child(&p, "apiGroup"),
                    &json!(str_of(s, "apiGroup")),
                    &[RBAC],
                ));
            }
            "ServiceAccount" | "User" | "Group" => {}
            other => causes.push(Cause::not_supported(
                child(&p, "kind"),
                &json!(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{created, err, test_resource, validate_update};

    #[test]
    fn config_and_secret_data_should_have_valid_keys() {
        let (_, _, causes) = err(created(
            "",
            "ConfigMap",
            true,
            json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"a b": "x"}}),
        ));
        assert_eq!(causes, vec![("data".to_string(), "FieldValueInvalid")]);
        let tls = json!({"metadata": {"name": "t", "namespace": "default"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        let (_, _, causes) = err(created("", "Secret", true, tls));
        assert_eq!(
            causes,
            vec![("data[tls.key]".to_string(), "FieldValueRequired")]
        );
    }

    #[test]
    fn immutable_config_maps_should_keep_their_data() {
        let r = test_resource("", "ConfigMap", true);
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let new = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
        let (_, message, _) = err(validate_update(&r, &old, &new));
        assert_eq!(message, "ConfigMap \"c\" is invalid: data: Forbidden: field is immutable when `immutable` is set");
    }

    #[test]
    fn role_bindings_should_keep_their_role_ref() {
        let r = test_resource(RBAC, "RoleBinding", true);
        let old = json!({"metadata": {"name": "b", "namespace": "default"}, "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "a"}});
        let mut new = old.clone();
        new["roleRef"]["name"] = json!("b");
        let (_, _, causes) = err(validate_update(&r, &old, &new));
        assert_eq!(causes, vec![("roleRef".to_string(), "FieldValueInvalid")]);
    }

    #[test]
    fn node_taints_should_have_supported_effects() {
        let node = json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
        let (_, _, causes) = err(created("", "Node", false, node));
        assert_eq!(
            causes,
            vec![(
                "spec.taints[0].effect".to_string(),
                "FieldValueNotSupported"
            )]
        );
    }
}
