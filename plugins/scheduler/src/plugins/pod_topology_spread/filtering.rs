//! PodTopologySpread's PreFilter and Filter (`whenUnsatisfiable: DoNotSchedule`).

use std::collections::HashMap;

use super::*;
use crate::framework::*;

const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";

/// Matching pods per domain value, and the minimum, for each hard constraint.
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
        let min = constraints
            .iter()
            .zip(&counts)
            .map(|(c, m)| {
                if (m.len() as i64) < i64::from(c.min_domains) {
                    0
                } else {
                    m.values().copied().min().unwrap_or(0)
                }
            })
            .collect();
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
