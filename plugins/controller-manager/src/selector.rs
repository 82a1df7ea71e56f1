//! Label selectors: matching labels against `matchLabels`/`matchExpressions`, as
//! `metav1.LabelSelectorAsSelector` does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector that cannot be used. Retrying does not help: the object must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector: {0}")]
pub struct SelectorError(pub String);

/// True when `selector` selects an object with `labels`; an empty selector
/// selects everything.
pub fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// True when `selector` has no requirement (it selects everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Checks the operators and values of `selector`.
pub fn validate(selector: &LabelSelector) -> Result<(), SelectorError> {
    for e in selector.match_expressions.iter().flatten() {
        let n = e.values.as_ref().map_or(0, Vec::len);
        match e.operator.as_str() {
            "In" | "NotIn" if n == 0 => {
                return Err(SelectorError(format!(
                    "key {:?}: operator {} needs values",
                    e.key, e.operator
                )))
            }
            "Exists" | "DoesNotExist" if n > 0 => {
                return Err(SelectorError(format!(
                    "key {:?}: operator {} takes no values",
                    e.key, e.operator
                )))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(SelectorError(format!(
                    "key {:?}: unknown operator {other:?}",
                    e.key
                )))
            }
        }
    }
    Ok(())
}

/// A selector of exactly `labels` (a Service's `spec.selector`).
pub fn from_map(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        match_expressions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_should_match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(matches(&sel, Some(&labels(&[("app", "web")]))));
        assert!(matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "front")]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "db")]))
        ));
        assert!(!matches(&sel, None));
        assert!(matches(&LabelSelector::default(), None));
    }

    #[test]
    fn validate_should_refuse_unknown_operators() {
        let sel = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Like".into(),
                values: None,
            }]),
        };
        assert!(validate(&sel).is_err());
    }
}
