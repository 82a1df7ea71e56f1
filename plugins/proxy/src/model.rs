//! What the proxy should serve, computed from Services and EndpointSlices: one entry
//! per Service port with its ClusterIP, NodePort and the ready endpoints behind it.
//! Pure, so the rules (port names, readiness, headless and ExternalName services) are
//! unit-tested without a cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service port: `namespace/name:port-name` (kube-proxy's `ServicePortName`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name (empty for a Service's only, unnamed port).
    pub port: String,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}/{}", self.namespace, self.name)
        } else {
            write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
        }
    }
}

/// What one Service port needs from the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The ClusterIP (none for headless Services).
    pub cluster_ip: Option<IpAddr>,
    /// The Service port.
    pub port: u16,
    /// The NodePort, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`: a client stays on one endpoint.
    pub client_ip_affinity: bool,
    /// Ready endpoints, sorted.
    pub endpoints: Vec<SocketAddr>,
}

/// Every TCP Service port the proxy serves. UDP and SCTP ports, ExternalName and
/// headless Services are not proxied.
pub fn build(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> BTreeMap<ServicePortName, ServicePort> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let meta = &slice.metadata;
        let Some(service) = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
            continue;
        };
        let ns = meta.namespace.clone().unwrap_or_default();
        by_service
            .entry((ns, service.clone()))
            .or_default()
            .push(slice);
    }
    let mut out = BTreeMap::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let slices = by_service
            .get(&(ns.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let port_name = port.name.clone().unwrap_or_default();
            let node_port = match kind {
                "NodePort" | "LoadBalancer" => port.node_port.and_then(|p| u16::try_from(p).ok()),
                _ => None,
            };
            if cluster_ip.is_none() && node_port.is_none() {
                continue;
            }
            let Ok(service_port) = u16::try_from(port.port) else {
                continue;
            };
            out.insert(
                ServicePortName {
                    namespace: ns.clone(),
                    name: name.clone(),
                    port: port_name.clone(),
                },
                ServicePort {
                    cluster_ip,
                    port: service_port,
                    node_port,
                    client_ip_affinity: spec.session_affinity.as_deref() == Some("ClientIP"),
                    endpoints: ready_endpoints(slices, &port_name),
                },
            );
        }
    }
    out
}

/// The ready endpoints of a port name across a Service's slices (`ready` unset counts
/// as ready, as the API documents).
fn ready_endpoints(slices: &[&EndpointSlice], port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices {
        let port = slice.ports.iter().flatten().find_map(|p| {
            (p.name.as_deref().unwrap_or_default() == port_name)
                .then_some(p.port)
                .flatten()
        });
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            if let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}")))
    }

    fn slice(value: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}")))
    }

    fn web() -> Arc<Service> {
        service(json!({
            "metadata": { "name": "web", "namespace": "ns" },
            "spec": { "type": "NodePort", "clusterIP": "10.96.0.10", "ports": [
                { "name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP" },
                { "name": "dns", "port": 53, "protocol": "UDP" }
            ] }
        }))
    }

    fn web_slice(ready: &[(&str, Option<bool>)], port: i32) -> Arc<EndpointSlice> {
        let endpoints: Vec<_> = ready
            .iter()
            .map(|(ip, r)| json!({ "addresses": [ip], "conditions": { "ready": r } }))
            .collect();
        slice(json!({
            "metadata": { "name": "web-abc", "namespace": "ns", "labels": { SERVICE_NAME_LABEL: "web" } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": port }],
            "endpoints": endpoints
        }))
    }

    #[test]
    fn ready_endpoints_should_be_resolved_by_port_name() {
        let ports = build(
            &[web()],
            &[web_slice(
                &[
                    ("10.1.0.2", Some(true)),
                    ("10.1.0.3", None),
                    ("10.1.0.4", Some(false)),
                ],
                8080,
            )],
        );
        assert_eq!(ports.len(), 1, "the UDP port is not proxied");
        let (name, port) = ports.iter().next().unwrap_or_else(|| panic!("one port"));
        assert_eq!(name.to_string(), "ns/web:http");
        assert_eq!(port.node_port, Some(30080));
        assert_eq!(port.cluster_ip, "10.96.0.10".parse().ok());
        let endpoints: Vec<String> = port.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(endpoints, ["10.1.0.2:8080", "10.1.0.3:8080"]);
    }

    #[test]
    fn a_service_selecting_nothing_should_have_no_endpoints() {
        let ports = build(&[web()], &[]);
        assert_eq!(ports.values().next().map(|p| p.endpoints.len()), Some(0));
    }

    #[test]
    fn headless_and_external_name_services_should_be_skipped() {
        let headless = service(json!({ "metadata": { "name": "h", "namespace": "ns" },
            "spec": { "clusterIP": "None", "ports": [{ "port": 80 }] } }));
        let external = service(json!({ "metadata": { "name": "e", "namespace": "ns" },
            "spec": { "type": "ExternalName", "externalName": "example.org" } }));
        assert!(build(&[headless, external], &[]).is_empty());
    }
}
