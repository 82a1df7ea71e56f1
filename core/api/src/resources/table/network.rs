//! Service, Endpoints and EndpointSlice rows: upstream's `printService`, `printEndpoints`, `printEndpointSlice`.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{format_labels, int, list, list_with_more, name, text};
use super::time::age;
use crate::pointer::Pointer;

/// The cells of a service row, in [`super::columns::SERVICE`] order.
pub(crate) fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let type_ = match text(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = list(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(svc, "/spec/clusterIP"));
    let ports: Vec<String> = list(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = match text(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            match int(p, "/nodePort") {
                n if n > 0 => format!("{}:{n}/{protocol}", int(p, "/port")),
                _ => format!("{}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    vec![
        name(svc),
        json!(type_),
        json!(if cluster_ip.is_empty() {
            "<none>"
        } else {
            cluster_ip
        }),
        json!(external_ip(svc, type_)),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        json!(age(text(svc, "/metadata/creationTimestamp"), now)),
        json!(format_labels(svc.at("/spec/selector"))),
    ]
}

/// Upstream's `getServiceExternalIP` (wide form: load-balancer addresses are not cut).
fn external_ip(svc: &Value, type_: &str) -> String {
    let external: Vec<&str> = list(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match type_ {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match text(i, "/ip") {
                    "" => text(i, "/hostname"),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external).collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `ip:port`, bracketing IPv6 addresses as Go's `net.JoinHostPort` does.
fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The cells of an endpoints row, in [`super::columns::ENDPOINTS`] order.
pub(crate) fn endpoints_cells(ep: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(ep),
        json!(format_endpoints(ep)),
        json!(age(text(ep, "/metadata/creationTimestamp"), now)),
    ]
}

/// Upstream's `formatEndpoints`: up to three `ip:port`, then `+ N more...`; `<none>` without subsets.
fn format_endpoints(ep: &Value) -> String {
    let subsets = list(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut all: Vec<String> = Vec::new();
    for ss in subsets {
        let addresses = list(ss, "/addresses");
        let ports = list(ss, "/ports");
        if ports.is_empty() {
            all.extend(addresses.iter().map(|a| text(a, "/ip").to_string()));
        } else {
            for port in ports {
                all.extend(
                    addresses
                        .iter()
                        .map(|a| host_port(text(a, "/ip"), int(port, "/port"))),
                );
            }
        }
    }
    const MAX: usize = 3;
    if all.len() > MAX {
        format!("{} + {} more...", all[..MAX].join(","), all.len() - MAX)
    } else {
        all.join(",")
    }
}

/// The cells of an EndpointSlice row, in [`super::columns::ENDPOINT_SLICE`] order.
pub(crate) fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list(slice, "/ports")
        .iter()
        .map(|p| {
            match (
                p.get("port").and_then(Value::as_i64),
                p.get("name").and_then(Value::as_str),
            ) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            }
        })
        .collect();
    let addresses: Vec<String> = list(slice, "/endpoints")
        .iter()
        .flat_map(|e| {
            list(e, "/addresses")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    vec![
        name(slice),
        json!(text(slice, "/addressType")),
        json!(list_with_more(&ports)),
        json!(list_with_more(&addresses)),
        json!(age(text(slice, "/metadata/creationTimestamp"), now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("now")
    }

    #[test]
    fn service_cells_should_show_ips_and_ports() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T09:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}
        });
        assert_eq!(
            service_cells(&svc, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("3h"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn service_cells_should_show_pending_and_assigned_load_balancers() {
        let mut svc = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"], "ports": [{"port": 443}]}});
        let cells = service_cells(&svc, now());
        assert_eq!(cells[3], "<pending>");
        assert_eq!(cells[4], "443/TCP");
        assert_eq!(cells[6], "<none>");
        svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example"}]}});
        assert_eq!(service_cells(&svc, now())[3], "203.0.113.9,lb.example");
        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(
            service_cells(&headless, now())[1..5],
            [
                json!("ClusterIP"),
                json!("None"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn endpoints_cells_should_list_three_then_count_the_rest() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 8080}]
        }]});
        assert_eq!(
            endpoints_cells(&ep, now())[1],
            "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 1 more..."
        );
        assert_eq!(
            endpoints_cells(&json!({"metadata": {"name": "x"}}), now())[1],
            "<none>"
        );
    }

    #[test]
    fn endpoint_slice_cells_should_show_ports_and_addresses() {
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        let cells = endpoint_slice_cells(&slice, now());
        assert_eq!(
            cells[1..4],
            [
                json!("IPv4"),
                json!("80,metrics"),
                json!("10.0.0.1,10.0.0.2")
            ]
        );
        assert_eq!(endpoint_slice_cells(&json!({}), now())[2], "<unset>");
    }
}
