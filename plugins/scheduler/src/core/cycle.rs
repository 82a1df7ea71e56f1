//! One scheduling cycle's algorithm: PreFilter, Filter, PostFilter, PreScore, Score, select host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::outcome::ScoreRecord;
use crate::cache::Cache;
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Below this many nodes every node is evaluated (`minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Lowest adaptive percentage (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// Smallest batch handed to the filters once some nodes failed.
const MIN_FILTER_BATCH: usize = 32;

/// Upstream message when the cluster has no node.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// How many feasible nodes to find before scoring (upstream `numFeasibleNodesToFind`):
/// all below 100 nodes; else `percentage` (adaptive `50 − nodes/125`, at least 5 %)
/// of the nodes, and at least 100.
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let pct = match percentage {
        Some(p) if p > 0 => p as usize,
        _ => 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// A small xorshift64* generator for tie-breaking (no dependency, seedable in tests).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// A successful cycle.
pub(crate) struct Placement {
    pub slot: u32,
    pub evaluated: usize,
    pub feasible: usize,
    pub scores: Option<ScoreRecord>,
}

/// A failed cycle.
pub(crate) enum Failure {
    Unschedulable {
        message: String,
        reasons: BTreeMap<String, BTreeMap<String, usize>>,
        plugins: BTreeSet<String>,
        nominated: Option<String>,
        victims: Vec<Arc<PodInfo>>,
    },
    Error(Status),
}

/// Mutable scheduler state a cycle advances.
pub(crate) struct CycleContext<'a> {
    pub cache: &'a Cache,
    pub next_start: &'a mut usize,
    pub rng: &'a mut Rng,
}

/// Runs one scheduling cycle of `pod` with `fw` against the cache.
pub(crate) fn schedule_pod(
    fw: &Framework,
    ctx: CycleContext<'_>,
    state: &mut CycleState,
    pod: &PodInfo,
) -> Result<Placement, Failure> {
    let snap = NodeSnapshot::new(ctx.cache);
    let num_all = snap.num_nodes();
    if num_all == 0 {
        return Err(Failure::Unschedulable {
            message: NO_NODES_AVAILABLE.into(),
            reasons: BTreeMap::new(),
            plugins: BTreeSet::new(),
            nominated: None,
            victims: Vec::new(),
        });
    }
    let (pre, s) = fw.run_pre_filter(state, pod, &snap);
    if !s.is_success() {
        if !s.is_rejected() {
            return Err(Failure::Error(s));
        }
        let statuses = NodeStatusMap {
            statuses: Default::default(),
            absent: s.clone(),
        };
        let mut fit = FitError {
            num_all_nodes: num_all,
            pre_filter_msg: Some(s.message()),
            ..Default::default()
        };
        return Err(post_filter(
            fw,
            state,
            pod,
            &snap,
            &statuses,
            &mut fit,
            &[(&s, num_all)],
        ));
    }
    let narrowed: Option<Vec<u32>> = pre
        .and_then(|r| r.node_names)
        .map(|names| names.iter().filter_map(|n| ctx.cache.slot_of(n)).collect());
    let all: &[u32] = narrowed.as_deref().unwrap_or(snap.slots());
    // Upstream `evaluateNominatedNode`: a pod nominated by preemption tries its node first.
    let nominated = pod
        .nominated_node
        .as_deref()
        .or_else(|| ctx.cache.nominated_node(&pod.uid))
        .and_then(|n| ctx.cache.slot_of(n))
        .filter(|s| narrowed.is_none() || all.contains(s));
    if let Some(slot) = nominated {
        let out = fw
            .filter_nodes(state, pod, &snap, &[slot])
            .map_err(Failure::Error)?;
        if let Some(&slot) = out.feasible.first() {
            return Ok(Placement {
                slot,
                evaluated: 1,
                feasible: 1,
                scores: None,
            });
        }
    }
    let len = all.len();
    let to_find = num_feasible_nodes_to_find(fw.percentage_of_nodes_to_score, len);
    let start = if len == 0 { 0 } else { *ctx.next_start % len };
    let mut feasible = Vec::with_capacity(to_find);
    let mut failed = Vec::new();
    let mut processed = 0;
    while processed < len && feasible.len() < to_find {
        let batch_len = (to_find - feasible.len())
            .max(MIN_FILTER_BATCH)
            .min(len - processed);
        let batch: Vec<u32> = (0..batch_len)
            .map(|i| all[(start + processed + i) % len])
            .collect();
        let out = fw
            .filter_nodes(state, pod, &snap, &batch)
            .map_err(Failure::Error)?;
        feasible.extend(out.feasible);
        failed.extend(out.failed);
        processed += batch_len;
    }
    feasible.truncate(to_find);
    if len > 0 {
        *ctx.next_start = (start + processed) % len;
    }
    if feasible.is_empty() {
        let statuses = NodeStatusMap {
            statuses: failed.iter().cloned().collect(),
            absent: Status::unresolvable("node(s) were not evaluated"),
        };
        let mut fit = FitError::new(num_all, failed.iter().map(|(_, s)| s));
        let rejections: Vec<(&Status, usize)> = failed.iter().map(|(_, s)| (s, 1)).collect();
        return Err(post_filter(
            fw,
            state,
            pod,
            &snap,
            &statuses,
            &mut fit,
            &rejections,
        ));
    }
    if feasible.len() == 1 {
        return Ok(Placement {
            slot: feasible[0],
            evaluated: processed,
            feasible: 1,
            scores: None,
        });
    }
    let s = fw.run_pre_score(state, pod, &snap, &feasible);
    if !s.is_success() {
        return Err(Failure::Error(s));
    }
    let table = fw
        .run_score(state, pod, &snap, &feasible)
        .map_err(Failure::Error)?;
    let best = select_host(&table.totals, ctx.rng);
    let scores = fw.record_scores.then(|| record(&snap, &feasible, &table));
    Ok(Placement {
        slot: feasible[best],
        evaluated: processed,
        feasible: feasible.len(),
        scores,
    })
}

/// Runs PostFilter (preemption) and builds the unschedulable failure.
fn post_filter(
    fw: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    snap: &NodeSnapshot<'_>,
    statuses: &NodeStatusMap,
    fit: &mut FitError,
    rejections: &[(&Status, usize)],
) -> Failure {
    let mut reasons: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut plugins = BTreeSet::new();
    for (s, nodes) in rejections {
        let plugin = s.plugin().unwrap_or("").to_string();
        plugins.insert(plugin.clone());
        let per = reasons.entry(plugin).or_default();
        for r in s.reasons() {
            *per.entry(r.to_string()).or_default() += nodes;
        }
    }
    let (mut nominated, mut victims) = (None, Vec::new());
    if !fw.post_filter.is_empty() {
        fw.metrics.preemption_attempts.inc();
        let (result, s) = fw.run_post_filter(state, pod, snap, statuses);
        if s.is_success() {
            if let Some(r) = result {
                nominated = r.nominated_node;
                victims = r.victims;
            }
        } else if !s.message().is_empty() {
            fit.post_filter_msg = Some(s.message());
        }
    }
    Failure::Unschedulable {
        message: fit.to_string(),
        reasons,
        plugins,
        nominated,
        victims,
    }
}

/// Index of the highest total; ties broken uniformly at random (upstream `selectHost`).
pub fn select_host(totals: &[i64], rng: &mut Rng) -> usize {
    let mut best = 0;
    let mut ties = 1u64;
    for (i, &t) in totals.iter().enumerate().skip(1) {
        if t > totals[best] {
            best = i;
            ties = 1;
        } else if t == totals[best] {
            ties += 1;
            if rng.below(ties) == 0 {
                best = i;
            }
        }
    }
    best
}

fn record(snap: &NodeSnapshot<'_>, feasible: &[u32], table: &ScoreTable) -> ScoreRecord {
    let mut rec = ScoreRecord::default();
    for (plugin, weight, scores) in &table.plugins {
        for (&slot, &s) in feasible.iter().zip(scores) {
            let node = snap.node(slot).name.clone();
            rec.normalized
                .entry(plugin.clone())
                .or_default()
                .insert(node.clone(), s);
            rec.weighted
                .entry(plugin.clone())
                .or_default()
                .insert(node, s * weight);
        }
    }
    for (&slot, &t) in feasible.iter().zip(&table.totals) {
        rec.total.insert(snap.node(slot).name.clone(), t);
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_feasible_nodes_to_find_should_follow_kube_scheduler() {
        assert_eq!(num_feasible_nodes_to_find(None, 50), 50);
        // 1,000 nodes: 50 − 8 = 42 %.
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420);
        // 5,000 nodes: 50 − 40 = 10 %.
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500);
        // 10,000 nodes: max(50 − 80, 5) = 5 %.
        assert_eq!(num_feasible_nodes_to_find(None, 10_000), 500);
        assert_eq!(num_feasible_nodes_to_find(Some(100), 1000), 1000);
        // At least 100 nodes.
        assert_eq!(num_feasible_nodes_to_find(Some(1), 1000), 100);
    }

    #[test]
    fn select_host_should_pick_the_max_and_spread_ties() {
        let mut rng = Rng::new(7);
        assert_eq!(select_host(&[1, 9, 3], &mut rng), 1);
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[select_host(&[5, 5, 5], &mut rng)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
