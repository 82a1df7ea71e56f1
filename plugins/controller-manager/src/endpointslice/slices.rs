//! The EndpointSlices of a Service: one endpoint per pod with its ready, serving
//! and terminating conditions, grouped by the ports the pods resolve to and cut
//! into slices of at most [`MAX_ENDPOINTS_PER_SLICE`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::endpoints::endpoint_labels;
use crate::pods::{controller_ref, is_ready};
use crate::services::{
    hostname, node_name, pod_ip, pod_ref, publishes_not_ready, resolve_port, should_be_in_endpoints,
};

/// Most endpoints in one slice (upstream `--max-endpoints-per-slice`, 100).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// The ports of the Service as resolved on `pod`; `None` when the Service has
/// ports and none resolves.
fn ports_on(service: &Service, pod: &Pod) -> Option<Vec<EndpointPort>> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let resolved: Vec<EndpointPort> = ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(resolve_port(pod, p)?),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    (ports.is_empty() || !resolved.is_empty()).then_some(resolved)
}

/// The endpoint of one pod (`serving` when ready or published not-ready, `ready`
/// when serving and not terminating).
fn endpoint_of(service: &Service, pod: &Pod) -> Endpoint {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let serving = publishes_not_ready(service) || is_ready(pod);
    Endpoint {
        addresses: vec![pod_ip(pod)],
        conditions: Some(EndpointConditions {
            ready: Some(serving && !terminating),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(pod, service),
        node_name: node_name(pod),
        target_ref: Some(pod_ref(pod)),
        ..Endpoint::default()
    }
}

/// FNV-1a, for slice names that stay the same across restarts.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The slices `service` should have for `pods` (the pods its selector matches),
/// each named after the Service, its port set and its place; a Service without
/// endpoints gets one empty placeholder slice.
pub fn desired_slices(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSlice> {
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ports) = ports_on(service, pod) else {
            continue;
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (ports, vec![]))
            .1
            .push(endpoint_of(service, pod));
    }
    if groups.is_empty() {
        groups.insert(String::new(), (vec![], vec![]));
    }
    let name = service.metadata.name.clone().unwrap_or_default();
    let labels = endpoint_labels(
        service,
        &[(SERVICE_NAME_LABEL, &name), (MANAGED_BY_LABEL, MANAGED_BY)],
    );
    let mut slices = Vec::new();
    for (key, (ports, mut endpoints)) in groups {
        endpoints.sort_by(|a, b| {
            let name = |e: &Endpoint| e.target_ref.as_ref().and_then(|r| r.name.clone());
            (&a.addresses, name(a)).cmp(&(&b.addresses, name(b)))
        });
        let chunks: Vec<Vec<Endpoint>> = if endpoints.is_empty() {
            vec![vec![]]
        } else {
            endpoints
                .chunks(MAX_ENDPOINTS_PER_SLICE)
                .map(<[Endpoint]>::to_vec)
                .collect()
        };
        for (i, chunk) in chunks.into_iter().enumerate() {
            slices.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{:08x}", fnv(&format!("{key}/{i}")))),
                    namespace: service.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![controller_ref(service)]),
                    ..ObjectMeta::default()
                },
                address_type: "IPv4".into(),
                endpoints: chunk,
                ports: (!ports.is_empty()).then(|| ports.clone()),
            });
        }
    }
    slices
}

/// True when `current` already holds what `desired` says (ignoring server-set metadata).
pub fn up_to_date(current: &EndpointSlice, desired: &EndpointSlice) -> bool {
    current.address_type == desired.address_type
        && current.endpoints == desired.endpoints
        && current.ports.clone().unwrap_or_default() == desired.ports.clone().unwrap_or_default()
        && current.metadata.labels == desired.metadata.labels
        && current.metadata.owner_references == desired.metadata.owner_references
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": name},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": 8080}]}]},
                "status": {"podIP": ip, "phase": "Running", "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .expect("pod"),
        )
    }

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        }))
        .expect("service")
    }

    #[test]
    fn slices_should_hold_every_pod_with_its_conditions() {
        let pods = vec![pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", false)];
        let slices = desired_slices(&service(), &pods);
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(s.address_type, "IPv4");
        let ready: Vec<Option<bool>> = s
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().and_then(|c| c.ready))
            .collect();
        assert_eq!(ready, [Some(true), Some(false)]);
        assert_eq!(s.ports.as_ref().expect("ports")[0].port, Some(8080));
        let labels = s.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(
            s.metadata.owner_references.as_ref().expect("owner")[0].uid,
            "svc-uid"
        );
        assert!(up_to_date(s, &desired_slices(&service(), &pods)[0]));
    }

    #[test]
    fn slices_should_split_past_the_limit_and_keep_a_placeholder() {
        let pods: Vec<Arc<Pod>> = (0..150)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                )
            })
            .collect();
        let slices = desired_slices(&service(), &pods);
        assert_eq!(slices.len(), 2);
        assert_ne!(slices[0].metadata.name, slices[1].metadata.name);
        let empty = desired_slices(&service(), &[]);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].endpoints.is_empty());
    }
}
