//! Reading fields of untyped objects the way the printers need them, and upstream's label formatting.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::pointer::Pointer;

/// The string at a JSON pointer, or `""`.
pub(crate) fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.at(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, if there is one.
pub(crate) fn opt_int(v: &Value, pointer: &str) -> Option<i64> {
    v.at(pointer).and_then(Value::as_i64)
}

/// The integer at a JSON pointer, or 0.
pub(crate) fn int(v: &Value, pointer: &str) -> i64 {
    opt_int(v, pointer).unwrap_or(0)
}

/// The boolean at a JSON pointer, or `false`.
pub(crate) fn flag(v: &Value, pointer: &str) -> bool {
    v.at(pointer).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at a JSON pointer, or an empty slice.
pub(crate) fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.at(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether a JSON pointer names a non-null value (Go's `!= nil`).
pub(crate) fn present(v: &Value, pointer: &str) -> bool {
    v.at(pointer).is_some_and(|x| !x.is_null())
}

/// The number of entries of the map or array at a JSON pointer.
pub(crate) fn count(v: &Value, pointer: &str) -> i64 {
    let n = match v.at(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `metadata.name`.
pub(crate) fn name(v: &Value) -> Value {
    Value::from(text(v, "/metadata/name"))
}

/// Whether a `conditions` list has `type` with status `True`.
pub(crate) fn condition_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| text(c, "/type") == type_ && text(c, "/status") == "True")
}

/// An `IntOrString` as Go's `String()` prints it.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Upstream's `labels.FormatLabels`: sorted `k=v` joined by `,`, or `<none>`.
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// Upstream's `LabelSelectorAsSelector(...).String()`: `""` for a missing or empty selector.
pub(crate) fn selector_string(selector: Option<&Value>) -> Result<String, String> {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            requirements.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for expr in list(sel, "/matchExpressions") {
        let key = text(expr, "/key");
        let values: BTreeSet<&str> = list(expr, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let values = values.into_iter().collect::<Vec<_>>().join(",");
        let req = match text(expr, "/operator") {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => return Err(format!("{op:?} is not a valid label selector operator")),
        };
        requirements.push((key.to_string(), req));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// Upstream's `metav1.FormatLabelSelector`: the selector, `<none>` when empty, `<error>` when invalid.
pub(crate) fn format_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(_) => "<error>".to_string(),
    }
}

/// Upstream's `layoutContainerCells`: container names and images of a pod spec, each joined by `,`.
pub(crate) fn containers(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map(|s| list(s, "/containers")).unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// Upstream's `listWithMoreString`: the first three, `+ N more...`, or `<unset>` for none.
pub(crate) fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        return format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX);
    }
    if items.is_empty() {
        "<unset>".to_string()
    } else {
        items.join(",")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn format_labels_should_sort_and_default_to_none() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn format_selector_should_print_requirements_sorted_by_key() {
        let sel = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"}
            ]
        });
        assert_eq!(
            format_selector(Some(&sel)),
            "app=web,!canary,env notin (prod),tier in (a,b),zone"
        );
        assert_eq!(format_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_selector(None), "<none>");
        assert_eq!(
            format_selector(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})
            )),
            "<error>"
        );
    }

    #[test]
    fn list_with_more_should_cut_after_three() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_with_more(&items), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&items[..2]), "a,b");
        assert_eq!(list_with_more(&[]), "<unset>");
    }
}
