//! The scheduler cache (the NodeList): nodes, the pods placed on them, and assumed pods.
//!
//! A pod is *assumed* on a node when the scheduler has chosen the node but the API
//! has not yet confirmed the binding: the next cycle already sees its resources.
//! The binding is confirmed when the bound pod arrives from the API
//! ([`Cache::add_pod`]), or forgotten when binding fails ([`Cache::forget_pod`]).
//!
//! Nodes live in slots with stable indices (the out-of-tree plugin ABI refers to
//! them); `order` lists the live ones. A node deleted while pods still point at it
//! stays as a ghost (no API object, not schedulable) until its last pod goes.

mod columns;
mod node_info;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kubernel_scheduler_sdk::GroupCount;

pub use columns::{Columns, Interner};
pub use node_info::NodeInfo;

use crate::pdb::PdbInfo;
use crate::pod_info::PodInfo;
use crate::resources::QuantityError;

/// A cache operation was refused; the message names the node or pod.
///
/// These are bookkeeping errors of the caller (events out of order, a double
/// assume): retrying the same call does not help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The node is not in the cache.
    #[error("node {0:?}: not in the scheduler cache")]
    NodeNotFound(String),
    /// The node object has a bad allocatable quantity.
    #[error("node {node:?}: {source}")]
    BadNode {
        /// Node name.
        node: String,
        /// The bad quantity.
        source: QuantityError,
    },
    /// The pod is already in the cache (assumed or bound).
    #[error("pod {0}: already in the scheduler cache")]
    PodExists(String),
    /// The pod is not assumed.
    #[error("pod {0}: not assumed")]
    PodNotAssumed(String),
    /// The pod has no `spec.nodeName`.
    #[error("pod {0}: not bound to a node")]
    PodNotBound(String),
}

/// Where a cached pod is and whether the API has confirmed it.
#[derive(Clone, Debug)]
struct PodState {
    slot: u32,
    assumed: bool,
}

/// A node slot: its info, and whether it holds anything.
#[derive(Debug, Default)]
struct Slot {
    info: NodeInfo,
    used: bool,
}

/// Nodes and pods as the scheduler sees them.
#[derive(Debug, Default)]
pub struct Cache {
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_name: HashMap<String, u32>,
    order: Vec<u32>,
    pods: HashMap<String, PodState>,
    groups: HashMap<u64, Vec<GroupCount>>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
    columns: Columns,
    /// Unbound pods nominated to a node by preemption, by node name.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    /// The node each nominated pod is nominated to, by uid.
    nominated_to: HashMap<String, String>,
    /// PodDisruptionBudgets by `namespace/name`, and the same in a list for preemption.
    pdbs: HashMap<String, Arc<PdbInfo>>,
    pdb_list: Vec<Arc<PdbInfo>>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Cache::default()
    }

    fn slot_for(&mut self, name: &str) -> u32 {
        if let Some(&s) = self.by_name.get(name) {
            return s;
        }
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[s as usize] = Slot {
            info: NodeInfo::ghost(name),
            used: true,
        };
        self.by_name.insert(name.to_string(), s);
        self.columns.invalidate_tables();
        s
    }

    fn release_if_empty(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if s.info.node.is_none() && s.info.pods.is_empty() {
            self.by_name.remove(&s.info.name);
            *s = Slot::default();
            self.free.push(slot);
            self.columns.invalidate_tables();
        }
        self.columns.sync(slot, &self.slots[slot as usize].info);
    }

    /// Adds or replaces a node (informer add and update events).
    pub fn upsert_node(&mut self, node: Arc<Node>) -> Result<(), CacheError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let slot = self.slot_for(&name);
        let s = &mut self.slots[slot as usize];
        let was_live = s.info.node.is_some();
        if let Err(source) = s.info.set_node(node) {
            self.release_if_empty(slot);
            return Err(CacheError::BadNode { node: name, source });
        }
        self.columns.intern_node(&mut s.info);
        self.columns.sync(slot, &s.info);
        if !was_live {
            self.order.push(slot);
        }
        Ok(())
    }

    /// Removes a node; its pods stay (on a ghost) until they are deleted.
    pub fn remove_node(&mut self, name: &str) -> Result<(), CacheError> {
        let slot = *self
            .by_name
            .get(name)
            .ok_or_else(|| CacheError::NodeNotFound(name.to_string()))?;
        let info = &mut self.slots[slot as usize].info;
        if info.node.take().is_none() {
            return Err(CacheError::NodeNotFound(name.to_string()));
        }
        info.generation += 1;
        self.order.retain(|&s| s != slot);
        self.columns.invalidate_tables();
        self.release_if_empty(slot);
        Ok(())
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        let slot = self.slot_for(node);
        let nodes = self.groups.entry(pod.group).or_default();
        match nodes.binary_search_by_key(&slot, |g| g.node) {
            Ok(i) => nodes[i].count += 1,
            Err(i) => nodes.insert(
                i,
                GroupCount {
                    node: slot,
                    count: 1,
                },
            ),
        }
        self.pods_with_affinity += usize::from(pod.has_pod_affinity());
        self.pods_with_required_anti_affinity +=
            usize::from(!pod.required_anti_affinity.is_empty());
        self.pods
            .insert(pod.uid.clone(), PodState { slot, assumed });
        let info = &mut self.slots[slot as usize].info;
        info.add_pod(pod);
        self.columns.sync(slot, info);
    }

    fn unplace(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let state = self.pods.remove(uid)?;
        let pod = self.slots[state.slot as usize].info.remove_pod(uid)?;
        if let Some(nodes) = self.groups.get_mut(&pod.group) {
            if let Ok(i) = nodes.binary_search_by_key(&state.slot, |g| g.node) {
                nodes[i].count -= 1;
                if nodes[i].count == 0 {
                    nodes.remove(i);
                }
            }
            if nodes.is_empty() {
                self.groups.remove(&pod.group);
            }
        }
        self.pods_with_affinity -= usize::from(pod.has_pod_affinity());
        self.pods_with_required_anti_affinity -=
            usize::from(!pod.required_anti_affinity.is_empty());
        self.release_if_empty(state.slot);
        Some(pod)
    }

    /// Places a pod chosen by the scheduler before the API confirms the binding.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        if self.pods.contains_key(&pod.uid) {
            return Err(CacheError::PodExists(pod.key()));
        }
        if self.slot_of(node).is_none() {
            return Err(CacheError::NodeNotFound(node.to_string()));
        }
        self.place(pod, node, true);
        Ok(())
    }

    /// Undoes [`Cache::assume_pod`] (the binding failed or was rejected).
    pub fn forget_pod(&mut self, uid: &str) -> Result<Arc<PodInfo>, CacheError> {
        match self.pods.get(uid) {
            Some(s) if s.assumed => {}
            _ => return Err(CacheError::PodNotAssumed(uid.to_string())),
        }
        self.unplace(uid)
            .ok_or_else(|| CacheError::PodNotAssumed(uid.to_string()))
    }

    /// Adds a bound pod from the API, confirming it when it was assumed.
    ///
    /// Also handles updates of bound pods: the old version is replaced.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) -> Result<(), CacheError> {
        let Some(node) = pod.node_name.clone() else {
            return Err(CacheError::PodNotBound(pod.key()));
        };
        self.unplace(&pod.uid);
        self.place(pod, &node, false);
        Ok(())
    }

    /// Removes a pod (deleted from the API, or unbound); returns it when it was cached.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        self.unplace(uid)
    }

    /// Whether the pod is assumed and not yet confirmed.
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    /// Whether the pod is in the cache (assumed or bound).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Name of the node a cached pod is on.
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods
            .get(uid)
            .map(|s| self.slots[s.slot as usize].info.name.as_str())
    }

    /// Slots of the live (schedulable-by-existence) nodes, in insertion order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Number of live nodes.
    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// Number of assumed pods (not yet confirmed by the API).
    pub fn num_assumed(&self) -> usize {
        self.pods.values().filter(|s| s.assumed).count()
    }

    /// Number of cached pods (assumed included).
    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }

    /// The node in `slot` (slots come from [`Cache::order`]).
    pub fn node(&self, slot: u32) -> &NodeInfo {
        &self.slots[slot as usize].info
    }

    /// The slot of a live node.
    pub fn slot_of(&self, name: &str) -> Option<u32> {
        self.by_name
            .get(name)
            .copied()
            .filter(|&s| self.slots[s as usize].info.node.is_some())
    }

    /// Live nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.order.iter().map(|&s| &self.slots[s as usize].info)
    }

    /// Whether any cached pod has pod (anti-)affinity terms, and required anti-affinity ones.
    pub fn affinity_pods(&self) -> (bool, bool) {
        (
            self.pods_with_affinity > 0,
            self.pods_with_required_anti_affinity > 0,
        )
    }

    /// Nodes running pods of spreading group `group`, sorted by slot.
    pub fn group_counts(&self, group: u64) -> &[GroupCount] {
        self.groups.get(&group).map_or(&[], Vec::as_slice)
    }

    /// Rebuilds the columnar label/taint tables if nodes changed; run before a cycle.
    pub fn refresh_columns(&mut self) {
        if self.columns.tables_stale() {
            let slots = &self.slots;
            self.columns
                .refresh_tables(slots.iter().map(|s| s.used.then_some(&s.info)));
        }
    }

    /// Records that `pod` (unbound) is nominated to `node`, replacing an earlier nomination.
    ///
    /// Filters count nominated pods of equal or higher priority on their node
    /// (upstream's nominator, `RunFilterPluginsWithNominatedPods`).
    pub fn add_nominated(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_nominated(&pod.uid);
        self.nominated_to.insert(pod.uid.clone(), node.to_string());
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(pod);
    }

    /// Drops the nomination of pod `uid` (bound, deleted, or nominated elsewhere).
    pub fn remove_nominated(&mut self, uid: &str) -> Option<String> {
        let node = self.nominated_to.remove(uid)?;
        if let Some(pods) = self.nominated.get_mut(&node) {
            pods.retain(|p| p.uid != uid);
            if pods.is_empty() {
                self.nominated.remove(&node);
            }
        }
        Some(node)
    }

    /// Replaces the nominated pod's object, keeping its node.
    pub fn update_nominated(&mut self, pod: Arc<PodInfo>) {
        if let Some(node) = self.nominated_to.get(&pod.uid).cloned() {
            self.add_nominated(pod, &node);
        }
    }

    /// Pods nominated to `node`.
    pub fn nominated_pods(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map_or(&[], Vec::as_slice)
    }

    /// The node pod `uid` is nominated to.
    pub fn nominated_node(&self, uid: &str) -> Option<&str> {
        self.nominated_to.get(uid).map(String::as_str)
    }

    /// Whether any pod is nominated (lets cycles skip the second filter pass).
    pub fn has_nominated(&self) -> bool {
        !self.nominated_to.is_empty()
    }

    /// Adds or replaces a PodDisruptionBudget.
    pub fn upsert_pdb(&mut self, pdb: PdbInfo) {
        self.pdbs.insert(pdb.key(), Arc::new(pdb));
        self.pdb_list = self.pdbs.values().cloned().collect();
        self.pdb_list.sort_by_key(|p| p.key());
    }

    /// Removes the PodDisruptionBudget `namespace/name`.
    pub fn remove_pdb(&mut self, key: &str) {
        if self.pdbs.remove(key).is_some() {
            self.pdb_list = self.pdbs.values().cloned().collect();
            self.pdb_list.sort_by_key(|p| p.key());
        }
    }

    /// Every PodDisruptionBudget, sorted by `namespace/name`.
    pub fn pdbs(&self) -> &[Arc<PdbInfo>] {
        &self.pdb_list
    }

    /// The columnar view for out-of-tree plugins (fresh after [`Cache::refresh_columns`]).
    pub fn columns(&self) -> &Columns {
        &self.columns
    }
}

#[cfg(test)]
mod tests;
