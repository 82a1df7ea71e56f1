//! Service update preparation: allocated values kept when the update leaves them out, type-dependent ones dropped on a type change.
//!
//! As kube-apiserver's `patchAllocatedValues` and `dropTypeDependentFields`:
//! `kubectl replace` (or a client that PUTs its own manifest) does not know the
//! cluster IP and node ports the server chose, so an update that leaves them
//! empty keeps them; and a change to a type that no longer uses a value the
//! server set (node ports on `ClusterIP`, a cluster IP on `ExternalName`) drops
//! it when the update carried it over unchanged, instead of failing validation.
//! `clusterIP` and `clusterIPs` are kept in step when a client sets only the
//! first (`normalizeClusterIPs`), so that changing it is refused as a change.

use serde_json::{Map, Value};

use super::spec::{needs_cluster_ip, needs_health_check_port, needs_node_ports, service_type};
use crate::request::RequestInfo;

/// Prepares an update of a Service's spec from `old` to `new`, before validation
/// (other kinds and the status subresource pass untouched).
pub fn prepare_update(info: &RequestInfo, old: &Value, new: &mut Value) {
    let r = info.resource;
    if (r.group, r.kind) != ("", "Service") || !info.subresource.is_empty() {
        return;
    }
    let (Some(old), Some(new)) = (
        old.get("spec").and_then(Value::as_object),
        new.get_mut("spec").and_then(Value::as_object_mut),
    ) else {
        return;
    };
    drop_type_dependent_fields(old, new);
    patch_allocated_values(old, new);
    normalize_cluster_ips(old, new);
}

fn view(spec: &Map<String, Value>) -> Value {
    Value::Object(spec.clone())
}

fn ports(spec: &Map<String, Value>) -> &[Value] {
    spec.get("ports")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn node_port_of(port: &Value) -> i64 {
    port.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

/// `LoadBalancer`, `NodePort`, or `ClusterIP` with external IPs.
fn externally_accessible(spec: &Value) -> bool {
    match service_type(spec) {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => spec
            .get("externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|ips| !ips.is_empty()),
        _ => false,
    }
}

/// Removes each of `fields` from `new` when it equals `old`'s.
fn drop_unchanged(old: &Map<String, Value>, new: &mut Map<String, Value>, fields: &[&str]) {
    for field in fields {
        if old.get(*field) == new.get(*field) {
            new.remove(*field);
        }
    }
}

/// `dropTypeDependentFields`: values the old type used and the new one does not,
/// carried over unchanged, are dropped (a changed one is left for validation to refuse).
fn drop_type_dependent_fields(old: &Map<String, Value>, new: &mut Map<String, Value>) {
    let (o, n) = (view(old), view(new));
    if needs_cluster_ip(&o) && !needs_cluster_ip(&n) {
        if old.get("clusterIP") == new.get("clusterIP")
            && old.get("clusterIPs") == new.get("clusterIPs")
        {
            new.remove("clusterIP");
            new.remove("clusterIPs");
        }
        drop_unchanged(old, new, &["ipFamilies", "ipFamilyPolicy"]);
    }
    if needs_node_ports(&o) && !needs_node_ports(&n) {
        // Ports may be added, removed or changed, as long as no node port is new.
        let old_ports: Vec<i64> = ports(old).iter().map(node_port_of).collect();
        let same = ports(new)
            .iter()
            .map(node_port_of)
            .all(|np| np == 0 || old_ports.contains(&np));
        if same {
            let list = new.get_mut("ports").and_then(Value::as_array_mut);
            for port in list.into_iter().flatten() {
                if let Some(p) = port.as_object_mut() {
                    p.remove("nodePort");
                }
            }
        }
    }
    if needs_health_check_port(&o) && !needs_health_check_port(&n) {
        drop_unchanged(old, new, &["healthCheckNodePort"]);
    }
    if service_type(&o) == "LoadBalancer" && service_type(&n) != "LoadBalancer" {
        drop_unchanged(
            old,
            new,
            &["allocateLoadBalancerNodePorts", "loadBalancerClass"],
        );
    }
    if externally_accessible(&o) && !externally_accessible(&n) {
        drop_unchanged(old, new, &["externalTrafficPolicy"]);
    }
}

/// `patchAllocatedValues`: the cluster IP, node ports (matched by port name, unless
/// another port of the update uses that number) and health check port the update
/// leaves empty are kept from `old`.
fn patch_allocated_values(old: &Map<String, Value>, new: &mut Map<String, Value>) {
    let (o, n) = (view(old), view(new));
    if needs_cluster_ip(&o) && needs_cluster_ip(&n) {
        let empty = |v: Option<&Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        for field in ["clusterIP", "clusterIPs"] {
            if empty(new.get(field)) && !empty(old.get(field)) {
                if let Some(v) = old.get(field) {
                    new.insert(field.into(), v.clone());
                }
            }
        }
    }
    if needs_node_ports(&o) && needs_node_ports(&n) {
        let used_by_both: Vec<i64> = ports(old)
            .iter()
            .map(node_port_of)
            .filter(|&np| np != 0 && ports(new).iter().any(|p| node_port_of(p) == np))
            .collect();
        let by_name: Vec<(Value, i64)> = ports(old)
            .iter()
            .map(|p| (p.get("name").cloned().unwrap_or_default(), node_port_of(p)))
            .collect();
        let list = new.get_mut("ports").and_then(Value::as_array_mut);
        for port in list.into_iter().flatten() {
            if node_port_of(port) != 0 {
                continue;
            }
            let name = port.get("name").cloned().unwrap_or_default();
            let kept = by_name
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|&(_, np)| np)
                .filter(|&np| np != 0 && !used_by_both.contains(&np));
            if let (Some(np), Some(p)) = (kept, port.as_object_mut()) {
                p.insert("nodePort".into(), np.into());
            }
        }
    }
    if needs_health_check_port(&o) && needs_health_check_port(&n) {
        let unset = new
            .get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0;
        if unset {
            if let Some(v) = old.get("healthCheckNodePort") {
                new.insert("healthCheckNodePort".into(), v.clone());
            }
        }
    }
}

/// `clusterIPs` as a list (absent or null is empty).
fn listed_ips(spec: &Map<String, Value>) -> &[Value] {
    spec.get("clusterIPs")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `normalizeClusterIPs`: a client that only knows `clusterIP` (it left
/// `clusterIPs` out, or carried the old list over unchanged) gets `clusterIPs` to follow it.
fn normalize_cluster_ips(old: &Map<String, Value>, new: &mut Map<String, Value>) {
    let ip = |spec: &Map<String, Value>| {
        spec.get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (old_ip, new_ip) = (ip(old), ip(new));
    if !listed_ips(old).is_empty() && listed_ips(new).is_empty() && old_ip == new_ip {
        if let Some(ips) = old.get("clusterIPs") {
            new.insert("clusterIPs".into(), ips.clone());
        }
    }
    if old_ip == new_ip || listed_ips(old) != listed_ips(new) {
        return;
    }
    if new_ip.is_empty() {
        new.remove("clusterIPs");
    } else {
        new.insert("clusterIPs".into(), Value::from(vec![new_ip]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prepared(old: Value, new: Value) -> Value {
        let (Value::Object(old), Value::Object(mut new)) = (old, new) else {
            panic!("specs are objects");
        };
        drop_type_dependent_fields(&old, &mut new);
        patch_allocated_values(&old, &mut new);
        normalize_cluster_ips(&old, &mut new);
        Value::Object(new)
    }

    #[test]
    fn an_update_without_allocated_values_should_keep_them() {
        let old = json!({"type": "NodePort", "clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]});
        let new = json!({"type": "NodePort", "ports": [{"name": "https", "port": 443}, {"name": "http", "port": 8080}]});
        assert_eq!(
            prepared(old, new),
            json!({"type": "NodePort", "clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"],
                "ports": [{"name": "https", "port": 443, "nodePort": 30443}, {"name": "http", "port": 8080, "nodePort": 30080}]})
        );
    }

    #[test]
    fn a_node_port_moved_to_another_port_should_not_be_patched_twice() {
        let old =
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080}]});
        let new = json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}]});
        assert_eq!(
            prepared(old, new)["ports"],
            json!([{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}])
        );
    }

    #[test]
    fn a_change_to_cluster_ip_should_drop_unchanged_node_ports_and_policies() {
        let old = json!({"type": "NodePort", "clusterIP": "10.96.1.1", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]});
        let new = json!({"type": "ClusterIP", "clusterIP": "10.96.1.1", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]});
        assert_eq!(
            prepared(old.clone(), new),
            json!({"type": "ClusterIP", "clusterIP": "10.96.1.1", "ports": [{"port": 80}]})
        );
        let removed_one =
            json!({"type": "ClusterIP", "ports": [{"port": 80}, {"port": 81, "nodePort": 30080}]});
        assert_eq!(
            prepared(old.clone(), removed_one)["ports"],
            json!([{"port": 80}, {"port": 81}])
        );
        let changed = json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30081}]});
        assert_eq!(prepared(old, changed)["ports"][0]["nodePort"], json!(30081));
    }

    #[test]
    fn a_change_to_external_name_should_drop_the_cluster_ip_and_families() {
        let old = json!({"type": "ClusterIP", "clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"});
        let new = json!({"type": "ExternalName", "externalName": "example.com", "clusterIP": "10.96.1.1",
            "clusterIPs": ["10.96.1.1"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"});
        assert_eq!(
            prepared(old, new),
            json!({"type": "ExternalName", "externalName": "example.com"})
        );
    }

    #[test]
    fn a_changed_cluster_ip_should_carry_cluster_ips_along() {
        let old = json!({"clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"]});
        let moved = json!({"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.1.1"]});
        assert_eq!(
            prepared(old.clone(), moved),
            json!({"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.0.77"]})
        );
        let both = json!({"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.0.78"]});
        assert_eq!(prepared(old, both.clone()), both);
    }
}
