//! ResourceQuota admission: a create in a namespace with quotas is checked against each
//! quota's `status.hard` and `status.used`, and charged to `status.used` (compare-and-swap,
//! retried on conflict) before the object is stored, as upstream's admission plugin does.
//! The controller-manager's ResourceQuota controller fills `status` and gives back what
//! deleted objects used. A quota the controller has not filled yet (`status.hard` empty)
//! admits everything, as upstream.

use std::collections::{BTreeMap, BTreeSet};

use kubernel_api::pointer::Pointer;
use kubernel_api::quota::{self, Usage};
use kubernel_api::resources::Resource;
use serde_json::{json, Value};

use crate::status::ApiError;
use crate::store::{ListOptions, Store, StoreError, Stored};

/// How often a charge is retried when another writer changed a quota meanwhile.
const CONFLICT_RETRIES: usize = 20;

/// Checks `object` (about to be created in `namespace`) against the namespace's quotas and
/// charges its use to them; `Err` is the 403 to answer. Dry runs check without charging.
pub async fn charge(
    store: &dyn Store,
    r: &Resource,
    namespace: &str,
    object: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    if !r.namespaced || namespace.is_empty() {
        return Ok(());
    }
    // Computed once, and only in a namespace with quotas (most have none).
    let mut usage: Option<quota::Usage> = None;
    let name = object
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let forbidden = |message: String| {
        ApiError::forbidden(
            r.group,
            r.plural,
            name,
            format!(
                "{} \"{name}\" is forbidden: {message}",
                r.qualified_plural()
            ),
        )
    };
    let prefix = format!("resourcequotas/{namespace}/");
    let mut charged: BTreeSet<String> = BTreeSet::new();
    for _ in 0..CONFLICT_RETRIES {
        let quotas = store
            .list(&ListOptions {
                prefix: prefix.clone(),
                ..ListOptions::default()
            })
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        if quotas.items.is_empty() {
            return Ok(());
        }
        let usage = usage.get_or_insert_with(|| {
            quota::usage(
                r.group,
                r.plural,
                object,
                jiff::Timestamp::now().as_second(),
            )
        });
        if usage.is_empty() {
            return Ok(());
        }
        let mut writes = Vec::new();
        for stored in &quotas.items {
            let quota_name = stored
                .object
                .at("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if charged.contains(quota_name) {
                continue;
            }
            if let Some(used) = evaluate(stored, r, object, usage).map_err(&forbidden)? {
                writes.push((stored, quota_name, used));
            }
        }
        if dry_run {
            return Ok(());
        }
        let mut conflicted = false;
        for (stored, quota_name, used) in writes {
            let mut updated = (*stored.object).clone();
            updated["status"]["used"] = json!(used);
            match store
                .update(&stored.key, updated, Some(stored.mod_revision))
                .await
            {
                Ok(_) => {
                    charged.insert(quota_name.to_string());
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    conflicted = true;
                }
                Err(e) => return Err(ApiError::unavailable(e.to_string())),
            }
        }
        if !conflicted {
            return Ok(());
        }
    }
    Err(ApiError::conflict_message(
        r.group,
        r.plural,
        name,
        format!("Operation cannot be fulfilled on resourcequotas in namespace {namespace}: too many concurrent changes to the quotas; please try again"),
    ))
}

/// One quota's verdict on `usage`: `Ok(None)` when the quota does not limit it,
/// `Ok(Some(used))` with the new `status.used`, `Err(message)` when it forbids the create.
fn evaluate(
    stored: &Stored,
    r: &Resource,
    object: &Value,
    usage: &Usage,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let q = &stored.object;
    let quota_name = q
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !quota::scopes_match(q, r.group, r.plural, object) {
        return Ok(None);
    }
    let hard_text = strings(q.at("/status/hard"));
    if hard_text.is_empty() {
        return Ok(None);
    }
    let hard_names: BTreeSet<&str> = hard_text.keys().map(String::as_str).collect();
    if (r.group, r.plural) == ("", "pods") {
        quota::pod_constraints(&hard_names, object)
            .map_err(|m| format!("failed quota: {quota_name}: {m}"))?;
    }
    let interesting: Vec<&String> = usage
        .keys()
        .filter(|k| hard_names.contains(k.as_str()))
        .collect();
    if interesting.is_empty() {
        return Ok(None);
    }
    let mut used_text = strings(q.at("/status/used"));
    let unknown: Vec<&str> = interesting
        .iter()
        .filter(|k| !used_text.contains_key(k.as_str()))
        .map(|k| k.as_str())
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "status unknown for quota: {quota_name}, resources: {}",
            unknown.join(",")
        ));
    }
    let hard = quota::amounts(q.at("/status/hard"));
    let used = quota::amounts(q.at("/status/used"));
    let mut requested = BTreeMap::new();
    let mut failed_used = BTreeMap::new();
    let mut failed_hard = BTreeMap::new();
    for k in interesting {
        let delta = usage.get(k).copied().unwrap_or(0);
        let now = used.get(k).copied().unwrap_or(0);
        let limit = hard.get(k).copied().unwrap_or(0);
        if now + delta > limit {
            requested.insert(k.clone(), quota::format_quantity(k, delta));
            failed_used.insert(k.clone(), used_text.get(k).cloned().unwrap_or_default());
            failed_hard.insert(k.clone(), hard_text.get(k).cloned().unwrap_or_default());
        } else {
            used_text.insert(k.clone(), quota::format_quantity(k, now + delta));
        }
    }
    if !requested.is_empty() {
        return Err(format!(
            "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
            quota::pretty(&requested),
            quota::pretty(&failed_used),
            quota::pretty(&failed_hard)
        ));
    }
    Ok(Some(used_text))
}

/// A resource list's entries as written.
fn strings(list: Option<&Value>) -> BTreeMap<String, String> {
    list.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn stored(status: Value) -> Stored {
        let object = json!({ "metadata": { "name": "q" }, "spec": { "hard": status["hard"].clone() }, "status": status });
        Stored {
            key: Arc::from("resourcequotas/ns/q"),
            json: axum::body::Bytes::from(object.to_string()),
            object: Arc::new(object),
            create_revision: 1,
            mod_revision: 1,
        }
    }

    fn pods() -> &'static Resource {
        kubernel_api::resources::find("", "v1", "pods").unwrap_or_else(|| panic!("pods served"))
    }

    fn pod(cpu: Option<&str>) -> Value {
        let resources = cpu.map_or(json!({}), |c| json!({ "requests": { "cpu": c } }));
        json!({ "metadata": { "name": "web" }, "spec": { "containers": [{ "name": "c", "resources": resources }] } })
    }

    fn verdict(status: Value, object: &Value) -> Result<Option<BTreeMap<String, String>>, String> {
        let r = pods();
        let usage = quota::usage(r.group, r.plural, object, 0);
        evaluate(&stored(status), r, object, &usage)
    }

    #[test]
    fn a_pod_over_the_count_should_get_upstreams_message() {
        let full = json!({ "hard": { "pods": "2" }, "used": { "pods": "2" } });
        assert_eq!(
            verdict(full, &pod(None)),
            Err("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2".into())
        );
        let room = json!({ "hard": { "pods": "2" }, "used": { "pods": "1" } });
        assert_eq!(
            verdict(room, &pod(None)),
            Ok(Some(
                [("pods".to_string(), "2".to_string())]
                    .into_iter()
                    .collect()
            ))
        );
    }

    #[test]
    fn only_the_exceeded_resources_should_be_named() {
        let status = json!({ "hard": { "pods": "5", "requests.cpu": "1" }, "used": { "pods": "1", "requests.cpu": "800m" } });
        assert_eq!(
            verdict(status, &pod(Some("500m"))),
            Err("exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=800m, limited: requests.cpu=1".into())
        );
    }

    #[test]
    fn a_pod_without_requests_should_fail_a_cpu_quota() {
        let status = json!({ "hard": { "cpu": "2" }, "used": { "cpu": "0" } });
        assert_eq!(
            verdict(status, &pod(None)),
            Err("failed quota: q: must specify cpu for: c".into())
        );
    }

    #[test]
    fn an_unsynced_quota_should_admit_and_missing_usage_should_be_unknown() {
        assert_eq!(verdict(json!({}), &pod(None)), Ok(None));
        let status = json!({ "hard": { "pods": "2" }, "used": {} });
        assert_eq!(
            verdict(status, &pod(None)),
            Err("status unknown for quota: q, resources: pods".into())
        );
    }
}
