//! NodeName (Filter): a pod that names a node may only run there.

use crate::cache::NodeInfo;
use crate::framework::{ClusterEvent, CycleState, FilterPlugin, Plugin, Status};
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "NodeName";

/// Upstream reason text.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// Rejects every node but `spec.nodeName`, when set.
#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &str {
        NAME
    }

    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd]
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match &pod.node_name {
            Some(n) if *n != node.name => Status::unresolvable(ERR_REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    #[test]
    fn filter_should_accept_only_the_named_node() {
        let pod = PodBuilder::new("p").node("n1").build();
        let s = CycleState::new();
        assert!(NodeName
            .filter(&s, &pod, &NodeInfo::ghost("n1"))
            .is_success());
        let st = NodeName.filter(&s, &pod, &NodeInfo::ghost("n2"));
        assert_eq!(st, Status::unresolvable(ERR_REASON));
        let free = PodBuilder::new("q").build();
        assert!(NodeName
            .filter(&s, &free, &NodeInfo::ghost("n2"))
            .is_success());
    }
}
