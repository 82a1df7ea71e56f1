//! One trait per extension point, as in the upstream Go framework interfaces.
//!
//! A plugin type implements the traits of the points it extends and its factory
//! registers it with [`super::PluginInstance`]. All plugins are `Send + Sync`: the
//! framework may call Filter and Score from several threads at once.

use std::time::Duration;

use super::{
    ClusterEvent, CycleState, FilterRunner, NodeSnapshot, NodeStatusMap, PostFilterResult,
    PreFilterResult, QueuedPodInfo, Status,
};
use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;

/// What every plugin has: a name and the cluster events that may undo its rejections.
pub trait Plugin: Send + Sync {
    /// The plugin's name, as configured in profiles.
    fn name(&self) -> &str;

    /// Events after which a pod this plugin rejected is worth retrying (default: all).
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        ClusterEvent::ALL
    }
}

/// QueueSort: orders the active queue. Exactly one per scheduler.
pub trait QueueSortPlugin: Plugin {
    /// Whether `a` should be scheduled before `b`.
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// PreFilter: runs once per cycle before Filter; may precompute state or reject the pod.
///
/// Returns Success, Skip (its Filter is skipped for this pod), Unschedulable /
/// UnschedulableAndUnresolvable (the pod fits no node), or Error.
pub trait PreFilterPlugin: Plugin {
    /// Prepares the cycle; may narrow the nodes with a [`PreFilterResult`].
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
    ) -> (Option<PreFilterResult>, Status);

    /// PreFilterExtensions `AddPod`: updates this plugin's PreFilter state as if
    /// `added` ran on `node` (nominated pods, preemption reprieves). Plugins
    /// whose state does not depend on other pods keep the default.
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _added: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }

    /// PreFilterExtensions `RemovePod`: as [`PreFilterPlugin::add_pod`], for a pod
    /// taken off `node` (preemption victims).
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
}

/// Filter: decides whether the pod may run on a node. Nodes may be evaluated concurrently.
///
/// Returns Success, Unschedulable, UnschedulableAndUnresolvable, or Error.
pub trait FilterPlugin: Plugin {
    /// Checks one node.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;

    /// Checks many nodes: pushes `(i, status)` for each `slots[i]` that does not pass,
    /// in increasing `i` (nodes not pushed pass).
    fn filter_batch(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        slots: &[u32],
        failed: &mut Vec<(usize, Status)>,
    ) {
        for (i, &slot) in slots.iter().enumerate() {
            let s = self.filter(state, pod, nodes.node(slot));
            if !s.is_success() && !s.is_skip() {
                failed.push((i, s));
            }
        }
    }

    /// True when the plugin wants all nodes of a batch in one call (out-of-tree plugins):
    /// the framework then does not split its batches across threads.
    fn filters_in_one_call(&self) -> bool {
        false
    }
}

/// PostFilter: runs only when no node fits, e.g. preemption.
///
/// Returns Success with a nominated node, Unschedulable with a message, or Error.
pub trait PostFilterPlugin: Plugin {
    /// Tries to make the pod schedulable; `statuses` says why each node failed.
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        statuses: &NodeStatusMap,
        filters: &dyn FilterRunner,
    ) -> (Option<PostFilterResult>, Status);
}

/// PreScore: runs once per cycle on the feasible nodes before Score.
///
/// Returns Success, Skip (its Score is skipped for this pod), or Error.
pub trait PreScorePlugin: Plugin {
    /// Prepares scoring of `feasible`.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        feasible: &[u32],
    ) -> Status;
}

/// Score: ranks feasible nodes; NormalizeScore maps the raw scores to 0..=100.
///
/// Returns scores or an Error status; scores outside 0..=100 after normalisation
/// fail the cycle with an Error naming the plugin.
pub trait ScorePlugin: Plugin {
    /// Scores one node.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Scores many nodes: `out[i]` for `slots[i]`.
    fn score_batch(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        slots: &[u32],
        out: &mut [i64],
    ) -> Status {
        for (o, &slot) in out.iter_mut().zip(slots) {
            match self.score(state, pod, nodes.node(slot)) {
                Ok(s) => *o = s,
                Err(status) => return status,
            }
        }
        Status::success()
    }

    /// Maps the raw scores of all feasible nodes (in `score_batch` order) to 0..=100.
    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) -> Status {
        Status::success()
    }

    /// True when the plugin wants all feasible nodes in one call (out-of-tree plugins).
    fn scores_in_one_call(&self) -> bool {
        false
    }
}

/// Reserve/Unreserve: informational bookkeeping around the chosen node.
pub trait ReservePlugin: Plugin {
    /// The pod is assumed on `node`; an error unreserves and fails the cycle.
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    /// Undoes `reserve` (a later step failed); must be idempotent.
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// Permit: approves, denies, or delays the binding.
///
/// Returns Success, Unschedulable (deny) or Wait with a timeout.
pub trait PermitPlugin: Plugin {
    /// Decides for the pod on `node`.
    fn permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> (Status, Duration);
}

/// PreBind: work before the binding (e.g. volumes). A failure unreserves the pod.
pub trait PreBindPlugin: Plugin {
    /// Prepares the binding.
    fn pre_bind(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
}

/// Bind: binds the pod; the first plugin that does not Skip wins.
pub trait BindPlugin: Plugin {
    /// Binds, or returns Skip to let the next Bind plugin do it.
    fn bind(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
}

/// PostBind: informational, after a successful binding.
pub trait PostBindPlugin: Plugin {
    /// Observes the binding.
    fn post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str);
}
