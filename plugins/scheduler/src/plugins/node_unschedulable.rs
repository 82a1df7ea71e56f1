//! NodeUnschedulable (Filter): cordoned nodes take only pods that tolerate the cordon taint.

use k8s_openapi::api::core::v1::Taint;

use super::helpers::tolerates;
use crate::cache::NodeInfo;
use crate::framework::{ClusterEvent, CycleState, FilterPlugin, Plugin, Status};
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "NodeUnschedulable";

/// Upstream reason text.
pub const ERR_REASON: &str = "node(s) were unschedulable";

/// Rejects nodes with `spec.unschedulable` unless the pod tolerates
/// `node.kubernetes.io/unschedulable:NoSchedule`.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &str {
        NAME
    }

    fn events_to_register(&self) -> &'static [ClusterEvent] {
        ClusterEvent::NODE_CHANGES
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        };
        if pod.tolerations.iter().any(|t| tolerates(t, &cordon)) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    #[test]
    fn filter_should_reject_cordoned_nodes_unless_tolerated() {
        let mut n = NodeInfo::ghost("n1");
        n.set_node(Arc::new(NodeBuilder::new("n1").unschedulable().build()))
            .expect("node");
        let s = CycleState::new();
        let plain = PodBuilder::new("p").build();
        assert_eq!(
            NodeUnschedulable.filter(&s, &plain, &n),
            Status::unresolvable(ERR_REASON)
        );
        let tolerant = PodBuilder::new("t")
            .toleration(
                "node.kubernetes.io/unschedulable",
                "Exists",
                "",
                "NoSchedule",
            )
            .build();
        assert!(NodeUnschedulable.filter(&s, &tolerant, &n).is_success());
    }
}
