//! Rows of configuration, policy, RBAC and coordination objects, and the default `Name`/`Created At` row.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{count, int, int_or_string, list, name, text};
use super::time::{age, rfc3339};
use crate::pointer::Pointer;

fn created(o: &Value, now: Timestamp) -> Value {
    json!(age(text(o, "/metadata/creationTimestamp"), now))
}

/// Upstream's default table convertor: the name and the RFC 3339 creation time.
pub(crate) fn default_cells(o: &Value, _now: Timestamp) -> Vec<Value> {
    vec![
        name(o),
        json!(rfc3339(text(o, "/metadata/creationTimestamp"))),
    ]
}

/// The cells of a config map row, in [`super::columns::CONFIG_MAP`] order.
pub(crate) fn config_map_cells(cm: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(cm),
        json!(count(cm, "/data") + count(cm, "/binaryData")),
        created(cm, now),
    ]
}

/// The cells of a secret row, in [`super::columns::SECRET`] order.
pub(crate) fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    let type_ = match text(secret, "/type") {
        "" => "Opaque",
        t => t,
    };
    vec![
        name(secret),
        json!(type_),
        json!(count(secret, "/data")),
        created(secret, now),
    ]
}

/// The cells of a service account row, in [`super::columns::SERVICE_ACCOUNT`] order.
pub(crate) fn service_account_cells(sa: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(sa), json!(count(sa, "/secrets")), created(sa, now)]
}

/// The cells of a lease row, in [`super::columns::LEASE`] order.
pub(crate) fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease),
        json!(text(lease, "/spec/holderIdentity")),
        created(lease, now),
    ]
}

/// The cells of a priority class row, in [`super::columns::PRIORITY_CLASS`] order.
pub(crate) fn priority_class_cells(pc: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(pc),
        json!(int(pc, "/value")),
        json!(pc
            .get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        created(pc, now),
        json!(text(pc, "/preemptionPolicy")),
    ]
}

/// The cells of a pod disruption budget row, in [`super::columns::POD_DISRUPTION_BUDGET`] order.
pub(crate) fn pod_disruption_budget_cells(pdb: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |pointer: &str| {
        pdb.at(pointer)
            .filter(|v| !v.is_null())
            .map_or_else(|| "N/A".to_string(), int_or_string)
    };
    vec![
        name(pdb),
        json!(bound("/spec/minAvailable")),
        json!(bound("/spec/maxUnavailable")),
        json!(int(pdb, "/status/disruptionsAllowed")),
        created(pdb, now),
    ]
}

/// The cells of a certificate signing request row, in
/// [`super::columns::CERTIFICATE_SIGNING_REQUEST`] order: the condition is the
/// types of its `True` conditions (`Approved,Issued`), else `Pending`.
pub(crate) fn certificate_signing_request_cells(csr: &Value, now: Timestamp) -> Vec<Value> {
    let mut condition: Vec<&str> = list(csr, "/status/conditions")
        .iter()
        .filter(|c| text(c, "/status") == "True")
        .map(|c| text(c, "/type"))
        .collect();
    if !text(csr, "/status/certificate").is_empty() {
        condition.push("Issued");
    }
    let condition = if condition.is_empty() {
        "Pending".to_string()
    } else {
        condition.join(",")
    };
    let duration = csr
        .at("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map_or_else(
            || "<none>".to_string(),
            |s| super::time::human_duration(jiff::SignedDuration::from_secs(s)),
        );
    vec![
        name(csr),
        created(csr, now),
        json!(text(csr, "/spec/signerName")),
        json!(text(csr, "/spec/username")),
        json!(duration),
        json!(condition),
    ]
}

/// The cells of a (cluster) role binding row, in [`super::columns::ROLE_BINDING`] order.
pub(crate) fn role_binding_cells(rb: &Value, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in list(rb, "/subjects") {
        match text(s, "/kind") {
            "ServiceAccount" => sas.push(format!("{}/{}", text(s, "/namespace"), text(s, "/name"))),
            "User" => users.push(text(s, "/name").to_string()),
            "Group" => groups.push(text(s, "/name").to_string()),
            _ => {}
        }
    }
    vec![
        name(rb),
        json!(format!(
            "{}/{}",
            text(rb, "/roleRef/kind"),
            text(rb, "/roleRef/name")
        )),
        created(rb, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

/// The cells of a resource quota row, in [`super::columns::RESOURCE_QUOTA`] order.
pub(crate) fn resource_quota_cells(quota: &Value, now: Timestamp) -> Vec<Value> {
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    if let Some(hard) = quota.at("/status/hard").and_then(Value::as_object) {
        let mut names: Vec<&String> = hard.keys().collect();
        names.sort();
        for resource in names {
            let used = quota
                .at("/status/used")
                .and_then(|u| u.get(resource.as_str()));
            let used = used.map_or_else(|| "0".to_string(), int_or_string);
            let entry = format!(
                "{resource}: {used}/{}",
                hard.get(resource.as_str())
                    .map(int_or_string)
                    .unwrap_or_default()
            );
            if resource.split('.').next() == Some("limits") && resource.contains('.') {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
    }
    vec![
        name(quota),
        created(quota, now),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("now")
    }

    #[test]
    fn default_cells_should_show_name_and_creation_time() {
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2025-06-01T10:00:00Z"}});
        assert_eq!(
            default_cells(&role, now()),
            vec![json!("reader"), json!("2025-06-01T10:00:00Z")]
        );
    }

    #[test]
    fn config_cells_should_count_entries() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(config_map_cells(&cm, now())[1], 3);
        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            secret_cells(&secret, now())[1..3],
            [json!("kubernetes.io/tls"), json!(2)]
        );
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(service_account_cells(&sa, now())[1], 0);
    }

    #[test]
    fn policy_cells_should_show_bounds_and_bindings() {
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            pod_disruption_budget_cells(&pdb, now())[1..4],
            [json!("50%"), json!("N/A"), json!(1)]
        );
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]});
        assert_eq!(
            role_binding_cells(&rb, now())[1..6],
            [
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!("alice"),
                json!("devs"),
                json!("tools/ci")
            ]
        );
    }

    #[test]
    fn resource_quota_cells_should_split_requests_and_limits() {
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "1Gi"},
            "used": {"pods": "2", "requests.cpu": "500m"}}});
        let cells = resource_quota_cells(&quota, now());
        assert_eq!(cells[2], "pods: 2/10, requests.cpu: 500m/1");
        assert_eq!(cells[3], "limits.memory: 0/1Gi");
    }

    #[test]
    fn lease_cells_should_show_the_holder() {
        let lease = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "node-a_1234"}});
        assert_eq!(lease_cells(&lease, now())[1], "node-a_1234");
    }
}
