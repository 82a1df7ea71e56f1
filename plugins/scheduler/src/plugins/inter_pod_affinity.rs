//! InterPodAffinity (Filter, Score), basic: required pod (anti-)affinity filters, preferred terms score.
//!
//! Filter: the incoming pod's required affinity (some matching pod in the node's
//! domain for every term, or it is the first pod of its group), its required
//! anti-affinity (no matching pod in the domain), and existing pods' required
//! anti-affinity towards it. Score: the incoming pod's preferred terms, `±weight`
//! per matching existing pod in the domain, min-max normalised to 0..=100.
//! Not covered: existing pods' preferred terms and `hardPodAffinityWeight`, and
//! `namespaceSelector`s other than `{}` (namespace labels are not cached).

use std::collections::HashMap;

use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "InterPodAffinity";

/// Reason: an existing pod's anti-affinity excludes the pod.
pub const ERR_EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// Reason: the pod's affinity is not satisfied.
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Reason: the pod's anti-affinity is not satisfied.
pub const ERR_ANTI: &str = "node(s) didn't match pod anti-affinity rules";

const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

type Counts = HashMap<(String, String), i64>;

/// The inter-pod affinity plugin.
#[derive(Debug, Default)]
pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &str {
        NAME
    }
}

#[derive(Clone)]
struct PreFilterState {
    existing_anti: Counts,
    affinity: Counts,
    anti: Counts,
}

/// Adds `delta` to the count of `node`'s domain for `key`; a count down to zero is
/// dropped (upstream `topologyToMatchedTermCount.update`).
fn add(counts: &mut Counts, node: &NodeInfo, key: &str, delta: i64) {
    if let Some(v) = node.labels().get(key) {
        let k = (key.to_string(), v.clone());
        let c = counts.entry(k.clone()).or_default();
        *c += delta;
        if *c == 0 {
            counts.remove(&k);
        }
    }
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
    for term in &other.required_anti_affinity {
        if term.matches(pod) {
            add(&mut s.existing_anti, node, &term.topology_key, delta);
        }
    }
    if !pod.required_affinity.is_empty() && pod.required_affinity.iter().all(|t| t.matches(other)) {
        for term in &pod.required_affinity {
            add(&mut s.affinity, node, &term.topology_key, delta);
        }
    }
    for term in &pod.required_anti_affinity {
        if term.matches(other) {
            add(&mut s.anti, node, &term.topology_key, delta);
        }
    }
    Status::success()
}

fn count(counts: &Counts, node: &NodeInfo, key: &str) -> Option<i64> {
    let v = node.labels().get(key)?;
    Some(
        counts
            .get(&(key.to_string(), v.clone()))
            .copied()
            .unwrap_or(0),
    )
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
    ) -> (Option<PreFilterResult>, Status) {
        let (_, any_required_anti) = nodes.affinity_pods();
        if !pod.has_required_pod_affinity() && !any_required_anti {
            return (None, Status::skip());
        }
        let mut s = PreFilterState {
            existing_anti: Counts::new(),
            affinity: Counts::new(),
            anti: Counts::new(),
        };
        for node in nodes.nodes() {
            for p in &node.pods {
                for term in &p.required_anti_affinity {
                    if term.matches(pod) {
                        add(&mut s.existing_anti, node, &term.topology_key, 1);
                    }
                }
                if !pod.required_affinity.is_empty()
                    && pod.required_affinity.iter().all(|t| t.matches(p))
                {
                    for term in &pod.required_affinity {
                        add(&mut s.affinity, node, &term.topology_key, 1);
                    }
                }
                for term in &pod.required_anti_affinity {
                    if term.matches(p) {
                        add(&mut s.anti, node, &term.topology_key, 1);
                    }
                }
            }
        }
        state.write(PRE_FILTER_KEY, s);
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

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let s = match state.get::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let mut pods_exist = true;
        for term in &pod.required_affinity {
            match count(&s.affinity, node, &term.topology_key) {
                None => return Status::unresolvable(ERR_AFFINITY),
                Some(c) if c <= 0 => pods_exist = false,
                Some(_) => {}
            }
        }
        // The first pod of a group with affinity to itself may go anywhere.
        let first_of_group =
            s.affinity.is_empty() && pod.required_affinity.iter().all(|t| t.matches(pod));
        if !pods_exist && !first_of_group {
            return Status::unresolvable(ERR_AFFINITY);
        }
        if pod
            .required_anti_affinity
            .iter()
            .any(|t| count(&s.anti, node, &t.topology_key).is_some_and(|c| c > 0))
        {
            return Status::unschedulable(ERR_ANTI);
        }
        let labels = node.labels();
        if s.existing_anti
            .iter()
            .any(|((k, v), c)| *c > 0 && labels.get(k) == Some(v))
        {
            return Status::unschedulable(ERR_EXISTING_ANTI);
        }
        Status::success()
    }
}

/// Summed preferred weights per topology key and value.
#[derive(Clone)]
struct PreScoreState(HashMap<String, HashMap<String, i64>>);

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        _feasible: &[u32],
    ) -> Status {
        if pod.preferred_affinity.is_empty() && pod.preferred_anti_affinity.is_empty() {
            return Status::skip();
        }
        let mut scores: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let weighted = pod
            .preferred_affinity
            .iter()
            .map(|(w, t)| (i64::from(*w), t))
            .chain(
                pod.preferred_anti_affinity
                    .iter()
                    .map(|(w, t)| (-i64::from(*w), t)),
            );
        let terms: Vec<_> = weighted.collect();
        for node in nodes.nodes() {
            for p in &node.pods {
                for (w, term) in &terms {
                    if let Some(v) = node
                        .labels()
                        .get(&term.topology_key)
                        .filter(|_| term.matches(p))
                    {
                        *scores
                            .entry(term.topology_key.clone())
                            .or_default()
                            .entry(v.clone())
                            .or_default() += w;
                    }
                }
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState(scores));
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let s = state.get::<PreScoreState>(PRE_SCORE_KEY)?;
        let labels = node.labels();
        Ok(s.0
            .iter()
            .filter_map(|(k, values)| labels.get(k).and_then(|v| values.get(v)))
            .sum())
    }

    /// `100·(s − min)/(max − min)`, all 0 when every score is equal.
    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max > min {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::Cache;
    use crate::testing::{NodeBuilder, PodBuilder};

    /// n1 and n2 in zone a, n3 in zone b; a `db` pod runs on n1 with anti-affinity to `web` per zone.
    fn cluster() -> Cache {
        let mut c = Cache::new();
        for (n, z) in [("n1", "a"), ("n2", "a"), ("n3", "b")] {
            c.upsert_node(Arc::new(NodeBuilder::new(n).label("zone", z).build()))
                .expect("node");
        }
        let db = PodBuilder::new("db")
            .label("app", "db")
            .anti_affinity("zone", "web")
            .node("n1");
        c.add_pod(Arc::new(db.build())).expect("pod");
        c
    }

    fn verdicts(c: &Cache, pod: &PodInfo) -> Vec<Status> {
        let snap = NodeSnapshot::new(c);
        let mut s = CycleState::new();
        let (_, st) = InterPodAffinity.pre_filter(&mut s, pod, &snap);
        assert!(st.is_success(), "{st}");
        snap.nodes()
            .map(|n| InterPodAffinity.filter(&s, pod, n))
            .collect()
    }

    #[test]
    fn filter_should_honour_existing_pods_anti_affinity() {
        let c = cluster();
        let v = verdicts(&c, &PodBuilder::new("w").label("app", "web").build());
        assert_eq!(v[0], Status::unschedulable(ERR_EXISTING_ANTI));
        assert_eq!(v[1], Status::unschedulable(ERR_EXISTING_ANTI));
        assert!(v[2].is_success());
    }

    #[test]
    fn filter_should_honour_the_pods_own_affinity_and_anti_affinity() {
        let c = cluster();
        let near_db = PodBuilder::new("x").affinity("zone", "db").build();
        let v = verdicts(&c, &near_db);
        assert!(v[0].is_success() && v[1].is_success());
        assert_eq!(v[2], Status::unresolvable(ERR_AFFINITY));
        let away = PodBuilder::new("y").anti_affinity("zone", "db").build();
        let v = verdicts(&c, &away);
        assert_eq!(v[0], Status::unschedulable(ERR_ANTI));
        assert!(v[2].is_success());
        // First pod of a self-affine group: no match anywhere, but it matches itself.
        let first = PodBuilder::new("z")
            .label("app", "cache")
            .affinity("zone", "cache")
            .build();
        assert!(verdicts(&c, &first).iter().all(Status::is_success));
    }
}
