//! TaintToleration (Filter, Score): hard taints must be tolerated; fewer untolerated soft taints score higher.

use k8s_openapi::api::core::v1::Toleration;

use super::helpers::{default_normalize_score, find_untolerated, is_hard_effect, tolerates};
use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "TaintToleration";

const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// Filters on `NoSchedule`/`NoExecute` taints; scores by untolerated `PreferNoSchedule` taints.
#[derive(Debug, Default)]
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &str {
        NAME
    }

    fn events_to_register(&self) -> &'static [ClusterEvent] {
        ClusterEvent::NODE_CHANGES
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match find_untolerated(&node.taints, &pod.tolerations, is_hard_effect) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
}

/// Tolerations that can tolerate `PreferNoSchedule` taints (empty or that effect).
#[derive(Clone)]
struct PreferTolerations(Vec<Toleration>);

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &NodeSnapshot<'_>,
        _feasible: &[u32],
    ) -> Status {
        let tolerations = pod
            .tolerations
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreferTolerations(tolerations));
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    /// Raw score: the number of `PreferNoSchedule` taints no toleration tolerates.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        if node.taints.is_empty() {
            return Ok(0);
        }
        let tolerations = &state.get::<PreferTolerations>(PRE_SCORE_KEY)?.0;
        let count = node
            .taints
            .iter()
            .filter(|taint| {
                taint.effect == "PreferNoSchedule"
                    && !tolerations.iter().any(|t| tolerates(t, taint))
            })
            .count();
        Ok(count as i64)
    }

    /// Fewer untolerated taints is better: `DefaultNormalizeScore(100, reverse)`.
    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
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
    fn filter_should_name_the_untolerated_taint() {
        let n = node(NodeBuilder::new("n").taint("dedicated", "gpu", "NoSchedule"));
        let s = CycleState::new();
        let st = TaintToleration.filter(&s, &PodBuilder::new("p").build(), &n);
        assert_eq!(
            st,
            Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}")
        );
        let ok = PodBuilder::new("p")
            .toleration("dedicated", "Equal", "gpu", "NoSchedule")
            .build();
        assert!(TaintToleration.filter(&s, &ok, &n).is_success());
        let soft = node(NodeBuilder::new("n").taint("a", "b", "PreferNoSchedule"));
        assert!(TaintToleration
            .filter(&s, &PodBuilder::new("p").build(), &soft)
            .is_success());
    }

    #[test]
    fn score_should_count_untolerated_soft_taints_and_reverse() {
        let pod = PodBuilder::new("p")
            .toleration("a", "Exists", "", "PreferNoSchedule")
            .build();
        let mut s = CycleState::new();
        let cache = crate::cache::Cache::new();
        TaintToleration.pre_score(&mut s, &pod, &NodeSnapshot::new(&cache), &[]);
        let clean = node(NodeBuilder::new("n"));
        let one = node(
            NodeBuilder::new("n")
                .taint("a", "", "PreferNoSchedule")
                .taint("b", "", "PreferNoSchedule"),
        );
        let two = node(
            NodeBuilder::new("n")
                .taint("b", "", "PreferNoSchedule")
                .taint("c", "", "PreferNoSchedule"),
        );
        let mut raw: Vec<i64> = [&clean, &one, &two]
            .iter()
            .map(|n| TaintToleration.score(&s, &pod, n).expect("score"))
            .collect();
        assert_eq!(raw, vec![0, 1, 2]);
        // reverse: 100 - 100·raw/2.
        TaintToleration.normalize_scores(&s, &pod, &mut raw);
        assert_eq!(raw, vec![100, 50, 0]);
    }
}
