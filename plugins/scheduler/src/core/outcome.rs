//! What a scheduling cycle returns to the I/O layer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::framework::{CycleState, Framework, QueuedPodInfo, Status, WaitingPod};
use crate::pod_info::PodInfo;

/// Per-plugin and total scores of every feasible node (profiles with `record_scores`).
///
/// Shaped like kube-scheduler-simulator's `score-result` / `finalscore-result` annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScoreRecord {
    /// Plugin -> node -> normalised score (0..=100).
    pub normalized: BTreeMap<String, BTreeMap<String, i64>>,
    /// Plugin -> node -> score × weight.
    pub weighted: BTreeMap<String, BTreeMap<String, i64>>,
    /// Node -> sum of weighted scores.
    pub total: BTreeMap<String, i64>,
}

/// A pod assumed on a node: the token of its binding cycle.
///
/// Pass it to [`super::Scheduler::pre_bind`], [`super::Scheduler::bind`] and
/// [`super::Scheduler::finish_binding`] (or [`super::Scheduler::reject`] when a
/// Permit wait ends in a denial). Dropping it without finishing leaves the pod
/// assumed and in flight: always finish it.
pub struct ScheduledPod {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// The chosen node.
    pub node: String,
    /// The profile that scheduled it.
    pub profile: String,
    /// Nodes the filters ran on.
    pub evaluated_nodes: usize,
    /// Nodes that passed every filter (at most the number to find).
    pub feasible_nodes: usize,
    /// Scores, when the profile records them.
    pub scores: Option<ScoreRecord>,
    /// Set when a Permit plugin asked to wait: run [`WaitingPod::wait`] before PreBind,
    /// and [`super::Scheduler::reject`] the pod unless it succeeds.
    pub waiting: Option<Arc<WaitingPod>>,
    /// State shared with the binding cycle's plugins.
    pub state: CycleState,
    pub(crate) queued: QueuedPodInfo,
    pub(crate) framework: Arc<Framework>,
    pub(crate) started: Instant,
}

impl std::fmt::Debug for ScheduledPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledPod")
            .field("pod", &self.pod.key())
            .field("node", &self.node)
            .field("profile", &self.profile)
            .finish()
    }
}

/// A pod no node fits in this cycle; it has been parked (or put in backoff).
#[derive(Clone, Debug)]
pub struct UnschedulablePod {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// The profile that tried.
    pub profile: String,
    /// The `FailedScheduling` event message, as kube-scheduler writes it.
    pub message: String,
    /// Plugin -> reason -> number of nodes (what the message summarises).
    pub reasons: BTreeMap<String, BTreeMap<String, usize>>,
    /// Preemption's choice: the node to nominate (set `status.nominatedNodeName`).
    pub nominated_node: Option<String>,
    /// Pods to delete so that the pod fits on the nominated node.
    pub victims: Vec<Arc<PodInfo>>,
    /// Victims that were waiting on Permit: rejected in place, not to be deleted.
    pub rejected_victims: Vec<Arc<PodInfo>>,
    /// Lower-priority pods that were nominated to the same node: clear their
    /// `status.nominatedNodeName`.
    pub cleared_nominations: Vec<Arc<PodInfo>>,
}

/// The result of [`super::Scheduler::schedule_one`].
#[derive(Debug)]
pub enum ScheduleOutcome {
    /// A node was chosen and the pod assumed there; run the binding cycle next.
    Scheduled(Box<ScheduledPod>),
    /// No node fits; post the `FailedScheduling` event and `PodScheduled=False`.
    Unschedulable(UnschedulablePod),
    /// An internal or plugin error; the pod backs off and is retried.
    Error {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The profile that tried.
        profile: String,
        /// What failed, naming the plugin.
        message: String,
    },
}

/// Result of [`super::Scheduler::bind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// An in-process Bind plugin bound the pod.
    Bound,
    /// Every Bind plugin skipped (DefaultBinder): the I/O layer writes the `Binding`.
    Delegated,
    /// A Bind plugin failed; finish the binding with an error.
    Failed(Status),
}
