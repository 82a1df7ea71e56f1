//! ResourceQuota accounting, shared by the apiserver's ResourceQuota admission and the
//! controller-manager's ResourceQuota controller so both charge an object the same:
//! what an object uses (upstream's quota evaluators in `pkg/quota/v1/evaluator/core`),
//! which quotas apply to it (scopes), quantity arithmetic, and the texts of quota errors.
//!
//! Amounts are exact integers in milli-units (`1` is `1000`, `250m` is `250`); a fraction
//! of a milli-unit rounds up, as `Quantity.MilliValue` does.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::pointer::Pointer;

/// Resource name -> amount in milli-units.
pub type Usage = BTreeMap<String, i128>;

/// The compute resources whose use a pod must declare in every container once a quota
/// limits them (upstream's `validationSet` for pod constraints).
const DECLARED: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Object counts whose quota name predates `count/<resource>`.
const LEGACY_COUNTS: [&str; 7] = [
    "pods",
    "services",
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
    "persistentvolumeclaims",
];

/// Parses a `resource.Quantity` into milli-units, rounding up; `None` when it is not one.
pub fn parse_quantity(text: &str) -> Option<i128> {
    crate::quantity::parse_scaled_wide(text, 3).ok()
}

/// Formats an amount the way a quota status shows it: whole numbers plainly or with the
/// largest exact binary (`Ki`..`Ei`) or decimal (`k`..`E`) suffix for byte resources,
/// `<n>m` when not whole.
pub fn format_quantity(resource: &str, milli: i128) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let whole = milli / 1000;
    let bytes = resource.contains("memory") || resource.contains("storage");
    if !bytes || whole == 0 {
        return whole.to_string();
    }
    for (suffix, exp) in [
        ("Ei", 6),
        ("Pi", 5),
        ("Ti", 4),
        ("Gi", 3),
        ("Mi", 2),
        ("Ki", 1),
    ] {
        let unit = 1024i128.pow(exp);
        if whole % unit == 0 {
            return format!("{}{suffix}", whole / unit);
        }
    }
    for (suffix, exp) in [
        ("E", 18),
        ("P", 15),
        ("T", 12),
        ("G", 9),
        ("M", 6),
        ("k", 3),
    ] {
        let unit = 10i128.pow(exp);
        if whole % unit == 0 {
            return format!("{}{suffix}", whole / unit);
        }
    }
    whole.to_string()
}

/// `a=1,b=2` in name order, as quota errors print a resource list.
pub fn pretty(list: &BTreeMap<String, String>) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A quota's amounts (`spec.hard`, `status.hard` or `status.used`) in milli-units;
/// entries that are not quantities are left out.
pub fn amounts(list: Option<&Value>) -> Usage {
    list.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), parse_quantity(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The count name of a resource: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// What `object` (of `group`/`plural`) uses against a quota. `now_unix` decides whether a
/// pod being deleted still counts (until its grace period is over, as upstream).
pub fn usage(group: &str, plural: &str, object: &Value, now_unix: i64) -> Usage {
    let mut u = Usage::new();
    match (group, plural) {
        ("", "pods") => {
            if !pod_counts(object, now_unix) {
                return u;
            }
            u.insert("pods".into(), 1000);
            u.insert("count/pods".into(), 1000);
            pod_compute(object, &mut u);
        }
        ("", "services") => {
            u.insert("services".into(), 1000);
            u.insert("count/services".into(), 1000);
            let kind = object.at("/spec/type").and_then(Value::as_str);
            if kind == Some("LoadBalancer") {
                u.insert("services.loadbalancers".into(), 1000);
            }
            if matches!(kind, Some("NodePort" | "LoadBalancer")) {
                let ports = object
                    .at("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                u.insert(
                    "services.nodeports".into(),
                    i128::try_from(ports).unwrap_or(0) * 1000,
                );
            }
        }
        _ => {
            if group.is_empty() && LEGACY_COUNTS.contains(&plural) {
                u.insert(plural.to_string(), 1000);
            }
            u.insert(count_name(group, plural), 1000);
        }
    }
    u
}

/// A pod counts unless it finished or its deletion grace period is over.
fn pod_counts(pod: &Value, now_unix: i64) -> bool {
    let phase = pod.at("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let deleted = pod
        .at("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match deleted {
        Some(at) => {
            let grace = pod
                .at("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            now_unix <= at.as_second().saturating_add(grace)
        }
        None => true,
    }
}

/// A pod's requests and limits: the larger of the containers' sum and any one init
/// container, plus the pod overhead (upstream's `PodRequests`/`PodLimits`).
fn pod_compute(pod: &Value, u: &mut Usage) {
    for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
        let mut total = Usage::new();
        for c in containers(pod, "containers") {
            for (name, amount) in amounts(c.at(&format!("/resources/{field}"))) {
                *total.entry(name).or_default() += amount;
            }
        }
        for c in containers(pod, "initContainers") {
            for (name, amount) in amounts(c.at(&format!("/resources/{field}"))) {
                let slot = total.entry(name).or_default();
                *slot = (*slot).max(amount);
            }
        }
        for (name, amount) in amounts(pod.at("/spec/overhead")) {
            *total.entry(name).or_default() += amount;
        }
        for (name, amount) in total {
            if field == "requests"
                && matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
            {
                u.insert(name.clone(), amount);
            }
            if name.contains('/') && field == "requests" {
                // Extended resources are quota'd as `requests.<name>` only.
                u.insert(format!("requests.{name}"), amount);
                continue;
            }
            u.insert(format!("{prefix}{name}"), amount);
        }
    }
}

fn containers<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod.at(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Whether a quota's `spec.scopes` select `object`. Scopes apply to pods only; a quota
/// with scopes does not count other objects. (`scopeSelector` is not evaluated.)
pub fn scopes_match(quota: &Value, group: &str, plural: &str, object: &Value) -> bool {
    let scopes: Vec<&str> = quota
        .at("/spec/scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        return true;
    }
    if (group, plural) != ("", "pods") {
        return false;
    }
    let terminating = object.at("/spec/activeDeadlineSeconds").is_some();
    let best_effort = containers(object, "containers")
        .chain(containers(object, "initContainers"))
        .all(|c| {
            ["requests", "limits"].iter().all(|f| {
                c.at(&format!("/resources/{f}"))
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty())
            })
        });
    scopes.iter().all(|s| match *s {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => false,
    })
}

/// Upstream's pod constraints: once a quota limits cpu or memory, every container must
/// declare it. `Err` carries the text after `must specify ` is prepended, e.g.
/// `must specify cpu for: nginx; memory for: nginx`.
pub fn pod_constraints(hard: &BTreeSet<&str>, pod: &Value) -> Result<(), String> {
    let required: Vec<&str> = DECLARED
        .iter()
        .copied()
        .filter(|r| hard.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in containers(pod, "containers").chain(containers(pod, "initContainers")) {
        let mut declared = Usage::new();
        pod_compute(
            &serde_json::json!({ "spec": { "containers": [c] } }),
            &mut declared,
        );
        for r in &required {
            if !declared.contains_key(*r) {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                missing.entry(r).or_default().insert(name.to_string());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_should_parse_to_milli_units_rounding_up() {
        assert_eq!(parse_quantity("1"), Some(1000));
        assert_eq!(parse_quantity("250m"), Some(250));
        assert_eq!(parse_quantity("0.5"), Some(500));
        assert_eq!(parse_quantity("1Ki"), Some(1_024_000));
        assert_eq!(parse_quantity("1.5Gi"), Some(1_610_612_736_000));
        assert_eq!(parse_quantity("2k"), Some(2_000_000));
        assert_eq!(parse_quantity("1e3"), Some(1_000_000));
        assert_eq!(parse_quantity("1n"), Some(1), "a fraction rounds up");
        assert_eq!(parse_quantity("-1"), Some(-1000));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Qi"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn amounts_should_format_like_a_quota_status() {
        assert_eq!(format_quantity("pods", 3000), "3");
        assert_eq!(format_quantity("pods", 1_000_000), "1000");
        assert_eq!(format_quantity("requests.cpu", 1500), "1500m");
        assert_eq!(format_quantity("requests.cpu", 2000), "2");
        assert_eq!(format_quantity("requests.memory", 268_435_456_000), "256Mi");
        assert_eq!(format_quantity("limits.memory", 500_000_000_000), "500M");
        assert_eq!(format_quantity("requests.memory", 0), "0");
    }

    fn pod(cpu: Option<&str>, phase: &str) -> Value {
        let resources = match cpu {
            Some(c) => {
                json!({ "requests": { "cpu": c, "memory": "64Mi" }, "limits": { "cpu": c } })
            }
            None => json!({}),
        };
        json!({
            "metadata": { "name": "p" },
            "spec": { "containers": [
                { "name": "a", "resources": resources },
                { "name": "b", "resources": resources }
            ] },
            "status": { "phase": phase }
        })
    }

    #[test]
    fn a_pod_should_charge_its_count_and_the_sum_of_its_containers() {
        let u = usage("", "pods", &pod(Some("250m"), "Pending"), 0);
        assert_eq!(u.get("pods"), Some(&1000));
        assert_eq!(u.get("count/pods"), Some(&1000));
        assert_eq!(u.get("requests.cpu"), Some(&500));
        assert_eq!(u.get("cpu"), Some(&500));
        assert_eq!(u.get("limits.cpu"), Some(&500));
        assert_eq!(u.get("requests.memory"), Some(&134_217_728_000));
        assert!(usage("", "pods", &pod(None, "Succeeded"), 0).is_empty());
    }

    #[test]
    fn a_deleted_pod_should_count_until_its_grace_period_is_over() {
        let mut p = pod(None, "Running");
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        let at = "2026-01-01T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .unwrap_or_default();
        assert!(!usage("", "pods", &p, at + 10).is_empty());
        assert!(usage("", "pods", &p, at + 31).is_empty());
    }

    #[test]
    fn other_objects_should_charge_their_counts() {
        let svc =
            json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }, { "port": 81 }] } });
        let u = usage("", "services", &svc, 0);
        assert_eq!(u.get("services.nodeports"), Some(&2000));
        assert_eq!(u.get("services"), Some(&1000));
        let u = usage("", "configmaps", &json!({}), 0);
        assert_eq!(u.get("configmaps"), Some(&1000));
        assert_eq!(u.get("count/configmaps"), Some(&1000));
        let u = usage("apps", "deployments", &json!({}), 0);
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
    }

    #[test]
    fn constraints_should_name_every_container_missing_a_limited_resource() {
        let hard: BTreeSet<&str> = ["cpu", "memory", "pods"].into_iter().collect();
        assert_eq!(
            pod_constraints(&hard, &pod(None, "Pending")),
            Err("must specify cpu for: a,b; memory for: a,b".into())
        );
        assert_eq!(pod_constraints(&hard, &pod(Some("1"), "Pending")), Ok(()));
        let count_only: BTreeSet<&str> = ["pods"].into_iter().collect();
        assert_eq!(pod_constraints(&count_only, &pod(None, "Pending")), Ok(()));
    }

    #[test]
    fn scopes_should_select_pods_by_best_effort_and_deadline() {
        let q = json!({ "spec": { "scopes": ["BestEffort"] } });
        assert!(scopes_match(&q, "", "pods", &pod(None, "Pending")));
        assert!(!scopes_match(&q, "", "pods", &pod(Some("1"), "Pending")));
        assert!(!scopes_match(&q, "", "services", &json!({})));
        assert!(scopes_match(&json!({}), "", "services", &json!({})));
    }

    #[test]
    fn pretty_should_join_sorted_pairs() {
        let list: BTreeMap<String, String> = [
            ("pods".to_string(), "2".to_string()),
            ("cpu".into(), "1".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(pretty(&list), "cpu=1,pods=2");
    }
}
