//! `Framework`: one profile's plugins per extension point, and the code that runs them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::interface::*;
use super::*;
use crate::cache::{Cache, NodeInfo};
use crate::metrics::{Metrics, Point, PointTimers};
use crate::parallel::map_chunks;
use crate::pod_info::PodInfo;

/// Longest time a Permit plugin may hold a pod (upstream `maxTimeout`).
pub const MAX_PERMIT_WAIT: Duration = Duration::from_secs(15 * 60);

/// Fewest nodes worth handing to another thread (spawning costs tens of µs).
pub const MIN_NODES_PER_THREAD: usize = 1024;

/// One profile's plugins, built by [`crate::profile`] from the config and a registry.
pub struct Framework {
    pub(crate) profile: String,
    pub(crate) queue_sort: Arc<dyn QueueSortPlugin>,
    pub(crate) pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub(crate) filter: Vec<Arc<dyn FilterPlugin>>,
    pub(crate) post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub(crate) pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub(crate) score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    pub(crate) reserve: Vec<Arc<dyn ReservePlugin>>,
    pub(crate) permit: Vec<Arc<dyn PermitPlugin>>,
    pub(crate) pre_bind: Vec<Arc<dyn PreBindPlugin>>,
    pub(crate) bind: Vec<Arc<dyn BindPlugin>>,
    pub(crate) post_bind: Vec<Arc<dyn PostBindPlugin>>,
    /// Events each plugin registered, by plugin name.
    pub(crate) events: HashMap<String, &'static [ClusterEvent]>,
    pub(crate) percentage_of_nodes_to_score: Option<u32>,
    pub(crate) record_scores: bool,
    pub(crate) parallelism: usize,
    pub(crate) metrics: Metrics,
    pub(crate) timers: PointTimers,
}

/// Feasible and rejected nodes of a filtered batch.
#[derive(Debug, Default)]
pub struct FilterOutcome {
    /// Slots that passed every Filter plugin.
    pub feasible: Vec<u32>,
    /// Slots that failed, with the first failing plugin's status.
    pub failed: Vec<(u32, Status)>,
}

/// The scores of one cycle.
#[derive(Debug, Default)]
pub struct ScoreTable {
    /// Weighted sum per feasible node, in `feasible` order.
    pub totals: Vec<i64>,
    /// Per plugin: name, weight, normalised scores (only when the profile records scores).
    pub plugins: Vec<(String, i64, Vec<i64>)>,
}

fn bit(mask: u64, i: usize) -> bool {
    i < 64 && mask & (1 << i) != 0
}

impl Framework {
    /// The profile's scheduler name.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// Names of the plugins at each configured point, for logs and swap reports.
    pub fn plugin_names(&self) -> BTreeSet<String> {
        self.events.keys().cloned().collect()
    }

    /// Whether a pod rejected by `plugins` is worth retrying after `event`.
    pub fn interested(&self, plugins: &BTreeSet<String>, event: ClusterEvent) -> bool {
        plugins.is_empty()
            || plugins.iter().any(|p| {
                self.events
                    .get(p)
                    .is_none_or(|events| events.contains(&event))
            })
    }

    fn time_plugin<R>(
        &self,
        state: &CycleState,
        plugin: &str,
        point: Point,
        f: impl FnOnce() -> (R, Code),
    ) -> R {
        if !state.record_plugin_metrics && state.plugin_times.is_none() {
            return f().0;
        }
        let start = Instant::now();
        let (r, code) = f();
        let elapsed = start.elapsed();
        if state.record_plugin_metrics {
            self.metrics
                .plugin_duration
                .with_label_values(&[plugin, point.label(), code.as_str()])
                .observe(elapsed.as_secs_f64());
        }
        if let Some(times) = &state.plugin_times {
            times.add(point.label(), plugin, elapsed);
        }
        r
    }

    /// Runs PreFilter plugins; a rejection or error names the plugin.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
    ) -> (Option<PreFilterResult>, Status) {
        let start = Instant::now();
        let mut merged: Option<PreFilterResult> = None;
        let mut narrowed_by = Vec::new();
        let mut outcome = Status::success();
        for (at, p) in self.pre_filter.iter().enumerate() {
            let (r, s) = if state.record_plugin_metrics || state.plugin_times.is_some() {
                let t = Instant::now();
                let out = p.pre_filter(state, pod, nodes);
                let elapsed = t.elapsed();
                if state.record_plugin_metrics {
                    self.metrics
                        .plugin_duration
                        .with_label_values(&[p.name(), "PreFilter", out.1.code().as_str()])
                        .observe(elapsed.as_secs_f64());
                }
                if let Some(times) = &state.plugin_times {
                    times.add(Point::PreFilter.label(), p.name(), elapsed);
                }
                out
            } else {
                p.pre_filter(state, pod, nodes)
            };
            if s.is_skip() {
                if let Some(i) = self.filter.iter().position(|f| f.name() == p.name()) {
                    state.skip_filter |= 1 << i.min(63);
                }
                if at < 64 {
                    state.skip_pre_filter |= 1 << at;
                }
                continue;
            }
            if !s.is_success() {
                outcome = match s.code() {
                    Code::Error => Status::error(format!(
                        "running PreFilter plugin {:?}: {}",
                        p.name(),
                        s.message()
                    )),
                    _ => s,
                }
                .with_plugin(p.name());
                break;
            }
            if let Some(names) = r.and_then(|r| r.node_names) {
                narrowed_by.push(p.name().to_string());
                let m = merged.get_or_insert_with(|| PreFilterResult {
                    node_names: Some(names.clone()),
                });
                if let Some(cur) = &mut m.node_names {
                    cur.retain(|n| names.contains(n));
                }
            }
        }
        if outcome.is_success()
            && merged
                .as_ref()
                .is_some_and(|m| m.node_names.as_ref().is_some_and(|n| n.is_empty()))
        {
            outcome = Status::unresolvable(format!(
                "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                narrowed_by.join(" ")
            ))
            .with_plugin(narrowed_by.first().map_or("", String::as_str));
        }
        self.timers
            .observe(Point::PreFilter, outcome.code(), start.elapsed());
        (merged, outcome)
    }

    /// Runs the Filter plugins over `slots` (one thread per large chunk).
    pub fn filter_nodes(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        slots: &[u32],
    ) -> Result<FilterOutcome, Status> {
        let start = Instant::now();
        let one_call = self.filter.iter().any(|f| f.filters_in_one_call());
        let threads = if one_call { 1 } else { self.parallelism };
        let parts = map_chunks(threads, MIN_NODES_PER_THREAD, slots, |chunk| {
            self.filter_chunk(state, pod, nodes, chunk)
        });
        let mut out = FilterOutcome::default();
        let mut result = Ok(());
        for part in parts {
            match part {
                Ok(o) => {
                    out.feasible.extend(o.feasible);
                    out.failed.extend(o.failed);
                }
                Err(e) => result = Err(e),
            }
        }
        if result.is_ok() && nodes.cache().has_nominated() {
            result = self.filter_with_nominated(state, pod, nodes, &mut out);
        }
        let code = result.as_ref().map_or(Code::Error, |_| Code::Success);
        self.timers.observe(Point::Filter, code, start.elapsed());
        result.map(|_| out)
    }

    /// The first pass of upstream's `RunFilterPluginsWithNominatedPods`: a node that
    /// passed the filters is rejected when it does not also fit with the pods
    /// nominated to it of equal or higher priority.
    fn filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        out: &mut FilterOutcome,
    ) -> Result<(), Status> {
        let mut keep = Vec::with_capacity(out.feasible.len());
        for slot in out.feasible.drain(..) {
            let node = nodes.node(slot);
            let nominated = nominated_for(nodes.cache(), pod, &node.name);
            if nominated.is_empty() {
                keep.push(slot);
                continue;
            }
            let s = run_filters_with_nominated(self, state, pod, node, &nominated);
            match s.code() {
                Code::Success | Code::Skip => keep.push(slot),
                Code::Error | Code::Wait => return Err(s),
                _ => out.failed.push((slot, s)),
            }
        }
        out.feasible = keep;
        Ok(())
    }

    fn filter_chunk(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        slots: &[u32],
    ) -> Result<FilterOutcome, Status> {
        let mut current = slots.to_vec();
        let mut failed = Vec::new();
        let mut rejected: Vec<(usize, Status)> = Vec::new();
        for (i, p) in self.filter.iter().enumerate() {
            if bit(state.skip_filter, i) || current.is_empty() {
                continue;
            }
            rejected.clear();
            self.time_plugin(state, p.name(), Point::Filter, || {
                p.filter_batch(state, pod, nodes, &current, &mut rejected);
                ((), Code::Success)
            });
            if rejected.is_empty() {
                continue;
            }
            let mut keep = vec![true; current.len()];
            for (at, s) in rejected.drain(..) {
                match s.code() {
                    Code::Success | Code::Skip => {}
                    Code::Error | Code::Wait => {
                        return Err(Status::error(format!(
                            "running {:?} filter plugin: {}",
                            p.name(),
                            s.message()
                        ))
                        .with_plugin(p.name()))
                    }
                    _ => {
                        if let (Some(k), Some(&slot)) = (keep.get_mut(at), current.get(at)) {
                            *k = false;
                            failed.push((slot, s.with_plugin(p.name())));
                        }
                    }
                }
            }
            let mut flags = keep.into_iter();
            current.retain(|_| flags.next().unwrap_or(true));
        }
        Ok(FilterOutcome {
            feasible: current,
            failed,
        })
    }

    /// Runs PostFilter plugins until one succeeds.
    pub fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        statuses: &NodeStatusMap,
    ) -> (Option<PostFilterResult>, Status) {
        let start = Instant::now();
        let mut reasons = Vec::new();
        let mut rejector = None;
        let mut result = None;
        let mut outcome = None;
        for p in &self.post_filter {
            let (r, s) = p.post_filter(state, pod, nodes, statuses, self);
            match s.code() {
                Code::Success => {
                    outcome = Some((r, s));
                    break;
                }
                Code::UnschedulableAndUnresolvable => {
                    outcome = Some((r, s.with_plugin(p.name())));
                    break;
                }
                Code::Unschedulable | Code::Pending => {
                    result = r.or(result);
                    reasons.extend(s.reasons().map(|r| r.to_string().into()));
                    rejector.get_or_insert_with(|| p.name().to_string());
                }
                _ => {
                    outcome = Some((None, Status::error(s.message()).with_plugin(p.name())));
                    break;
                }
            }
        }
        let (r, s) = outcome.unwrap_or_else(|| {
            let s = Status::with_reasons(Code::Unschedulable, reasons);
            (result, rejector.map_or(s.clone(), |p| s.with_plugin(&p)))
        });
        self.timers
            .observe(Point::PostFilter, s.code(), start.elapsed());
        (r, s)
    }

    /// Runs PreScore plugins on the feasible nodes.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        feasible: &[u32],
    ) -> Status {
        let start = Instant::now();
        let mut outcome = Status::success();
        for p in &self.pre_score {
            let s = p.pre_score(state, pod, nodes, feasible);
            if s.is_skip() {
                if let Some(i) = self.score.iter().position(|(sp, _)| sp.name() == p.name()) {
                    state.skip_score |= 1 << i.min(63);
                }
            } else if !s.is_success() {
                outcome = Status::error(format!(
                    "running PreScore plugin {:?}: {}",
                    p.name(),
                    s.message()
                ))
                .with_plugin(p.name());
                break;
            }
        }
        self.timers
            .observe(Point::PreScore, outcome.code(), start.elapsed());
        outcome
    }

    /// Runs Score and NormalizeScore plugins, checks ranges and applies weights.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        feasible: &[u32],
    ) -> Result<ScoreTable, Status> {
        let start = Instant::now();
        let result = self.score_all(state, pod, nodes, feasible);
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Success);
        self.timers.observe(Point::Score, code, start.elapsed());
        result
    }

    fn score_all(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        feasible: &[u32],
    ) -> Result<ScoreTable, Status> {
        let mut table = ScoreTable {
            totals: vec![0; feasible.len()],
            plugins: Vec::new(),
        };
        for (i, (p, weight)) in self.score.iter().enumerate() {
            if bit(state.skip_score, i) {
                continue;
            }
            let mut scores = self.time_plugin(state, p.name(), Point::Score, || {
                let threads = if p.scores_in_one_call() {
                    1
                } else {
                    self.parallelism
                };
                let parts = map_chunks(threads, MIN_NODES_PER_THREAD, feasible, |chunk| {
                    let mut out = vec![0; chunk.len()];
                    let s = p.score_batch(state, pod, nodes, chunk, &mut out);
                    (out, s)
                });
                let mut scores = Vec::with_capacity(feasible.len());
                let mut status = Status::success();
                for (out, s) in parts {
                    if !s.is_success() {
                        status = s;
                    }
                    scores.extend(out);
                }
                let code = status.code();
                ((scores, status), code)
            });
            if !scores.1.is_success() {
                return Err(Status::error(format!(
                    "running Score plugin {:?}: {}",
                    p.name(),
                    scores.1.message()
                ))
                .with_plugin(p.name()));
            }
            let s = p.normalize_scores(state, pod, &mut scores.0);
            if !s.is_success() {
                return Err(Status::error(format!(
                    "running Normalize on Score plugins: plugin {:?} failed with: {}",
                    p.name(),
                    s.message()
                ))
                .with_plugin(p.name()));
            }
            for (total, &score) in table.totals.iter_mut().zip(&scores.0) {
                if !(MIN_NODE_SCORE..=MAX_NODE_SCORE).contains(&score) {
                    return Err(Status::error(format!(
                        "plugin {:?} returns an invalid score {score}, it should in the range of [{MIN_NODE_SCORE}, {MAX_NODE_SCORE}] after normalizing",
                        p.name()
                    ))
                    .with_plugin(p.name()));
                }
                *total += score * weight;
            }
            if self.record_scores {
                table
                    .plugins
                    .push((p.name().to_string(), *weight, scores.0));
            }
        }
        Ok(table)
    }
}

/// Pods nominated to `node` that `pod` must leave room for: the others of equal
/// or higher priority (upstream `addGENominatedPods`).
pub fn nominated_for(cache: &Cache, pod: &PodInfo, node: &str) -> Vec<Arc<PodInfo>> {
    cache
        .nominated_pods(node)
        .iter()
        .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
        .cloned()
        .collect()
}

/// Upstream `RunFilterPluginsWithNominatedPods`: the filters must pass both with
/// `nominated` added to the node (and to a copy of the PreFilter state, through
/// the `AddPod` extensions) and without them (pod affinity may need them gone).
pub fn run_filters_with_nominated(
    filters: &dyn FilterRunner,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    nominated: &[Arc<PodInfo>],
) -> Status {
    if !nominated.is_empty() {
        let mut with = node.clone();
        let mut with_state = state.clone();
        for p in nominated {
            with.add_pod(p.clone());
            let s = filters.add_pod(&mut with_state, pod, p, &with);
            if !s.is_success() {
                return s;
            }
        }
        let s = filters.run_filters(&with_state, pod, &with);
        if !s.is_success() {
            return s;
        }
    }
    filters.run_filters(state, pod, node)
}

impl Framework {
    /// Runs `AddPod` (`add`) or `RemovePod` of the PreFilter plugins whose Filter
    /// was not skipped; an error names the plugin.
    fn run_pre_filter_extension(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        add: bool,
    ) -> Status {
        for (i, p) in self.pre_filter.iter().enumerate() {
            if bit(state.skip_pre_filter, i) {
                continue;
            }
            let s = if add {
                p.add_pod(state, pod, other, node)
            } else {
                p.remove_pod(state, pod, other, node)
            };
            if !s.is_success() {
                return Status::error(format!(
                    "running {} on PreFilter plugin {:?}: {}",
                    if add { "AddPod" } else { "RemovePod" },
                    p.name(),
                    s.message()
                ))
                .with_plugin(p.name());
            }
        }
        Status::success()
    }
}

impl FilterRunner for Framework {
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.run_pre_filter_extension(state, pod, added, node, true)
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.run_pre_filter_extension(state, pod, removed, node, false)
    }

    fn run_filters(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for (i, p) in self.filter.iter().enumerate() {
            if bit(state.skip_filter, i) {
                continue;
            }
            let s = p.filter(state, pod, node);
            if !s.is_success() && !s.is_skip() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }
}
