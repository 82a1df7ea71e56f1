//! NodeResourcesBalancedAllocation (Score): favours nodes whose resource fractions stay even.
//!
//! Each fraction is `f = min(req/alloc, 1)` with `req` the node's requested amount
//! plus the pod's (actual requests, not the non-zero defaults); the spread is
//! `|f1 − f2|/2` for two resources, else the population standard deviation; the
//! score is `(1 − std)·100` (balanced_allocation.go). Best-effort pods skip it.

use serde::Deserialize;

use super::scoring::{default_resources, node_vectors, ResourceSpec, MAX_SCORED_RESOURCES};
use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// Args (`plugin_config`): the resources to balance (default cpu and memory).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancedArgs {
    /// Resources.
    pub resources: Vec<ResourceSpec>,
}

/// The balanced-allocation scorer.
#[derive(Debug)]
pub struct BalancedAllocation {
    resources: Vec<ResourceSpec>,
}

impl BalancedAllocation {
    /// Builds from args.
    pub fn new(args: &PluginArgs) -> Result<Self, PluginError> {
        let a: BalancedArgs = PluginError::parse_args(NAME, args)?;
        let resources = if a.resources.is_empty() {
            default_resources()
        } else {
            a.resources
        };
        if resources.len() > MAX_SCORED_RESOURCES {
            return Err(PluginError::BadArgs {
                plugin: NAME.into(),
                message: format!("resources: at most {MAX_SCORED_RESOURCES}"),
            });
        }
        Ok(BalancedAllocation { resources })
    }
}

/// `(1 − std)·100` over the fractions of resources with non-zero allocatable.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let mut buf = [0.0f64; MAX_SCORED_RESOURCES];
    let mut len = 0;
    for (&r, &a) in requested.iter().zip(allocatable).filter(|(_, &a)| a != 0) {
        if len < MAX_SCORED_RESOURCES {
            buf[len] = (r as f64 / a as f64).min(1.0);
            len += 1;
        }
    }
    let fractions = &buf[..len];
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &str {
        NAME
    }

    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::AssignedPodDelete,
        ]
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &NodeSnapshot<'_>,
        _feasible: &[u32],
    ) -> Status {
        if pod.requests.is_zero() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let (req, alloc) = node_vectors(node, pod, &self.resources, true);
        let n = self.resources.len();
        Ok(balanced_score(&req[..n], &alloc[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_score_should_match_hand_computed_values() {
        // cpu 3000/4000 = 0.75, memory 5/10 = 0.5: std = 0.125, (1 − 0.125)·100 = 87.
        assert_eq!(balanced_score(&[3000, 5], &[4000, 10]), 87);
        // Over-allocation caps at 1: |1 − 0.5|/2 = 0.25 -> 75.
        assert_eq!(balanced_score(&[9000, 5], &[4000, 10]), 75);
        // Three resources: 0.2, 0.4, 0.6: mean 0.4, std sqrt(0.08/3) = 0.1633 -> 83.
        assert_eq!(balanced_score(&[2, 4, 6], &[10, 10, 10]), 83);
        assert_eq!(balanced_score(&[1, 1], &[0, 0]), 100);
    }
}
