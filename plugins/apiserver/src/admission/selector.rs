//! Label selectors (`metav1.LabelSelector`): validation, matching and their text form.

use serde_json::Value;

use super::meta::validate_labels;
use super::names::{label_value, qualified_name};
use super::{child, index};
use crate::status::Cause;

/// `ValidateLabelSelector` (strict label values); returns true when the selector converts (`LabelSelectorAsSelector` succeeds).
pub(super) fn validate_label_selector(
    selector: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
) -> bool {
    let before = causes.len();
    validate_labels(
        selector.get("matchLabels"),
        &child(path, "matchLabels"),
        causes,
    );
    let exprs_path = child(path, "matchExpressions");
    for (i, req) in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = index(&exprs_path, i);
        let operator = req.get("operator").and_then(Value::as_str).unwrap_or("");
        let values = req
            .get("values")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    causes.push(Cause::required_because(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    causes.push(Cause::forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => causes.push(Cause::invalid(
                child(&p, "operator"),
                &Value::String(other.into()),
                "not a valid selector operator",
            )),
        }
        let key = req.get("key").and_then(Value::as_str).unwrap_or("");
        for msg in qualified_name(key) {
            causes.push(Cause::invalid(
                child(&p, "key"),
                &Value::String(key.into()),
                &msg,
            ));
        }
        for (j, v) in values.iter().enumerate() {
            let s = v.as_str().unwrap_or("");
            for msg in label_value(s) {
                causes.push(Cause::invalid(index(&child(&p, "values"), j), v, &msg));
            }
        }
    }
    causes.len() == before
}

/// True when the selector has neither `matchLabels` nor `matchExpressions` (it selects everything).
pub fn is_empty(selector: &Value) -> bool {
    let labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty());
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    labels && exprs
}

/// Whether a (valid) selector selects objects with `labels`; a missing selector selects nothing.
pub fn matches(selector: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(selector) = selector.filter(|s| s.is_object()) else {
        return false;
    };
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let by_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k).is_some() && label(k) == v.as_str());
    let by_exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|req| {
            let key = req.get("key").and_then(Value::as_str).unwrap_or("");
            let values = values(req);
            match (
                req.get("operator").and_then(Value::as_str).unwrap_or(""),
                label(key),
            ) {
                ("In", Some(v)) => values.contains(&v),
                ("NotIn", Some(v)) => !values.contains(&v),
                ("NotIn", None) | ("Exists", Some(_)) | ("DoesNotExist", None) => true,
                _ => false,
            }
        });
    by_labels && by_exprs
}

/// The selector as text, as `LabelSelectorAsSelector(s).String()` prints it
/// (a Scale's `status.selector`): requirements sorted by key, `in`/`notin`
/// values sorted.
pub fn to_text(selector: &Value) -> String {
    let mut requirements: Vec<(&str, String)> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), format!("{k}={}", v.as_str().unwrap_or(""))))
        .collect();
    for req in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = req.get("key").and_then(Value::as_str).unwrap_or("");
        let mut values = values(req);
        values.sort_unstable();
        values.dedup();
        let values = values.join(",");
        let text = match req.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        };
        requirements.push((key, text));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    let texts: Vec<String> = requirements.into_iter().map(|(_, t)| t).collect();
    texts.join(",")
}

/// The string `values` of a `matchExpressions` requirement.
fn values(req: &Value) -> Vec<&str> {
    req.get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_should_apply_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(matches(
            Some(&json!({"matchLabels": {"app": "web"}})),
            Some(&labels)
        ));
        assert!(!matches(
            Some(&json!({"matchLabels": {"app": "db"}})),
            Some(&labels)
        ));
        let sel = json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert!(matches(Some(&sel), Some(&labels)));
        assert!(!matches(
            Some(
                &json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]})
            ),
            Some(&labels)
        ));
        assert!(!matches(None, Some(&labels)));
        assert!(matches(Some(&json!({})), None));
    }

    #[test]
    fn validate_label_selector_should_check_operators_and_values() {
        let mut causes = Vec::new();
        let sel = json!({"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Like", "values": ["x"]}
        ]});
        assert!(!validate_label_selector(&sel, "spec.selector", &mut causes));
        let text: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            text,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Like\": not a valid selector operator",
            ]
        );
    }

    #[test]
    fn to_text_should_print_like_labels_selector_string() {
        let sel = json!({"matchLabels": {"tier": "front", "app": "web"}, "matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
            {"key": "rack", "operator": "In", "values": ["b", "a"]}]});
        assert_eq!(
            to_text(&sel),
            "app=web,!canary,env notin (dev,prod),rack in (a,b),tier=front,zone"
        );
        assert_eq!(to_text(&json!({})), "");
    }

    #[test]
    fn is_empty_should_detect_select_everything() {
        assert!(is_empty(&json!({})));
        assert!(is_empty(&json!({"matchLabels": {}})));
        assert!(!is_empty(&json!({"matchLabels": {"a": "b"}})));
    }
}
