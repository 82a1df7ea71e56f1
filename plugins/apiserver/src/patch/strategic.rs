//! Strategic merge patch of maps and their directives (`$patch`, `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`).

use serde_json::{Map, Value};

use super::list;
use super::merge_keys::{Field, Strategy, TypeDef};
use super::Failure;

/// A JSON object.
pub type Object = Map<String, Value>;

/// The directive key of a map or list element: `replace`, `delete` or `merge`.
pub const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Whether `key` is a strategic-merge-patch directive, never stored in an object.
pub fn is_directive(key: &str) -> bool {
    key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// The 400 answer to a strategic merge patch that is not well formed.
pub(super) fn malformed(detail: impl std::fmt::Display) -> Failure {
    super::bad_request("strategic merge patch", detail)
}

/// Merges `patch` into `original`, two objects of type `ty` (`None`: no schema, every list atomic).
///
/// Follows `k8s.io/apimachinery/pkg/util/strategicpatch.mergeMap` with the options kube-apiserver uses
/// (`MergeParallelList` and `IgnoreUnmatchedNulls`): `null` deletes a key, directives are consumed and
/// never left in the result. Values the patch introduces are merged into an empty value, so their own
/// directives are processed and their `null`s dropped.
pub fn merge_map(
    ty: Option<&'static TypeDef>,
    mut original: Object,
    mut patch: Object,
) -> Result<Object, Failure> {
    if let Some(directive) = patch.remove(PATCH_DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(ty, Object::new(), patch),
            Some("delete") => return Ok(Object::new()),
            Some("merge") => {}
            _ => {
                return Err(malformed(format!(
                    "unknown patch type: {directive} in map: {}",
                    Value::Object(patch)
                )))
            }
        }
    }
    retain_keys(&mut original, &mut patch)?;
    set_element_orders(ty, &mut original, &mut patch)?;
    for (key, value) in patch {
        if let Some(name) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut original, name, value)?;
            continue;
        }
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let field = ty.and_then(|t| t.field(&key));
        let merged = merge_value(field, original.remove(&key), value)?;
        original.insert(key, merged);
    }
    Ok(original)
}

/// Merges the patch value of one field into its original value (`None` when absent).
fn merge_value(
    field: Option<&'static Field>,
    original: Option<Value>,
    patch: Value,
) -> Result<Value, Failure> {
    let ty = field.and_then(|f| f.ty);
    Ok(match (original, patch) {
        (Some(Value::Object(o)), Value::Object(p)) => match field.map(|f| f.strategy) {
            Some(Strategy::Replace) => Value::Object(merge_map(ty, Object::new(), p)?),
            _ => Value::Object(merge_map(ty, o, p)?),
        },
        (Some(Value::Array(o)), Value::Array(p)) => Value::Array(list::merge_list(field, o, p)?),
        (_, Value::Object(p)) => Value::Object(merge_map(ty, Object::new(), p)?),
        (_, Value::Array(p)) => Value::Array(list::merge_list(field, Vec::new(), p)?),
        (_, scalar) => scalar,
    })
}

/// `$retainKeys: [k…]`: drops the original's other keys; the patch may only set listed keys.
fn retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), Failure> {
    let Some(keys) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(keys) = keys else {
        return Err(malformed("invalid patch format of retainKeys"));
    };
    let listed = |k: &str| keys.iter().any(|v| v.as_str() == Some(k));
    let unlisted = patch.iter().find(|(k, v)| {
        !v.is_null()
            && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !k.starts_with(SET_ELEMENT_ORDER)
            && !listed(k)
    });
    if let Some((k, _)) = unlisted {
        return Err(super::unprocessable(format!(
            "patch content doesn't match retainKeys list: {k:?} is not retained"
        )));
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$deleteFromPrimitiveList/<name>: [v…]`: removes those values from the primitive list `name`.
fn delete_from_primitive_list(
    original: &mut Object,
    name: &str,
    values: Value,
) -> Result<(), Failure> {
    let Value::Array(gone) = values else {
        return Err(malformed("invalid patch format of primitive list"));
    };
    if let Some(Value::Array(items)) = original.get_mut(name) {
        items.retain(|v| !gone.contains(v));
    }
    Ok(())
}

/// `$setElementOrder/<name>: [...]`: merges list `name` now and orders it as listed.
fn set_element_orders(
    ty: Option<&'static TypeDef>,
    original: &mut Object,
    patch: &mut Object,
) -> Result<(), Failure> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(Value::Array(order)) = patch.remove(&directive) else {
            return Err(malformed("invalid patch format of setElementOrder list"));
        };
        let name = &directive[SET_ELEMENT_ORDER.len()..];
        let field = ty.and_then(|t| t.field(name));
        let live = take_list(original, name)?;
        let patched = take_list(patch, name)?;
        if let Some(p) = &patched {
            list::validate_order(field, p, &order)?;
        }
        let server_order = live.clone().unwrap_or_default();
        let merged = match (live, patched) {
            (Some(o), None) => o,
            (o, Some(p)) => list::merge_list(field, o.unwrap_or_default(), p)?,
            (None, None) => continue,
        };
        original.insert(
            name.to_string(),
            Value::Array(list::reorder(field, merged, &order, &server_order)),
        );
    }
    Ok(())
}

/// Removes list `name` from `map`; `Ok(None)` when absent or null, an error when it is not a list.
fn take_list(map: &mut Object, name: &str) -> Result<Option<Vec<Value>>, Failure> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(malformed(format!(
            "$setElementOrder/{name}: expected a list, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::merge_keys::root;
    use crate::status::ApiError;
    use serde_json::json;

    fn smp(kind: &str, original: Value, patch: Value) -> Result<Value, Box<ApiError>> {
        let (Value::Object(o), Value::Object(p)) = (original, patch) else {
            panic!("objects only")
        };
        merge_map(root(kind), o, p)
            .map(Value::Object)
            .map_err(|e| Box::new(ApiError::from(e)))
    }

    #[test]
    fn merge_map_should_follow_map_directives() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "paused": true}});
        let cases = [
            (
                json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
                json!({"type": "Recreate"}),
            ),
            (
                json!({"spec": {"strategy": {"$patch": "delete"}}}),
                json!({}),
            ),
            (
                json!({"spec": {"strategy": {"$patch": "merge", "type": "Recreate"}}}),
                json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
            ),
            (
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                json!({"type": "Recreate"}),
            ),
            (json!({"spec": {"strategy": null}}), Value::Null),
        ];
        for (patch, strategy) in cases {
            let out = smp("Deployment", original.clone(), patch.clone())
                .unwrap_or_else(|e| panic!("{patch}: {e}"));
            assert_eq!(out["spec"]["strategy"], strategy, "{patch}");
            assert_eq!(out["spec"]["paused"], true, "{patch}");
        }
    }

    #[test]
    fn merge_map_should_reject_bad_directives() {
        let original = json!({"spec": {"strategy": {"type": "Recreate"}}});
        let cases = [
            (json!({"spec": {"strategy": {"$patch": "frobnicate"}}}), 400),
            (json!({"spec": {"strategy": {"$retainKeys": "type"}}}), 400),
            (
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
                422,
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
                400,
            ),
            (
                json!({"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "a"}}}}}),
                400,
            ),
        ];
        for (patch, code) in cases {
            let err = smp("Deployment", original.clone(), patch.clone()).err();
            assert_eq!(err.map(|e| e.code), Some(code), "{patch}");
        }
    }

    #[test]
    fn merge_map_should_strip_directives_from_new_values() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "x", "env": [{"name": "E", "$patch": "delete"}], "args": null}],
        }}}});
        let out = smp("Deployment", json!({}), patch).ok();
        let expected = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x", "env": []}]}}}});
        assert_eq!(out, Some(expected));
    }

    #[test]
    fn merge_map_should_delete_from_primitive_lists_before_adding() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["a2"]}});
        let out = smp("Pod", original, patch).ok();
        assert_eq!(out, Some(json!({"metadata": {"finalizers": ["a2", "b"]}})));
    }
}
