//! PodTopologySpread's PreScore, Score and NormalizeScore (`whenUnsatisfiable: ScheduleAnyway`).
//!
//! Per constraint, `score += cnt·ln(domains + 2) + (maxSkew − 1)` where `cnt` is the
//! matching pods in the node's domain (on the node itself for `kubernetes.io/hostname`);
//! normalised as `100·(max + min − s)/max`, nodes missing a topology label scoring 0
//! (upstream scoring.go).

use std::collections::{HashMap, HashSet};

use super::*;
use crate::framework::*;

const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";
const HOSTNAME: &str = "kubernetes.io/hostname";
/// Raw score of a node ignored for lacking a topology label.
const IGNORED: i64 = -1;

#[derive(Clone)]
struct PreScoreState {
    constraints: Vec<SpreadConstraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        feasible: &[u32],
    ) -> Status {
        let constraints: Vec<SpreadConstraint> = pod
            .spread_constraints
            .iter()
            .filter(|c| !c.hard)
            .cloned()
            .collect();
        if constraints.is_empty() {
            return Status::skip();
        }
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        let mut ignored = HashSet::new();
        for &slot in feasible {
            let node = nodes.node(slot);
            if !has_all_keys(constraints.iter(), node) {
                ignored.insert(slot);
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != HOSTNAME {
                    if let Some(v) = node.labels().get(&c.topology_key) {
                        counts[i].entry(v.clone()).or_default();
                    }
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, m)| {
                let size = if c.topology_key == HOSTNAME {
                    feasible.len() - ignored.len()
                } else {
                    m.len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        for node in nodes.nodes() {
            if !has_all_keys(constraints.iter(), node) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == HOSTNAME || !node_included(pod, c, node) {
                    continue;
                }
                let value = node.labels().get(&c.topology_key);
                if let Some(n) = value.and_then(|v| counts[i].get_mut(v)) {
                    *n += count_matching(node, c, &pod.namespace);
                }
            }
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints,
                counts,
                weights,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let s = state.get::<PreScoreState>(PRE_SCORE_KEY)?;
        if !has_all_keys(s.constraints.iter(), node) {
            return Ok(IGNORED);
        }
        let labels = node.labels();
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            if let Some(value) = labels.get(&c.topology_key) {
                let cnt = if c.topology_key == HOSTNAME {
                    count_matching(node, c, &pod.namespace)
                } else {
                    s.counts[i].get(value).copied().unwrap_or(0)
                };
                score += cnt as f64 * s.weights[i] + f64::from(c.max_skew - 1);
            }
        }
        Ok(score.round() as i64)
    }

    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        let valid = scores.iter().copied().filter(|&s| s != IGNORED);
        let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
        Status::success()
    }
}
