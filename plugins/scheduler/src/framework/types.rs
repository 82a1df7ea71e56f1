//! Types passed to and returned by plugins: snapshots, queued pods, results, events.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::{CycleState, Status};
use crate::cache::{Cache, NodeInfo};
use crate::pod_info::PodInfo;

/// Highest score a Score plugin may return after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;
/// Lowest score a Score plugin may return after normalisation.
pub const MIN_NODE_SCORE: i64 = 0;

/// Read-only view of the cache during one scheduling cycle.
///
/// Nodes are addressed by *slot*, a stable index (see [`Cache::order`]).
#[derive(Clone, Copy)]
pub struct NodeSnapshot<'a> {
    cache: &'a Cache,
}

impl<'a> NodeSnapshot<'a> {
    /// Wraps the cache.
    pub fn new(cache: &'a Cache) -> Self {
        NodeSnapshot { cache }
    }

    /// The node in `slot`.
    pub fn node(&self, slot: u32) -> &'a NodeInfo {
        self.cache.node(slot)
    }

    /// Slots of all live nodes.
    pub fn slots(&self) -> &'a [u32] {
        self.cache.order()
    }

    /// All live nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &'a NodeInfo> + 'a {
        self.cache.nodes()
    }

    /// Number of live nodes.
    pub fn num_nodes(&self) -> usize {
        self.cache.num_nodes()
    }

    /// Whether any pod has pod (anti-)affinity, and required anti-affinity.
    pub fn affinity_pods(&self) -> (bool, bool) {
        self.cache.affinity_pods()
    }

    /// The underlying cache (columns and group counts for out-of-tree plugins).
    pub fn cache(&self) -> &'a Cache {
        self.cache
    }
}

/// A pod in the scheduling queue, with its attempt history.
#[derive(Clone, Debug)]
pub struct QueuedPodInfo {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// When it entered (or re-entered) the queue.
    pub timestamp: Instant,
    /// When it was first popped for scheduling.
    pub initial_attempt: Option<Instant>,
    /// When it first entered the queue (for the scheduling SLI).
    pub first_seen: Instant,
    /// Number of scheduling attempts so far.
    pub attempts: u32,
    /// Plugins that rejected it in the last attempt (decides which events move it).
    pub unschedulable_plugins: BTreeSet<String>,
}

/// What PreFilter may narrow the candidate nodes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// When set, only these nodes are evaluated.
    pub node_names: Option<BTreeSet<String>>,
}

/// What a PostFilter plugin (preemption) proposes.
#[derive(Clone, Debug, Default)]
pub struct PostFilterResult {
    /// The node the pod should be nominated to.
    pub nominated_node: Option<String>,
    /// Pods to delete so that the pod fits there.
    pub victims: Vec<Arc<PodInfo>>,
}

/// Why each node was rejected in a failed cycle.
#[derive(Clone, Debug)]
pub struct NodeStatusMap {
    /// Status per slot of the nodes evaluated.
    pub statuses: HashMap<u32, Status>,
    /// Status of the nodes not evaluated (excluded by PreFilter).
    pub absent: Status,
}

impl NodeStatusMap {
    /// The status of `slot`.
    pub fn get(&self, slot: u32) -> &Status {
        self.statuses.get(&slot).unwrap_or(&self.absent)
    }
}

/// Runs the profile's Filter plugins on one (possibly modified) node; for PostFilter.
pub trait FilterRunner {
    /// Runs every Filter plugin not skipped at PreFilter; the first failure wins.
    fn run_filters(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;

    /// Runs the PreFilter plugins' `AddPod` extensions: `added` now runs on `node`.
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _added: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }

    /// Runs the PreFilter plugins' `RemovePod` extensions: `removed` left `node`.
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

/// A change in the cluster that may make parked unschedulable pods schedulable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    /// A node was added.
    NodeAdd,
    /// A node changed (labels, taints, allocatable, schedulability).
    NodeUpdate,
    /// A node was deleted.
    NodeDelete,
    /// A bound pod was added.
    AssignedPodAdd,
    /// A bound pod changed.
    AssignedPodUpdate,
    /// A bound pod was deleted.
    AssignedPodDelete,
}

impl ClusterEvent {
    /// Every event.
    pub const ALL: &'static [ClusterEvent] = &[
        ClusterEvent::NodeAdd,
        ClusterEvent::NodeUpdate,
        ClusterEvent::NodeDelete,
        ClusterEvent::AssignedPodAdd,
        ClusterEvent::AssignedPodUpdate,
        ClusterEvent::AssignedPodDelete,
    ];

    /// Node add and update.
    pub const NODE_CHANGES: &'static [ClusterEvent] =
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeUpdate];

    /// The upstream event label (`scheduler_queue_incoming_pods_total{event}`).
    pub fn label(self) -> &'static str {
        match self {
            ClusterEvent::NodeAdd => "NodeAdd",
            ClusterEvent::NodeUpdate => "NodeUpdate",
            ClusterEvent::NodeDelete => "NodeDelete",
            ClusterEvent::AssignedPodAdd => "AssignedPodAdd",
            ClusterEvent::AssignedPodUpdate => "AssignedPodUpdate",
            ClusterEvent::AssignedPodDelete => "AssignedPodDelete",
        }
    }
}
