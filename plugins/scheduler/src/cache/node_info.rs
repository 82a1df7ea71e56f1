//! `NodeInfo`: one node with its allocatable resources, its pods and what they use.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};
use kubernel_scheduler_sdk::{LabelPair, TaintEntry};

use crate::pod_info::{HostPort, PodInfo};
use crate::resources::{QuantityError, Resource};
use crate::selectors::{Labels, NO_LABELS};

/// A node as the scheduler sees it: the API object plus the pods placed on it.
///
/// `requested` sums the pods' effective requests; `non_zero_*` sum them with unset
/// requests counted as 100m CPU / 200 MiB, as scoring does. Assumed pods count as
/// placed.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// The API object; `None` for a node deleted while pods still reference it.
    pub node: Option<Arc<Node>>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `status.allocatable`.
    pub allocatable: Resource,
    /// Sum of the pods' requests.
    pub requested: Resource,
    /// Sum of the pods' CPU requests with non-zero defaults.
    pub non_zero_milli_cpu: i64,
    /// Sum of the pods' memory requests with non-zero defaults.
    pub non_zero_memory: i64,
    /// Pods on the node, assumed ones included.
    pub pods: Vec<Arc<PodInfo>>,
    /// Pods with any pod (anti-)affinity term.
    pub pods_with_affinity: usize,
    /// Pods with required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
    /// Host ports in use, one entry per binding pod.
    pub used_ports: Vec<HostPort>,
    /// Interned labels, sorted by key id (for out-of-tree plugins).
    pub(crate) label_ids: Vec<LabelPair>,
    /// Interned taints (for out-of-tree plugins).
    pub(crate) taint_ids: Vec<TaintEntry>,
    /// Bumped on every change.
    pub generation: u64,
}

impl NodeInfo {
    /// A node without an API object (its pods arrived first, or it was deleted).
    pub fn ghost(name: &str) -> Self {
        NodeInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Replaces the API object, keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) -> Result<(), QuantityError> {
        let status = node.status.as_ref();
        self.allocatable = match status.and_then(|s| s.allocatable.as_ref()) {
            Some(list) => Resource::from_list(list)?,
            None => Resource::default(),
        };
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.node = Some(node);
        self.generation += 1;
        Ok(())
    }

    /// The node's labels.
    pub fn labels(&self) -> &Labels {
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&NO_LABELS)
    }

    /// Places a pod on the node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_milli_cpu += pod.non_zero_milli_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_pod_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes the pod with `uid`, returning it.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let at = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests);
        self.non_zero_milli_cpu -= pod.non_zero_milli_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if pod.has_pod_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        self.generation += 1;
        Some(pod)
    }

    /// Whether `port` conflicts with a port in use: same protocol and port, and the
    /// same IP or either side binding every address (`0.0.0.0`).
    pub fn port_conflicts(&self, port: &HostPort) -> bool {
        self.used_ports.iter().any(|u| {
            u.port == port.port
                && u.protocol == port.protocol
                && (u.ip == port.ip || u.ip == "0.0.0.0" || port.ip == "0.0.0.0")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn node_info_should_track_requests_and_ports_of_its_pods() {
        let mut n = NodeInfo::ghost("n1");
        n.set_node(Arc::new(
            NodeBuilder::new("n1").cpu("4").memory("8Gi").build(),
        ))
        .expect("node");
        let a = Arc::new(PodBuilder::new("a").cpu("500m").host_port(80).build());
        let b = Arc::new(PodBuilder::new("b").build());
        n.add_pod(a.clone());
        n.add_pod(b);
        assert_eq!(n.requested.milli_cpu, 500);
        // b has no requests: 100m / 200 MiB when scoring.
        assert_eq!(n.non_zero_milli_cpu, 600);
        assert!(n.port_conflicts(&HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80
        }));
        assert!(!n.port_conflicts(&HostPort {
            ip: "0.0.0.0".into(),
            protocol: "UDP".into(),
            port: 80
        }));
        n.remove_pod(&a.uid).expect("removed");
        assert_eq!((n.requested.milli_cpu, n.non_zero_milli_cpu), (0, 100));
        assert!(n.used_ports.is_empty());
        assert_eq!(n.allocatable.milli_cpu, 4000);
    }
}
