//! DefaultPreemption (PostFilter): find lower-priority victims on one node so the pod fits.
//!
//! For each node where preemption might help (its filter status is Unschedulable,
//! not UnschedulableAndUnresolvable): remove every pod of lower priority, check the
//! pod fits, then add victims back from the most important down while it still
//! fits. Among candidates, pick the node with the fewest PodDisruptionBudget
//! violations, then the lowest highest-victim priority, then the lowest priority
//! sum, then the fewest victims. The I/O layer deletes
//! the victims and sets `status.nominatedNodeName`. Pods nominated to a node with
//! equal or higher priority keep their room there (the filters run with them),
//! and a nominated pod whose victims are still terminating does not preempt again.
//! PodDisruptionBudgets: on each node the victims a budget protects are given
//! their place back first, and the node with the fewest budget violations wins
//! (upstream `selectVictimsOnNode` and `pickOneNodeForPreemption`).

use std::cmp::Reverse;
use std::sync::Arc;

use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pdb::{split_by_pdb_violation, PdbInfo};
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "DefaultPreemption";

/// Reason for nodes where removing pods cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Reason for nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Message for a nominated pod whose victims are still terminating.
pub const NOT_ELIGIBLE_TERMINATING: &str =
    "preemption: not eligible due to a terminating pod on the nominated node.";

/// Fewest candidate nodes searched (`minCandidateNodesAbsolute`).
const MIN_CANDIDATES_ABSOLUTE: usize = 100;
/// Share of nodes searched for candidates, percent (`minCandidateNodesPercentage`).
const MIN_CANDIDATES_PERCENTAGE: usize = 10;

/// The default preemption plugin.
#[derive(Debug, Default)]
pub struct DefaultPreemption;

impl Plugin for DefaultPreemption {
    fn name(&self) -> &str {
        NAME
    }
}

/// A node where preemption works, and the pods to evict there.
struct Candidate {
    node: String,
    victims: Vec<Arc<PodInfo>>,
    pdb_violations: usize,
}

impl Candidate {
    /// Upstream `pickOneNodeForPreemption` keys: fewest PodDisruptionBudget
    /// violations, lowest highest victim priority, lowest priority sum (offset so
    /// that every victim adds a positive amount), fewest victims, then the latest
    /// start among the most important victims (the least work lost).
    fn rank(&self) -> (usize, i64, i64, usize, Reverse<jiff::Timestamp>) {
        let highest = self
            .victims
            .iter()
            .map(|v| i64::from(v.priority))
            .max()
            .unwrap_or(i64::MIN);
        let sum = self
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        // Victims are most important first; upstream `GetEarliestPodStartTime`.
        let earliest = self
            .victims
            .iter()
            .take_while(|v| i64::from(v.priority) == highest)
            .map(start_time)
            .min()
            .unwrap_or(jiff::Timestamp::MAX);
        (
            self.pdb_violations,
            highest,
            sum,
            self.victims.len(),
            Reverse(earliest),
        )
    }
}

/// When a pod started; a pod not started yet counts as the latest.
fn start_time(p: &Arc<PodInfo>) -> jiff::Timestamp {
    p.start_time.unwrap_or(jiff::Timestamp::MAX)
}

/// Upstream `MoreImportantPod`: higher priority first, then the one started earlier.
fn more_important_first(a: &Arc<PodInfo>, b: &Arc<PodInfo>) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| start_time(a).cmp(&start_time(b)))
        .then_with(|| a.uid.cmp(&b.uid))
}

/// Victims on one node and how many of them violate a PodDisruptionBudget, or the
/// status saying why there are none (upstream `SelectVictimsOnNode`).
fn select_victims(
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    nominated: &[Arc<PodInfo>],
    pdbs: &[Arc<PdbInfo>],
    filters: &dyn FilterRunner,
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
    let mut trial = node.clone();
    // The PreFilter state follows the trial node through RemovePod/AddPod (upstream).
    let mut st = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(NO_VICTIMS));
    }
    for v in &potential {
        trial.remove_pod(&v.uid);
        let s = filters.remove_pod(&mut st, pod, v, &trial);
        if !s.is_success() {
            return Err(s);
        }
    }
    let fits = run_filters_with_nominated(filters, &st, pod, &trial, nominated);
    if !fits.is_success() {
        return Err(fits);
    }
    // Most important first: they are the first to be given their place back; pods
    // a budget protects before the others.
    potential.sort_by(more_important_first);
    let (violating, other) = split_by_pdb_violation(potential, pdbs);
    let mut victims = Vec::new();
    let mut violations = 0;
    for (v, violates) in violating
        .into_iter()
        .map(|v| (v, true))
        .chain(other.into_iter().map(|v| (v, false)))
    {
        trial.add_pod(v.clone());
        let s = filters.add_pod(&mut st, pod, &v, &trial);
        if !s.is_success() {
            return Err(s);
        }
        if !run_filters_with_nominated(filters, &st, pod, &trial, nominated).is_success() {
            trial.remove_pod(&v.uid);
            let s = filters.remove_pod(&mut st, pod, &v, &trial);
            if !s.is_success() {
                return Err(s);
            }
            victims.push(v);
            violations += usize::from(violates);
        }
    }
    // Upstream keeps the victims most important first.
    victims.sort_by(more_important_first);
    Ok((victims, violations))
}

/// Upstream `PodEligibleToPreemptOthers`: a pod already nominated to a node where a
/// lower-priority pod is still terminating waits for it instead of preempting more.
fn not_eligible(
    pod: &PodInfo,
    nodes: &NodeSnapshot<'_>,
    statuses: &NodeStatusMap,
) -> Option<String> {
    let cache = nodes.cache();
    let node = pod
        .nominated_node
        .as_deref()
        .or_else(|| cache.nominated_node(&pod.uid))?;
    let slot = cache.slot_of(node)?;
    if statuses.get(slot).code() == Code::UnschedulableAndUnresolvable {
        return None;
    }
    cache
        .node(slot)
        .pods
        .iter()
        .any(|p| p.priority < pod.priority && p.terminating)
        .then(|| NOT_ELIGIBLE_TERMINATING.to_string())
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        statuses: &NodeStatusMap,
        filters: &dyn FilterRunner,
    ) -> (Option<PostFilterResult>, Status) {
        if pod.never_preempts {
            return (
                None,
                Status::unschedulable("preemption: not eligible due to preemptionPolicy=Never."),
            );
        }
        if let Some(message) = not_eligible(pod, nodes, statuses) {
            return (None, Status::unschedulable(message));
        }
        let all = nodes.slots();
        let pdbs = nodes.cache().pdbs();
        let wanted = (all.len() * MIN_CANDIDATES_PERCENTAGE / 100)
            .max(MIN_CANDIDATES_ABSOLUTE)
            .min(all.len());
        let mut candidates = Vec::new();
        let mut node_statuses: Vec<Status> = Vec::new();
        for &slot in all {
            if candidates.len() >= wanted {
                break;
            }
            if statuses.get(slot).code() == Code::UnschedulableAndUnresolvable {
                continue;
            }
            let node = nodes.node(slot);
            let nominated = nominated_for(nodes.cache(), pod, &node.name);
            match select_victims(state, pod, node, &nominated, pdbs, filters) {
                Ok((victims, pdb_violations)) if !victims.is_empty() => {
                    candidates.push(Candidate {
                        node: node.name.clone(),
                        victims,
                        pdb_violations,
                    })
                }
                Ok(_) => node_statuses.push(Status::error(format!(
                    "expected at least one victim pod on node {:?}",
                    node.name
                ))),
                Err(s) => node_statuses.push(s),
            }
        }
        let Some(best) = candidates.into_iter().min_by_key(Candidate::rank) else {
            let absent = all.len() - node_statuses.len();
            let mut err = FitError::new(all.len(), node_statuses.iter());
            if absent > 0 {
                err.reasons.insert(NOT_HELPFUL.to_string(), absent);
            }
            return (None, Status::unschedulable(format!("preemption: {err}")));
        };
        let result = PostFilterResult {
            nominated_node: Some(best.node),
            victims: best.victims,
        };
        (Some(result), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::plugins::node_resources::Fit;
    use crate::testing::{NodeBuilder, PodBuilder};

    struct Fits(Fit);

    impl FilterRunner for Fits {
        fn run_filters(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
            self.0.filter(state, pod, node)
        }
    }

    /// n1 runs two 1-CPU pods of priority 1 and 5, n2 one 2-CPU pod of priority 3; 2 CPUs each.
    fn cluster() -> Cache {
        let mut c = Cache::new();
        for n in ["n1", "n2"] {
            c.upsert_node(Arc::new(NodeBuilder::new(n).cpu("2").build()))
                .expect("node");
        }
        for (p, prio, cpu, n) in [
            ("a", 1, "1", "n1"),
            ("b", 5, "1", "n1"),
            ("c", 3, "2", "n2"),
        ] {
            c.add_pod(Arc::new(
                PodBuilder::new(p)
                    .priority(prio)
                    .cpu(cpu)
                    .node(n)
                    .label("app", p)
                    .build(),
            ))
            .expect("pod");
        }
        c
    }

    /// A budget over pods with `app` in `apps`, allowing `allowed` disruptions.
    fn pdb(name: &str, apps: &[&str], allowed: i32) -> PdbInfo {
        let selector = if apps.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In", "values": apps}]})
        };
        let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": selector},
                "status": {"disruptionsAllowed": allowed, "currentHealthy": 1,
                           "desiredHealthy": 1, "expectedPods": 1},
            }))
            .expect("pdb");
        PdbInfo::new(&pdb)
    }

    fn outcome(c: &Cache) -> (String, Vec<String>) {
        let (r, s) = run(c, &PodBuilder::new("p").priority(10).cpu("1").build());
        assert!(s.is_success(), "{s}");
        let r = r.expect("result");
        (
            r.nominated_node.unwrap_or_default(),
            r.victims.iter().map(|v| v.name.clone()).collect(),
        )
    }

    #[test]
    fn post_filter_should_prefer_victims_no_disruption_budget_protects() {
        let victims = |node: &str, v: &[&str]| {
            (
                node.to_string(),
                v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        // No budget: n1, evicting `a` (the least important).
        let mut c = cluster();
        assert_eq!(outcome(&c), victims("n1", &["a"]));
        // `a` protected (0 disruptions allowed): on n1 `a` gets its place back first
        // and `b` goes instead (priority 5), so n2 (victim priority 3) is better.
        c.upsert_pdb(pdb("protect-a", &["a"], 0));
        assert_eq!(outcome(&c), victims("n2", &["c"]));
        // `a` and `c` protected: n1 evicts `b` without violating, n2 would violate.
        c.upsert_pdb(pdb("protect-a", &["a", "c"], 0));
        assert_eq!(outcome(&c), victims("n1", &["b"]));
        // One disruption allowed: evicting `a` no longer violates; back to `a`.
        c.upsert_pdb(pdb("protect-a", &["a", "c"], 1));
        assert_eq!(outcome(&c), victims("n1", &["a"]));
        // A budget whose selector is empty protects nothing, as upstream.
        c.remove_pdb("default/protect-a");
        c.upsert_pdb(pdb("empty", &[], 0));
        assert_eq!(outcome(&c), victims("n1", &["a"]));
    }

    #[test]
    fn post_filter_should_break_ties_by_the_latest_started_victim() {
        // Same priorities everywhere: the node whose victim started last loses the
        // least work; on a node, the victim is the one that started last.
        let mut c = Cache::new();
        for n in ["n1", "n2"] {
            c.upsert_node(Arc::new(NodeBuilder::new(n).cpu("2").build()))
                .expect("node");
        }
        for (p, started, n) in [
            ("old1", 100, "n1"),
            ("new1", 200, "n1"),
            ("old2", 100, "n2"),
            ("new2", 300, "n2"),
        ] {
            c.add_pod(Arc::new(
                PodBuilder::new(p)
                    .priority(1)
                    .cpu("1")
                    .node(n)
                    .started(started)
                    .build(),
            ))
            .expect("pod");
        }
        assert_eq!(outcome(&c), ("n2".to_string(), vec!["new2".to_string()]));
    }

    #[test]
    fn post_filter_should_violate_a_budget_when_nothing_else_helps() {
        let mut c = cluster();
        c.upsert_pdb(pdb("all", &["a", "b", "c"], 0));
        // 2 CPUs at priority 10: n1 must lose both of its pods, n2 its one; both
        // violate, n2 fewer times.
        let (r, s) = run(&c, &PodBuilder::new("p").priority(10).cpu("2").build());
        assert!(s.is_success(), "{s}");
        let r = r.expect("result");
        assert_eq!(r.nominated_node.as_deref(), Some("n2"));
        assert_eq!(r.victims.len(), 1);
    }

    fn run(c: &Cache, pod: &PodInfo) -> (Option<PostFilterResult>, Status) {
        let snap = NodeSnapshot::new(c);
        let fits = Fits(Fit::new(&None).expect("fit"));
        let statuses = NodeStatusMap {
            statuses: snap
                .slots()
                .iter()
                .map(|&s| (s, Status::unschedulable("Insufficient cpu")))
                .collect(),
            absent: Status::unresolvable(NOT_HELPFUL),
        };
        DefaultPreemption.post_filter(&CycleState::new(), pod, &snap, &statuses, &fits)
    }

    #[test]
    fn post_filter_should_pick_the_node_with_the_least_important_victims() {
        let c = cluster();
        // Needs 1 CPU at priority 10: n1 frees it by evicting `a` (priority 1), n2 by
        // evicting `c` (priority 3); n1's highest victim priority is lower.
        let (r, s) = run(&c, &PodBuilder::new("p").priority(10).cpu("1").build());
        assert!(s.is_success(), "{s}");
        let r = r.expect("result");
        assert_eq!(r.nominated_node.as_deref(), Some("n1"));
        assert_eq!(
            r.victims
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            vec!["a"]
        );
    }

    #[test]
    fn post_filter_should_explain_why_no_node_helps() {
        let c = cluster();
        // Priority 2: only `a` (1 CPU) is lower on n1, too little for 2 CPUs; none on n2.
        let (r, s) = run(&c, &PodBuilder::new("p").priority(2).cpu("2").build());
        assert!(r.is_none());
        assert_eq!(
            s.message(),
            "preemption: 0/2 nodes are available: 1 Insufficient cpu, 1 No preemption victims found for incoming pod."
        );
        let never = PodBuilder::new("q").priority(10).build();
        let mut never_info = never;
        never_info.never_preempts = true;
        assert_eq!(
            run(&c, &never_info).1.message(),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
