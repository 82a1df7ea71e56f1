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

/// True when `a` and `b` are semantically equal (missing values are all alike).
pub(super) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    a.and_then(normalize) == b.and_then(normalize)
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
