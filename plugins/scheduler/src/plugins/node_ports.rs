//! NodePorts (Filter): a pod's host ports must be free on the node.

use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "NodePorts";

/// Upstream reason text.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Rejects nodes where a requested host port (same protocol, overlapping IP) is taken.
#[derive(Debug, Default)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &str {
        NAME
    }

    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::AssignedPodDelete]
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &NodeSnapshot<'_>,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.host_ports.is_empty() {
            (None, Status::skip())
        } else {
            (None, Status::success())
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod.host_ports.iter().any(|p| node.port_conflicts(p)) {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::PodBuilder;

    #[test]
    fn filter_should_reject_a_taken_port() {
        let mut n = NodeInfo::ghost("n");
        n.add_pod(Arc::new(PodBuilder::new("a").host_port(80).build()));
        let s = CycleState::new();
        let same = PodBuilder::new("b").host_port(80).build();
        let other = PodBuilder::new("c").host_port(81).build();
        assert_eq!(
            NodePorts.filter(&s, &same, &n),
            Status::unschedulable(ERR_REASON)
        );
        assert!(NodePorts.filter(&s, &other, &n).is_success());
    }
}
