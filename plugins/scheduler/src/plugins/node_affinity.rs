//! NodeAffinity (Filter, Score): `nodeSelector` and required node affinity filter; preferred terms score.

use super::helpers::{default_normalize_score, matches_node_affinity};
use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "NodeAffinity";

/// Upstream reason text.
pub const ERR_REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Node selection by labels (and `metadata.name` fields).
#[derive(Debug, Default)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &str {
        NAME
    }

    fn events_to_register(&self) -> &'static [ClusterEvent] {
        ClusterEvent::NODE_CHANGES
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &NodeSnapshot<'_>,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.node_selector.is_empty() && pod.required_node_affinity.is_none() {
            return (None, Status::skip());
        }
        (None, Status::success())
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if matches_node_affinity(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &NodeSnapshot<'_>,
        _feasible: &[u32],
    ) -> Status {
        if pod.preferred_node_affinity.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for NodeAffinity {
    /// Raw score: the sum of the weights of the preferred terms the node matches.
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        Ok(pod
            .preferred_node_affinity
            .iter()
            .filter(|(_, term)| term.matches(&node.name, node.labels()))
            .map(|(w, _)| i64::from(*w))
            .sum())
    }

    /// `DefaultNormalizeScore(100, false)`: scaled by the highest sum.
    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn node(b: NodeBuilder) -> NodeInfo {
        let mut n = NodeInfo::ghost("n");
        n.set_node(Arc::new(b.build())).expect("node");
        n
    }

    #[test]
    fn filter_should_require_selector_and_required_terms() {
        let s = CycleState::new();
        let pod = PodBuilder::new("p")
            .node_selector("disk", "ssd")
            .require_node_label("zone", &["a", "b"])
            .build();
        let good = node(
            NodeBuilder::new("n")
                .label("disk", "ssd")
                .label("zone", "b"),
        );
        let no_zone = node(NodeBuilder::new("n").label("disk", "ssd"));
        let hdd = node(
            NodeBuilder::new("n")
                .label("disk", "hdd")
                .label("zone", "a"),
        );
        assert!(NodeAffinity.filter(&s, &pod, &good).is_success());
        assert_eq!(
            NodeAffinity.filter(&s, &pod, &no_zone),
            Status::unresolvable(ERR_REASON)
        );
        assert_eq!(
            NodeAffinity.filter(&s, &pod, &hdd),
            Status::unresolvable(ERR_REASON)
        );
    }

    #[test]
    fn score_should_sum_matching_weights_then_normalise() {
        let s = CycleState::new();
        let pod = PodBuilder::new("p")
            .prefer_node_label(20, "zone", "a")
            .prefer_node_label(60, "disk", "ssd")
            .build();
        let nodes = [
            node(NodeBuilder::new("n").label("zone", "a")),
            node(
                NodeBuilder::new("n")
                    .label("zone", "a")
                    .label("disk", "ssd"),
            ),
            node(NodeBuilder::new("n")),
        ];
        let mut raw: Vec<i64> = nodes
            .iter()
            .map(|n| NodeAffinity.score(&s, &pod, n).expect("score"))
            .collect();
        assert_eq!(raw, vec![20, 80, 0]);
        // 100·20/80 = 25.
        NodeAffinity.normalize_scores(&s, &pod, &mut raw);
        assert_eq!(raw, vec![25, 100, 0]);
    }
}
