//! The LimitRanger admission step for pod creates, as upstream's: every
//! `LimitRange` of the pod's namespace first fills in the containers' missing
//! requests and limits from its `Container` item's `defaultRequest` and `default`
//! (noting it in the `kubernetes.io/limit-ranger` annotation), then checks `min`,
//! `max` and `maxLimitRequestRatio` per container and, for `Pod` items, over the
//! sum of the containers. A violation forbids the pod with upstream's message.

use std::collections::BTreeMap;

use kubernel_api::quota::{format_quantity, parse_quantity};
use serde_json::{json, Value};

use crate::store::{ListOptions, Store};

/// Applies and enforces the namespace's LimitRanges; the error is why the pod is
/// forbidden.
pub fn admit(store: &dyn Store, pod: &mut Value) -> Result<(), String> {
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let ranges = store
        .list(&ListOptions {
            prefix: format!("limitranges/{namespace}/"),
            ..ListOptions::default()
        })
        .map_err(|e| format!("reading the LimitRanges of {namespace}: {e}"))?
        .items;
    if ranges.is_empty() {
        return Ok(());
    }
    let items: Vec<Value> = ranges
        .iter()
        .flat_map(|r| {
            r.object["spec"]["limits"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let mut notes = Vec::new();
    for item in items.iter().filter(|i| i["type"] == "Container") {
        defaults(pod, item, &mut notes);
    }
    if !notes.is_empty() {
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
            json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
    for item in &items {
        match item["type"].as_str() {
            Some("Container") => {
                for c in containers(pod) {
                    check(item, &c.requests, &c.limits, "Container")?;
                }
            }
            Some("Pod") => {
                let (mut requests, mut limits) = (BTreeMap::new(), BTreeMap::new());
                for c in containers(pod) {
                    for (k, v) in c.requests {
                        *requests.entry(k).or_insert(0) += v;
                    }
                    for (k, v) in c.limits {
                        *limits.entry(k).or_insert(0) += v;
                    }
                }
                check(item, &requests, &limits, "Pod")?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// One container's requests and limits, in milli-units.
struct Amounts {
    requests: BTreeMap<String, i128>,
    limits: BTreeMap<String, i128>,
}

fn containers(pod: &Value) -> Vec<Amounts> {
    let parse = |v: &Value| -> BTreeMap<String, i128> {
        v.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, q)| Some((k.clone(), parse_quantity(q.as_str()?)?)))
            .collect()
    };
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Amounts {
            requests: parse(&c["resources"]["requests"]),
            limits: parse(&c["resources"]["limits"]),
        })
        .collect()
}

/// Fills missing requests and limits of every container (and init container) from
/// a `Container` item, as upstream: a missing limit from `default`; a missing
/// request from `defaultRequest`, else from the (possibly defaulted) limit.
fn defaults(pod: &mut Value, item: &Value, notes: &mut Vec<String>) {
    let default_limits = item["default"].as_object().cloned().unwrap_or_default();
    let default_requests = item["defaultRequest"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for field in ["initContainers", "containers"] {
        let Some(list) = pod["spec"][field].as_array_mut() else {
            continue;
        };
        for c in list.iter_mut() {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let mut set = Vec::new();
            for (resource, value) in &default_limits {
                if c["resources"]["limits"].get(resource).is_none() {
                    c["resources"]["limits"][resource] = value.clone();
                    set.push(format!("{resource} limit"));
                }
            }
            let limits = c["resources"]["limits"].clone();
            for (resource, value) in default_requests
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(
                    limits
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| !default_requests.contains_key(*k))
                        .map(|(k, v)| (k.clone(), v.clone())),
                )
            {
                if c["resources"]["requests"].get(&resource).is_none() {
                    c["resources"]["requests"][&resource] = value;
                    set.push(format!("{resource} request"));
                }
            }
            // Upstream names requests before limits.
            set.sort_by_key(|s| s.ends_with("limit"));
            if !set.is_empty() {
                notes.push(format!(
                    "{} for {field_kind} {name}",
                    set.join(", "),
                    field_kind = if field == "containers" {
                        "container"
                    } else {
                        "init container"
                    }
                ));
            }
        }
    }
}

/// Checks `min`, `max` and `maxLimitRequestRatio` of an item against requests and
/// limits (`what`: `Container` or `Pod`).
fn check(
    item: &Value,
    requests: &BTreeMap<String, i128>,
    limits: &BTreeMap<String, i128>,
    what: &str,
) -> Result<(), String> {
    let bound = |field: &str| -> BTreeMap<String, (i128, String)> {
        item[field]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let text = v.as_str()?;
                Some((k.clone(), (parse_quantity(text)?, text.to_string())))
            })
            .collect()
    };
    let shown = |resource: &str, milli: i128| format_quantity(resource, milli);
    for (resource, (min, text)) in bound("min") {
        match requests.get(&resource) {
            None => {
                return Err(format!(
                    "minimum {resource} usage per {what} is {text}.  No request is specified"
                ))
            }
            Some(&r) if r < min => {
                return Err(format!(
                    "minimum {resource} usage per {what} is {text}, but request is {}",
                    shown(&resource, r)
                ))
            }
            _ => {}
        }
    }
    for (resource, (max, text)) in bound("max") {
        match limits.get(&resource) {
            None => {
                return Err(format!(
                    "maximum {resource} usage per {what} is {text}.  No limit is specified"
                ))
            }
            Some(&l) if l > max => {
                return Err(format!(
                    "maximum {resource} usage per {what} is {text}, but limit is {}",
                    shown(&resource, l)
                ))
            }
            _ => {}
        }
    }
    for (resource, (ratio, text)) in bound("maxLimitRequestRatio") {
        let (Some(&l), Some(&r)) = (limits.get(&resource), requests.get(&resource)) else {
            continue;
        };
        if r > 0 && l * 1000 > ratio * r {
            let actual = l as f64 / r as f64;
            return Err(format!(
                "{resource} max limit to request ratio per {what} is {text}, but provided ratio is {actual:.6}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"namespace": "d"}, "spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    #[test]
    fn defaults_should_fill_requests_from_default_request_then_limits() {
        let item = json!({"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}});
        let mut p = pod(json!({}));
        let mut notes = Vec::new();
        defaults(&mut p, &item, &mut notes);
        let r = &p["spec"]["containers"][0]["resources"];
        assert_eq!(r["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        assert_eq!(r["requests"], json!({"cpu": "100m", "memory": "256Mi"}));
        assert_eq!(
            notes,
            ["cpu request, memory request, cpu limit, memory limit for container c"]
        );
    }

    #[test]
    fn check_should_use_upstream_messages() {
        let item = json!({"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "2"}});
        let c = |req: i128, lim: i128| {
            check(
                &item,
                &BTreeMap::from([("cpu".to_string(), req)]),
                &BTreeMap::from([("cpu".to_string(), lim)]),
                "Container",
            )
        };
        assert_eq!(
            c(50, 100).expect_err("min"),
            "minimum cpu usage per Container is 100m, but request is 50m"
        );
        assert_eq!(
            c(800, 2000).expect_err("max"),
            "maximum cpu usage per Container is 1, but limit is 2"
        );
        assert_eq!(
            c(200, 1000).expect_err("ratio"),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"
        );
        assert!(c(500, 1000).is_ok());
    }
}
