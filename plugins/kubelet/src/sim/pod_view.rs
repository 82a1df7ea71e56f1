//! The little the sim kubelet keeps of a watched pod until a worker syncs it: identity,
//! node, phase, address and the facts its status is built from.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::fleet::Fleet;
use crate::pod_status::PodFacts;
use crate::watched_pod::WatchedPod;

/// Where a pod is in its life, as far as the sim kubelet cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not (yet) reported running.
    Pending,
    /// Reported running.
    Running,
    /// `Succeeded` or `Failed`: nothing runs any more.
    Finished,
}

/// The little of a watched Pod the sim kubelet keeps until a worker syncs it.
pub(super) struct PodView {
    /// `metadata.uid`.
    pub uid: Box<str>,
    /// Index of its node in the fleet.
    pub node: u32,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.phase`.
    pub phase: Phase,
    /// `status.podIP`.
    pub pod_ip: Option<Ipv4Addr>,
    /// What its status is built from.
    pub facts: PodFacts,
}

impl PodView {
    /// The view of `pod` if it is bound to one of `fleet`'s nodes.
    pub(super) fn of(pod: &WatchedPod, fleet: &Fleet) -> Option<PodView> {
        let node = fleet.index_of(node_of(pod))?;
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => Phase::Running,
            Some("Succeeded" | "Failed") => Phase::Finished,
            _ => Phase::Pending,
        };
        Some(PodView {
            uid: pod.metadata.uid.as_deref().unwrap_or_default().into(),
            node,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            phase,
            pod_ip: status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok()),
            facts: PodFacts::of(pod),
        })
    }

    /// True when the pod is reported running as we run it (our own status coming back).
    pub(super) fn reported_as(&self, ip: Option<Ipv4Addr>) -> bool {
        self.phase == Phase::Running
            && (self.facts.host_network || (ip.is_some() && ip == self.pod_ip))
    }
}

/// The pod's key: `namespace/name`.
pub(super) fn key_of(pod: &WatchedPod) -> Arc<str> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    format!("{ns}/{name}").into()
}

/// The node the pod is bound to (empty when unbound).
fn node_of(pod: &WatchedPod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KubeletConfig;

    fn fleet() -> Fleet {
        let config: KubeletConfig =
            toml::from_str("runtime = \"sim\"\nnodes = 10").expect("config");
        Fleet::new(&config, "sim://test".into())
    }

    fn pod(node: &str, status: serde_json::Value) -> WatchedPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": status,
        }))
        .expect("pod")
    }

    #[test]
    fn view_should_only_exist_for_pods_on_our_nodes() {
        let f = fleet();
        assert!(PodView::of(&pod("other", serde_json::json!({})), &f).is_none());
        let v = PodView::of(&pod("sim-node-4", serde_json::json!({})), &f).expect("ours");
        assert_eq!(v.node, 4);
        assert_eq!(v.phase, Phase::Pending);
        assert_eq!(&*v.uid, "u1");
        assert_eq!(&*key_of(&pod("sim-node-4", serde_json::json!({}))), "ns/p");
    }

    #[test]
    fn reported_as_should_need_running_and_the_same_ip() {
        let f = fleet();
        let running = pod(
            "sim-node-1",
            serde_json::json!({"phase": "Running", "podIP": "10.128.1.2"}),
        );
        let v = PodView::of(&running, &f).expect("ours");
        assert!(v.reported_as(Some(Ipv4Addr::new(10, 128, 1, 2))));
        assert!(!v.reported_as(Some(Ipv4Addr::new(10, 128, 1, 3))));
        assert!(!v.reported_as(None));
        let pending = PodView::of(
            &pod("sim-node-1", serde_json::json!({"podIP": "10.128.1.2"})),
            &f,
        )
        .expect("ours");
        assert!(!pending.reported_as(Some(Ipv4Addr::new(10, 128, 1, 2))));
    }
}
