//! PodTopologySpread (Filter, Score): spread matching pods evenly over topology domains.
//!
//! `DoNotSchedule` constraints filter (skew = matching pods in the node's domain +
//! the pod itself − the minimum over domains must not exceed `maxSkew`);
//! `ScheduleAnyway` constraints score. System default constraints (derived from
//! Services and ReplicaSets) are not applied: this pure core has no listers.

mod filtering;
mod scoring;

use crate::cache::NodeInfo;
use crate::framework::Plugin;
use crate::plugins::helpers::{find_untolerated, is_hard_effect, matches_node_affinity};
use crate::pod_info::{PodInfo, SpreadConstraint};

/// Plugin name.
pub const NAME: &str = "PodTopologySpread";

/// Reason when a node violates a constraint.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// Reason when a node lacks a constraint's topology label.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The topology spread plugin.
#[derive(Debug, Default)]
pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &str {
        NAME
    }
}

/// Whether `node` counts for constraint `c` (node affinity and taint policies).
fn node_included(pod: &PodInfo, c: &SpreadConstraint, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || matches_node_affinity(pod, node))
        && (!c.honor_node_taints
            || find_untolerated(&node.taints, &pod.tolerations, is_hard_effect).is_none())
}

/// Whether the node has every constraint's topology label.
fn has_all_keys<'a>(
    mut constraints: impl Iterator<Item = &'a SpreadConstraint>,
    node: &NodeInfo,
) -> bool {
    let labels = node.labels();
    constraints.all(|c| labels.contains_key(&c.topology_key))
}

/// Pods on the node in the pod's namespace, not terminating, matching the constraint's selector.
fn count_matching(node: &NodeInfo, c: &SpreadConstraint, namespace: &str) -> i64 {
    node.pods
        .iter()
        .filter(|p| !p.terminating && p.namespace == namespace && c.selector.matches(p.labels()))
        .count() as i64
}

#[cfg(test)]
mod tests;
