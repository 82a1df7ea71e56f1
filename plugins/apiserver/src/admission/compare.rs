//! Semantic equality of JSON objects (null, `[]` and `{}` equal absent, as Go's semantic DeepEqual treats nil and empty) and a readable diff.

use serde_json::Value;

use super::{child, index};

/// Drops nulls, empty lists and empty objects, recursively.
fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| normalize(i).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(map) => {
            let map: serde_json::Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other.clone()),
    }
}

/// Whether `normalize` drops `v`: null, `[]`, or an object of such values only.
fn absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(absent),
        _ => false,
    }
}

/// True when `a` and `b` are semantically equal (missing values are all alike):
/// `normalize(a) == normalize(b)`, walked in place without copying either.
pub(super) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a.filter(|v| !absent(v)), b.filter(|v| !absent(v))) {
        (None, None) => true,
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.iter().all(|(k, v)| semantic_eq(Some(v), y.get(k)))
                && y.iter().all(|(k, v)| x.contains_key(k) || absent(v))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(i, j)| semantic_eq(Some(i), Some(j)))
        }
        (Some(Value::Object(_) | Value::Array(_)), _)
        | (_, Some(Value::Object(_) | Value::Array(_))) => false,
        (x, y) => x == y,
    }
}

/// `- path: old` / `+ path: new` lines for the leaves that differ, at most `limit` of them.
pub(super) fn diff(
    old: Option<&Value>,
    new: Option<&Value>,
    path: &str,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    walk(
        old.and_then(normalize).as_ref(),
        new.and_then(normalize).as_ref(),
        path,
        &mut out,
    );
    if out.len() > limit {
        out.truncate(limit);
        out.push("  ...".to_string());
    }
    out
}

fn walk(old: Option<&Value>, new: Option<&Value>, path: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(a.get(k), b.get(k), &child(path, k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(a.get(i), b.get(i), &index(path, i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            let show =
                |v: Option<&Value>| v.map_or_else(|| "(unset)".to_string(), Value::to_string);
            out.push(format!("- {path}: {}", show(a)));
            out.push(format!("+ {path}: {}", show(b)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn semantic_eq_should_treat_empty_and_missing_alike() {
        assert!(semantic_eq(
            Some(&json!({"a": [], "b": null, "c": {}})),
            Some(&json!({}))
        ));
        assert!(semantic_eq(None, Some(&json!({"x": []}))));
        assert!(!semantic_eq(Some(&json!({"a": 1})), Some(&json!({"a": 2}))));
    }

    #[test]
    fn semantic_eq_should_agree_with_comparing_normalized_copies() {
        let values = [
            json!(null),
            json!([]),
            json!({}),
            json!({"a": null}),
            json!({"a": {"b": []}}),
            json!({"a": {"b": [null]}}),
            json!({"a": {"b": [{}]}}),
            json!({"a": {"b": [1]}}),
            json!({"a": 1}),
            json!({"a": 1, "b": {}}),
            json!({"a": 1.0}),
            json!({"a": "1"}),
            json!([1, 2]),
            json!([2, 1]),
            json!([1, null]),
            json!([1, {}]),
            json!([1]),
            json!("x"),
            json!(true),
        ];
        for a in &values {
            for b in &values {
                for (x, y) in [(Some(a), Some(b)), (None, Some(b)), (Some(a), None)] {
                    assert_eq!(
                        semantic_eq(x, y),
                        x.and_then(normalize) == y.and_then(normalize),
                        "{x:?} vs {y:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn diff_should_list_changed_leaves() {
        let old = json!({"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]});
        let new = json!({"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}], "hostNetwork": true});
        assert_eq!(
            diff(Some(&old), Some(&new), "spec", 10),
            vec![
                "- spec.containers[0].ports[0].containerPort: 80",
                "+ spec.containers[0].ports[0].containerPort: 8080",
                "- spec.hostNetwork: (unset)",
                "+ spec.hostNetwork: true",
            ]
        );
    }
}
