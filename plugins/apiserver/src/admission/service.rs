//! Service validation (`ValidateService`, `ValidateServiceUpdate`): type, ports, cluster IPs, policies.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{json, Value};

use super::meta::validate_labels;
use super::names::{dns1123_label, dns1123_subdomain, port_name, port_num, qualified_name};
use super::pod::{list, one_of, str_of, PROTOCOLS};
use super::render::go_string_slice;
use super::{child, index};
use crate::status::Cause;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// The cluster IPs of a spec: `clusterIPs`, else `[clusterIP]`.
fn cluster_ips(spec: &Value) -> Vec<Value> {
    match spec.get("clusterIPs").and_then(Value::as_array) {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => match str_of(spec, "clusterIP") {
            "" => Vec::new(),
            ip => vec![json!(ip)],
        },
    }
}

/// A Service spec, on create and update.
pub(super) fn validate_service(object: &Value, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let spec = object.get("spec").unwrap_or(&null);
    let kind = str_of(spec, "type");
    let headless = str_of(spec, "clusterIP") == "None";
    if !TYPES.contains(&kind) {
        causes.push(Cause::not_supported("spec.type", &json!(kind), TYPES));
    }
    let ports = list(spec.get("ports"));
    if kind == "ExternalName" {
        let name = str_of(spec, "externalName");
        if name.is_empty() {
            causes.push(Cause::required("spec.externalName"));
        } else {
            for msg in dns1123_subdomain(name.trim_end_matches('.')) {
                causes.push(Cause::invalid("spec.externalName", &json!(name), &msg));
            }
        }
        if !cluster_ips(spec).is_empty() {
            causes.push(Cause::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    } else if ports.is_empty() && !headless {
        causes.push(Cause::required("spec.ports"));
    }
    validate_ports(ports, kind, causes);
    validate_labels(spec.get("selector"), "spec.selector", causes);
    one_of(
        spec,
        "sessionAffinity",
        "spec",
        &["ClientIP", "None"],
        causes,
    );
    let ips = cluster_ips(spec);
    for (i, ip) in ips.iter().enumerate() {
        let s = ip.as_str().unwrap_or("");
        if !(i == 0 && s == "None") && s.parse::<IpAddr>().is_err() {
            causes.push(Cause::invalid(
                index("spec.clusterIPs", i),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let cluster_ip = str_of(spec, "clusterIP");
    if !cluster_ip.is_empty()
        && ips
            .first()
            .and_then(Value::as_str)
            .is_some_and(|first| first != cluster_ip)
    {
        causes.push(Cause::invalid_rendered(
            "spec.clusterIPs[0]",
            &go_string_slice(spec.get("clusterIPs")),
            "first value must match `clusterIP`",
        ));
    }
    for (field, supported) in [
        (
            "ipFamilyPolicy",
            &["SingleStack", "PreferDualStack", "RequireDualStack"][..],
        ),
        ("internalTrafficPolicy", &["Cluster", "Local"][..]),
        ("externalTrafficPolicy", &["Cluster", "Local"][..]),
    ] {
        let v = str_of(spec, field);
        if !v.is_empty() && !supported.contains(&v) {
            causes.push(Cause::not_supported(
                child("spec", field),
                &json!(v),
                supported,
            ));
        }
    }
    for (i, family) in list(spec.get("ipFamilies")).iter().enumerate() {
        if !matches!(family.as_str(), Some("IPv4" | "IPv6")) {
            causes.push(Cause::not_supported(
                index("spec.ipFamilies", i),
                family,
                &["IPv4", "IPv6"],
            ));
        }
    }
    let external = matches!(kind, "LoadBalancer" | "NodePort")
        || (kind == "ClusterIP" && !list(spec.get("externalIPs")).is_empty());
    if !external && !str_of(spec, "externalTrafficPolicy").is_empty() {
        causes.push(Cause::invalid(
            "spec.externalTrafficPolicy",
            &json!(str_of(spec, "externalTrafficPolicy")),
            "may only be set for externally-accessible services",
        ));
    }
}

/// `validateServicePort` for every port, plus unique names and port/protocol pairs.
fn validate_ports(ports: &[Value], kind: &str, causes: &mut Vec<Cause>) {
    let mut names = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = index("spec.ports", i);
        let name = str_of(port, "name");
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(child(&p, "name")));
        } else if !name.is_empty() {
            causes.extend(
                dns1123_label(name)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "name"), &json!(name), m)),
            );
            if !names.insert(name) {
                causes.push(Cause::duplicate(child(&p, "name"), &json!(name)));
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        causes.extend(
            port_num(number)
                .iter()
                .map(|m| Cause::invalid(child(&p, "port"), &json!(number), m)),
        );
        one_of(port, "protocol", &p, PROTOCOLS, causes);
        match port.get("targetPort") {
            Some(Value::String(s)) => causes.extend(
                port_name(s)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "targetPort"), &json!(s), m)),
            ),
            Some(v) => {
                let n = v.as_i64().unwrap_or(0);
                causes.extend(
                    port_num(n)
                        .iter()
                        .map(|m| Cause::invalid(child(&p, "targetPort"), &json!(n), m)),
                );
            }
            None => {}
        }
        if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
            causes.extend(
                qualified_name(app)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "appProtocol"), &json!(app), m)),
            );
        }
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            if kind == "ClusterIP" {
                causes.push(Cause::forbidden(
                    child(&p, "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
            causes.extend(
                port_num(node_port)
                    .iter()
                    .map(|m| Cause::invalid(child(&p, "nodePort"), &json!(node_port), m)),
            );
            if !node_ports.insert((str_of(port, "protocol"), node_port)) {
                causes.push(Cause::duplicate(child(&p, "nodePort"), &json!(node_port)));
            }
        }
        let protocol = str_of(port, "protocol");
        if !pairs.insert((number, protocol)) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                message: format!(
                    "Duplicate value: core.ServicePort{{Name:\"\", Protocol:\"{protocol}\", AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
                ),
                field: p.clone(),
            });
        }
    }
}

/// `validateUpgradeDowngradeClusterIPs`: allocated cluster IPs may not change (unless the type is or was ExternalName).
pub(super) fn validate_service_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let (ns, os) = (
        new.get("spec").unwrap_or(&null),
        old.get("spec").unwrap_or(&null),
    );
    if str_of(ns, "type") == "ExternalName" || str_of(os, "type") == "ExternalName" {
        return;
    }
    if str_of(ns, "clusterIP") == "None" && str_of(os, "clusterIP") == "None" {
        return;
    }
    let (new_ips, old_ips) = (cluster_ips(ns), cluster_ips(os));
    let rendered =
        go_string_slice(Some(&Value::Array(new_ips.clone())).filter(|_| !new_ips.is_empty()));
    if new_ips.is_empty() && !old_ips.is_empty() {
        causes.push(Cause::invalid_rendered(
            "spec.clusterIPs[0]",
            &rendered,
            "primary clusterIP can not be unset",
        ));
        return;
    }
    for (i, (n, o)) in new_ips.iter().zip(&old_ips).enumerate() {
        if n != o {
            causes.push(Cause::invalid_rendered(
                index("spec.clusterIPs", i),
                &rendered,
                "may not change once set",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate_service(&json!({"spec": spec}), &mut causes);
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn port(p: i64, name: &str) -> Value {
        json!({"port": p, "name": name, "protocol": "TCP", "targetPort": p})
    }

    #[test]
    fn a_valid_service_should_pass() {
        assert!(texts(json!({"type": "ClusterIP", "sessionAffinity": "None", "ports": [port(80, "http"), port(443, "https")], "clusterIP": "10.96.0.10"})).is_empty());
        assert!(texts(
            json!({"type": "ClusterIP", "sessionAffinity": "None", "clusterIP": "None"})
        )
        .is_empty());
    }

    #[test]
    fn cluster_ip_services_should_need_ports() {
        assert_eq!(
            texts(json!({"type": "ClusterIP", "sessionAffinity": "None"})),
            vec!["spec.ports: Required value"]
        );
    }

    #[test]
    fn ports_should_have_unique_names_when_several() {
        let got = texts(
            json!({"type": "ClusterIP", "sessionAffinity": "None", "ports": [port(80, "web"), port(81, "web"), port(82, "")]}),
        );
        assert_eq!(
            got,
            vec![
                "spec.ports[1].name: Duplicate value: \"web\"",
                "spec.ports[2].name: Required value"
            ]
        );
    }

    #[test]
    fn type_should_be_supported() {
        assert_eq!(
            texts(json!({"type": "Internal", "sessionAffinity": "None", "ports": [port(80, "")]})),
            vec!["spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
        );
    }

    #[test]
    fn duplicate_port_protocol_pairs_should_be_reported_like_upstream() {
        let got = texts(
            json!({"type": "ClusterIP", "sessionAffinity": "None", "ports": [port(80, "a"), port(80, "b")]}),
        );
        assert_eq!(got, vec!["spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}"]);
    }

    #[test]
    fn node_ports_should_be_unique_per_protocol() {
        let with = |name: &str, protocol: &str, port: i64| json!({"port": port, "name": name, "protocol": protocol, "targetPort": port, "nodePort": 30053});
        let spec =
            |ports: Value| json!({"type": "NodePort", "sessionAffinity": "None", "ports": ports});
        let shared = spec(json!([with("dns", "UDP", 53), with("dns-tcp", "TCP", 53)]));
        assert!(texts(shared).is_empty());
        assert_eq!(
            texts(spec(json!([with("a", "UDP", 53), with("b", "UDP", 54)]))),
            vec!["spec.ports[1].nodePort: Duplicate value: 30053"]
        );
    }

    #[test]
    fn cluster_ip_should_be_immutable() {
        let old = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}});
        let new = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]}});
        let mut causes = Vec::new();
        validate_service_update(&new, &old, &mut causes);
        assert_eq!(causes.len(), 1);
        assert_eq!(
            (causes[0].field.as_str(), causes[0].message.as_str()),
            (
                "spec.clusterIPs[0]",
                "Invalid value: []string{\"10.96.0.11\"}: may not change once set"
            )
        );
        let mut causes = Vec::new();
        validate_service_update(&json!({"spec": {"type": "ClusterIP"}}), &old, &mut causes);
        assert_eq!(
            causes[0].message,
            "Invalid value: []string(nil): primary clusterIP can not be unset"
        );
        let mut causes = Vec::new();
        validate_service_update(&old, &old, &mut causes);
        assert!(causes.is_empty());
    }

    #[test]
    fn external_name_services_should_need_a_name() {
        assert_eq!(
            texts(json!({"type": "ExternalName", "sessionAffinity": "None"})),
            vec!["spec.externalName: Required value"]
        );
    }
}
