//! PodTopologySpread's PreFilter and Filter (`whenUnsatisfiable: DoNotSchedule`).

use std::collections::HashMap;

use super::*;
use crate::framework::*;

const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";

/// Matching pods per domain value, and the minimum, for each hard constraint.
#[derive(Clone)]
struct PreFilterState {
    constraints: Vec<SpreadConstraint>,
    counts: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
    ) -> (Option<PreFilterResult>, Status) {
        let constraints: Vec<SpreadConstraint> = pod
            .spread_constraints
            .iter()
            .filter(|c| c.hard)
            .cloned()
            .collect();
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        for node in nodes.nodes() {
            if !has_all_keys(constraints.iter(), node) {
                continue;
            }
            let labels = node.labels();
            for (i, c) in constraints.iter().enumerate() {
                if !node_included(pod, c, node) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else {
                    continue;
                };
                *counts[i].entry(value.clone()).or_default() +=
                    count_matching(node, c, &pod.namespace);
            }
        }
        let min = mins(&constraints, &counts);
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                constraints,
                counts,
                min,
            },
        );
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        update(state, pod, added, node, 1)
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        update(state, pod, removed, node, -1)
    }
}

/// The smallest count of each constraint (0 while fewer than `minDomains` domains).
fn mins(constraints: &[SpreadConstraint], counts: &[HashMap<String, i64>]) -> Vec<i64> {
    constraints
        .iter()
        .zip(counts)
        .map(|(c, m)| {
            if (m.len() as i64) < i64::from(c.min_domains) {
                0
            } else {
                m.values().copied().min().unwrap_or(0)
            }
        })
        .collect()
}

/// Upstream `updateWithPod`: `other` joins (`delta` 1) or leaves (-1) `node`.
fn update(
    state: &mut CycleState,
    pod: &PodInfo,
    other: &PodInfo,
    node: &NodeInfo,
    delta: i64,
) -> Status {
    let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
        return Status::error(format!(
            "reading {PRE_FILTER_KEY:?} from cycleState: not found"
        ));
    };
    if other.terminating
        || other.namespace != pod.namespace
        || !has_all_keys(s.constraints.iter(), node)
    {
        return Status::success();
    }
    let labels = node.labels();
    for (i, c) in s.constraints.iter().enumerate() {
        if !node_included(pod, c, node) || !c.selector.matches(other.labels()) {
            continue;
        }
        if let Some(v) = labels.get(&c.topology_key) {
            *s.counts[i].entry(v.clone()).or_default() += delta;
        }
    }
    s.min = mins(&s.constraints, &s.counts);
    Status::success()
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let s = match state.get::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let labels = node.labels();
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.selector.matches(pod.labels()));
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - s.min[i] > i64::from(c.max_skew) {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}
