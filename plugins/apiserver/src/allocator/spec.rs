//! What a Service spec asks of the pools and what a stored Service holds from them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

/// The `type` of a Service spec (`ClusterIP` when unset).
pub(super) fn service_type(spec: &Value) -> &str {
    text(spec, "type").unwrap_or("ClusterIP")
}

/// A string field of `v`, if set.
pub(super) fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// Every type but `ExternalName` has a cluster IP (or is headless).
pub(super) fn needs_cluster_ip(spec: &Value) -> bool {
    service_type(spec) != "ExternalName"
}

/// `clusterIP: None`.
fn is_headless(spec: &Value) -> bool {
    text(spec, "clusterIP") == Some("None")
}

/// `NodePort` and `LoadBalancer` Services have node ports.
pub(super) fn needs_node_ports(spec: &Value) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

/// Whether ports without a `nodePort` get one (not for a `LoadBalancer` with
/// `allocateLoadBalancerNodePorts: false`, whose requested ports are still honoured).
fn allocates_node_ports(spec: &Value) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)),
        _ => false,
    }
}

/// A `LoadBalancer` with `externalTrafficPolicy: Local` has a `healthCheckNodePort`.
pub(super) fn needs_health_check_port(spec: &Value) -> bool {
    service_type(spec) == "LoadBalancer" && text(spec, "externalTrafficPolicy") == Some("Local")
}

/// The cluster IPs of a spec: `clusterIPs`, else `[clusterIP]`, else none.
fn cluster_ips(spec: &Value) -> Vec<String> {
    let listed: Vec<String> = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match (listed.is_empty(), text(spec, "clusterIP")) {
        (false, _) => listed,
        (true, Some(ip)) if !ip.is_empty() => vec![ip.to_string()],
        _ => Vec::new(),
    }
}

/// The values a Service holds from the pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Held {
    /// Cluster IPs.
    pub(super) ips: BTreeSet<Ipv4Addr>,
    /// Node ports and health check node ports.
    pub(super) ports: BTreeSet<u16>,
}

impl Held {
    /// What a stored (or about to be stored) Service holds: its IPv4 cluster IP
    /// unless headless or `ExternalName`, and for `NodePort`/`LoadBalancer` its
    /// node ports and health check port.
    pub(super) fn of(service: &Value) -> Held {
        let mut held = Held::default();
        let Some(spec) = service.get("spec") else {
            return held;
        };
        if needs_cluster_ip(spec) && !is_headless(spec) {
            held.ips.extend(
                cluster_ips(spec)
                    .iter()
                    .filter_map(|ip| ip.parse::<Ipv4Addr>().ok()),
            );
        }
        if needs_node_ports(spec) {
            let ports = spec.get("ports").and_then(Value::as_array);
            held.ports.extend(
                ports
                    .into_iter()
                    .flatten()
                    .filter_map(|p| node_port(p, "nodePort")),
            );
        }
        if needs_health_check_port(spec) {
            held.ports.extend(node_port(spec, "healthCheckNodePort"));
        }
        held
    }

    /// What `self` holds and `other` does not.
    pub(super) fn minus(&self, other: &Held) -> Held {
        Held {
            ips: self.ips.difference(&other.ips).copied().collect(),
            ports: self.ports.difference(&other.ports).copied().collect(),
        }
    }
}

/// A non-zero port number stored in `field` of `v`.
fn node_port(v: &Value, field: &str) -> Option<u16> {
    v.get(field)
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

/// What a Service spec asks of the pools, read before the spec is filled in.
pub(super) struct Wants {
    /// Not `ExternalName`.
    pub(super) cluster_ip: bool,
    /// `clusterIP: None`.
    pub(super) headless: bool,
    /// `NodePort` or `LoadBalancer`.
    pub(super) node_ports: bool,
    /// Ports without a `nodePort` get one.
    pub(super) allocates_node_ports: bool,
    /// `Some` when it needs a health check node port: the one asked for, if any.
    pub(super) health_check_port: Option<Option<u16>>,
    /// The cluster IPs asked for.
    pub(super) ips: Vec<String>,
}

impl Wants {
    /// What `spec` asks for.
    pub(super) fn of(spec: &Value) -> Wants {
        Wants {
            cluster_ip: needs_cluster_ip(spec),
            headless: is_headless(spec),
            node_ports: needs_node_ports(spec),
            allocates_node_ports: allocates_node_ports(spec),
            health_check_port: needs_health_check_port(spec)
                .then(|| node_port(spec, "healthCheckNodePort")),
            ips: cluster_ips(spec),
        }
    }
}
