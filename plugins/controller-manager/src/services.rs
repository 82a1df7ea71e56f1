//! Service and pod helpers the Endpoints and EndpointSlice controllers share:
//! which Services select a pod, which pods back a Service, and how a Service
//! port resolves on a pod (`podutil.FindPort`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubernel_client::{Cache, Change, WorkQueue};

use crate::controller::key_of;

/// The Service's `spec.selector`, when it has a non-empty one (the controllers
/// manage endpoints only for those).
pub fn selector_of(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// True when `selector` selects an object with `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
}

/// The pods of the Service's namespace its selector matches (none without a selector).
pub fn pods_of(service: &Service, pods: &Cache<Pod>) -> Vec<Arc<Pod>> {
    let Some(selector) = selector_of(service) else {
        return Vec::new();
    };
    let ns = service.metadata.namespace.as_deref();
    pods.filter(|p| {
        p.metadata.namespace.as_deref() == ns && selects(selector, p.metadata.labels.as_ref())
    })
}

/// Keys of the Services of the pod's namespace whose selector matches the pod.
fn services_selecting(pod: &Pod, services: &Cache<Service>) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref();
    services
        .filter(|s| {
            s.metadata.namespace.as_deref() == ns
                && selector_of(s).is_some_and(|sel| selects(sel, pod.metadata.labels.as_ref()))
        })
        .iter()
        .map(|s| key_of(&**s))
        .collect()
}

/// Queues every Service that selects the changed pod, by its old or its new labels.
pub fn enqueue_for_pod(change: Change<Pod>, services: &Cache<Service>, queue: &WorkQueue<String>) {
    let mut keys = match change {
        Change::Added(pod) | Change::Deleted(pod) => services_selecting(&pod, services),
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let mut keys = services_selecting(&new, services);
            if old.metadata.labels != new.metadata.labels {
                keys.extend(services_selecting(&old, services));
            }
            keys
        }
        Change::Synced => return,
    };
    keys.sort();
    keys.dedup();
    for key in keys {
        queue.add(key);
    }
}

/// True when the pod belongs in the Service's endpoints: it has an IP, has not
/// finished, and is not terminating unless `include_terminating`
/// (`endpointutil.ShouldPodBeInEndpoints`).
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    if status
        .and_then(|s| s.pod_ip.as_deref())
        .is_none_or(str::is_empty)
    {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IP (only meaningful once [`should_be_in_endpoints`] holds).
pub fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// True when the Service publishes pods before they are ready.
pub fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The port number `port` targets on `pod`: a numeric `targetPort` as is, a named
/// one looked up among the pod's container ports of the same protocol, `port`
/// itself without a `targetPort`; `None` when the name is not found.
pub fn resolve_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// A `targetRef` to the pod.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The pod's `nodeName`, if bound.
pub fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// The pod's DNS hostname within the Service, when its `subdomain` names the Service.
pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    (spec.subdomain.is_some() && spec.subdomain == service.metadata.name)
        .then(|| spec.hostname.clone())
        .flatten()
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            ]}]},
            "status": {"podIP": "10.0.0.1", "phase": "Running"},
        }))
        .expect("pod")
    }

    fn port(v: serde_json::Value) -> ServicePort {
        serde_json::from_value(v).expect("port")
    }

    #[test]
    fn resolve_port_should_look_up_named_ports_by_protocol() {
        let p = pod();
        assert_eq!(
            resolve_port(&p, &port(json!({"port": 80, "targetPort": "http"}))),
            Some(8080)
        );
        assert_eq!(
            resolve_port(&p, &port(json!({"port": 80, "targetPort": 9090}))),
            Some(9090)
        );
        assert_eq!(resolve_port(&p, &port(json!({"port": 80}))), Some(80));
        assert_eq!(
            resolve_port(&p, &port(json!({"port": 53, "targetPort": "dns"}))),
            None,
            "dns is UDP, the service port TCP"
        );
        assert_eq!(
            resolve_port(
                &p,
                &port(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}))
            ),
            Some(53)
        );
    }

    #[test]
    fn endpoints_should_skip_pods_without_ip_or_terminating() {
        let mut p = pod();
        assert!(should_be_in_endpoints(&p, false));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        assert!(!should_be_in_endpoints(&p, false));
        assert!(should_be_in_endpoints(&p, true));
        let mut q = pod();
        q.status = None;
        assert!(!should_be_in_endpoints(&q, true));
    }
}
