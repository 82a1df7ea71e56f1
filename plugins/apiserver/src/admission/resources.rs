//! Container resource requirements (`ValidateResourceRequirements`): resource names, quantities, requests within limits.

use serde_json::{json, Value};

use super::names::qualified_name;
use super::quantity::Quantity;
use super::{child, key};
use crate::status::Cause;

/// Native resources other than huge pages may be overcommitted (requests below limits).
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

/// A quantity field: parsed, and not negative.
fn quantity(v: &Value, path: &str, causes: &mut Vec<Cause>) -> Option<Quantity> {
    match Quantity::parse(v.as_str().unwrap_or("")) {
        Err(msg) => {
            causes.push(Cause::invalid(path, v, msg));
            None
        }
        Ok(q) if q.is_negative() => {
            causes.push(Cause::invalid(
                path,
                v,
                "must be greater than or equal to 0",
            ));
            None
        }
        Ok(q) => Some(q),
    }
}

/// `ValidateResourceRequirements` of a container: names, quantities, requests within limits.
pub(super) fn validate_resources(resources: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let (lim_path, req_path) = (child(path, "limits"), child(path, "requests"));
    let limits = resources
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object);
    let requests = resources
        .and_then(|r| r.get("requests"))
        .and_then(Value::as_object);
    for (name, q) in limits.into_iter().flatten() {
        resource_name(name, &key(&lim_path, name), causes);
        quantity(q, &key(&lim_path, name), causes);
    }
    for (name, q) in requests.into_iter().flatten() {
        let p = key(&req_path, name);
        resource_name(name, &p, causes);
        let request = quantity(q, &p, causes);
        let limit_value = limits.and_then(|l| l.get(name));
        let limit = limit_value
            .and_then(Value::as_str)
            .and_then(|s| Quantity::parse(s).ok());
        match (request, limit) {
            (Some(req), Some(lim)) => {
                let shown = limit_value.and_then(Value::as_str).unwrap_or("");
                if !overcommit_allowed(name) && !req.cmp_value(&lim).is_eq() {
                    causes.push(Cause::invalid(
                        req_path.as_str(),
                        q,
                        &format!("must be equal to {name} limit of {shown}"),
                    ));
                } else if req.cmp_value(&lim).is_gt() {
                    causes.push(Cause::invalid(
                        req_path.as_str(),
                        q,
                        &format!("must be less than or equal to {name} limit of {shown}"),
                    ));
                }
            }
            _ if limit_value.is_none() && !overcommit_allowed(name) => {
                causes.push(Cause::required_because(
                    lim_path.as_str(),
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
    }
}

/// `validateContainerResourceName`.
fn resource_name(name: &str, path: &str, causes: &mut Vec<Cause>) {
    for msg in qualified_name(name) {
        causes.push(Cause::invalid(path, &json!(name), &msg));
    }
    let standard =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !name.contains('/') && !standard {
        causes.push(Cause::invalid(
            path,
            &json!(name),
            "must be a standard resource for containers",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(resources: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate_resources(
            Some(&resources),
            "spec.containers[0].resources",
            &mut causes,
        );
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn requests_should_stay_within_limits_and_parse() {
        let got = texts(
            json!({"requests": {"cpu": "2", "memory": "lots", "gpu": "1"}, "limits": {"cpu": "1"}}),
        );
        assert_eq!(
            got,
            vec![
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
                "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ]
        );
    }

    #[test]
    fn quantities_should_not_be_negative() {
        assert_eq!(
            texts(json!({"limits": {"memory": "-1Gi"}})),
            vec!["spec.containers[0].resources.limits[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0"]
        );
    }

    #[test]
    fn non_overcommitable_resources_should_need_equal_limits() {
        assert_eq!(
            texts(json!({"requests": {"example.com/gpu": "1"}})),
            vec!["spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"]
        );
        assert_eq!(
            texts(json!({"requests": {"hugepages-2Mi": "2Mi"}, "limits": {"hugepages-2Mi": "4Mi"}})),
            vec!["spec.containers[0].resources.requests: Invalid value: \"2Mi\": must be equal to hugepages-2Mi limit of 4Mi"]
        );
        assert!(texts(json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})).is_empty());
    }
}
