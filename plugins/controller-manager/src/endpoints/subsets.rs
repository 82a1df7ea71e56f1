//! The Endpoints subsets of a Service: its pods' addresses grouped by the ports
//! they resolve to, ready ones in `addresses`, the others in `notReadyAddresses`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Pod, Service};

use crate::pods::is_ready;
use crate::services::{
    hostname, node_name, pod_ip, pod_ref, publishes_not_ready, resolve_port, should_be_in_endpoints,
};

/// The ports of the Service as resolved on `pod`; `None` when the Service has
/// ports and none resolves (the pod serves none of them).
fn ports_on(service: &Service, pod: &Pod) -> Option<Vec<EndpointPort>> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let resolved: Vec<EndpointPort> = ports
        .iter()
        .filter_map(|p| {
            let port = resolve_port(pod, p);
            if port.is_none() {
                tracing::debug!(pod = ?pod.metadata.name, port = ?p.name, "named port not found on the pod");
            }
            Some(EndpointPort {
                name: p.name.clone(),
                port: port?,
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    (ports.is_empty() || !resolved.is_empty()).then_some(resolved)
}

/// The subsets the Endpoints of `service` should hold for `pods` (the pods its
/// selector matches), sorted so that equal inputs give equal output.
pub fn desired_subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = publishes_not_ready(service);
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(ports) = ports_on(service, pod) else {
            continue;
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let address = EndpointAddress {
            ip: pod_ip(pod),
            hostname: hostname(pod, service),
            node_name: node_name(pod),
            target_ref: Some(pod_ref(pod)),
        };
        let group = groups.entry(key).or_insert_with(|| (ports, vec![], vec![]));
        if publish || is_ready(pod) {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
        (&a.ip, a.target_ref.as_ref().map(|r| &r.name))
            .cmp(&(&b.ip, b.target_ref.as_ref().map(|r| &r.name)))
    };
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": name},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                    {"name": port_name, "containerPort": 8080}]}]},
                "status": {"podIP": ip, "phase": "Running", "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn subsets_should_split_ready_and_not_ready_and_resolve_named_ports() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        }))
        .expect("service");
        let pods = vec![
            pod("b", "10.0.0.2", true, "http"),
            pod("a", "10.0.0.1", true, "http"),
            pod("c", "10.0.0.3", false, "http"),
            pod("d", "10.0.0.4", true, "other"),
        ];
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        let s = &subsets[0];
        let ips = |a: &Option<Vec<EndpointAddress>>| {
            a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&s.addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&s.not_ready_addresses), ["10.0.0.3"]);
        let ports = s.ports.as_ref().expect("ports");
        assert_eq!(ports[0].port, 8080);
        assert_eq!(
            s.addresses.as_ref().expect("addresses")[0]
                .node_name
                .as_deref(),
            Some("n1")
        );
    }
}
