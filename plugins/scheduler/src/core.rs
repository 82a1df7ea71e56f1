//! The scheduler core: cache + queue + profiles, fed with events, asked for one decision at a time.
//!
//! The I/O layer (informers, HTTP, events) drives it:
//! 1. feed node and pod events: [`Scheduler::on_node_add`] ... [`Scheduler::on_pod_delete`];
//! 2. call [`Scheduler::schedule_one`]: a [`ScheduleOutcome`];
//! 3. for `Scheduled`, run the binding cycle: [`Scheduler::pre_bind`],
//!    [`Scheduler::bind`] (write the `Binding` itself on `Delegated`), then
//!    [`Scheduler::finish_binding`] with the result — binding cycles may run
//!    concurrently with scheduling, the token carries their state;
//! 4. call [`Scheduler::flush`] about once a second.
//!
//! Time is passed in (`now`), never read, except to measure durations for metrics.

mod cycle;
mod outcome;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

pub use cycle::{num_feasible_nodes_to_find, select_host, Rng, NO_NODES_AVAILABLE};
pub use outcome::{BindOutcome, ScheduleOutcome, ScheduledPod, ScoreRecord, UnschedulablePod};

use crate::cache::{Cache, CacheError};
use crate::config::SchedulerConfig;
use crate::framework::{ClusterEvent, Code, CycleState, Registry, Status, WaitingPod, WaitingPods};
use crate::metrics::Metrics;
use crate::pdb::PdbInfo;
use crate::pod_info::{PodError, PodInfo};
use crate::profile::{build_profiles, BuildError, Profile};
use crate::queue::SchedulingQueue;
use cycle::{schedule_pod, CycleContext, Failure};

/// One cycle in this many records per-plugin durations (upstream samples 10 %).
pub const PLUGIN_METRICS_SAMPLE_EVERY: u64 = 10;

/// Why the scheduler refused an event or a configuration.
///
/// Build errors and bad objects do not go away on retry; cache errors mean the
/// events arrived out of order and the object should be re-listed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A profile could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A pod has an invalid field.
    #[error(transparent)]
    Pod(#[from] PodError),
    /// The cache refused the change.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Metrics could not be registered.
    #[error("registering scheduler metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A plugin whose configuration changed in [`Scheduler::reconfigure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapReport {
    /// Profile.
    pub profile: String,
    /// Plugin.
    pub plugin: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
}

/// The scheduler's pure core.
pub struct Scheduler {
    cache: Cache,
    queue: SchedulingQueue,
    profiles: Vec<Profile>,
    by_name: HashMap<String, usize>,
    metrics: Metrics,
    next_start: usize,
    rng: Rng,
    cycles: u64,
    waiting: Arc<WaitingPods>,
}

impl Scheduler {
    /// Builds the profiles of `config` from `registry`, registering metrics into `prom`.
    pub fn new(
        config: &SchedulerConfig,
        registry: &Registry,
        prom: &prometheus::Registry,
    ) -> Result<Self, SchedulerError> {
        let metrics = Metrics::new(prom)?;
        let waiting = WaitingPods::new();
        let profiles = build_profiles(config, registry, &metrics, &waiting)?;
        let sort = profiles
            .first()
            .map(|p| p.framework.queue_sort.clone())
            .ok_or_else(|| BuildError {
                profile: String::new(),
                plugin: None,
                message: "no profiles".into(),
            })?;
        let by_name = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.framework.profile().to_string(), i))
            .collect();
        Ok(Scheduler {
            cache: Cache::new(),
            queue: SchedulingQueue::new(sort, Some(metrics.clone())),
            profiles,
            by_name,
            metrics,
            next_start: 0,
            rng: Rng::new(0x5eed),
            cycles: 0,
            waiting,
        })
    }

    /// Seeds the tie-breaking generator (for reproducible tests and benchmarks).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }

    /// Rebuilds every profile from `config` and `registry` (hot swap). On error the
    /// running profiles stay. Changed plugins are counted in
    /// `kubernel_scheduler_plugin_swaps_total` and returned.
    pub fn reconfigure(
        &mut self,
        config: &SchedulerConfig,
        registry: &Registry,
    ) -> Result<Vec<SwapReport>, SchedulerError> {
        let profiles = match build_profiles(config, registry, &self.metrics, &self.waiting) {
            Ok(p) => p,
            Err(e) => {
                let plugin = e.plugin.clone().unwrap_or_else(|| "*".into());
                self.metrics
                    .plugin_swaps
                    .with_label_values(&[&e.profile, &plugin, "failure"])
                    .inc();
                return Err(e.into());
            }
        };
        let mut reports = Vec::new();
        for p in &profiles {
            let name = p.framework.profile().to_string();
            let old = self
                .by_name
                .get(&name)
                .map(|&i| &self.profiles[i].identities);
            for (plugin, id) in &p.identities {
                let change = match old.and_then(|o| o.get(plugin)) {
                    None => "added",
                    Some(o) if o != id => "changed",
                    Some(_) => continue,
                };
                reports.push(SwapReport {
                    profile: name.clone(),
                    plugin: plugin.clone(),
                    change,
                });
            }
            for plugin in old
                .into_iter()
                .flat_map(|o| o.keys())
                .filter(|k| !p.identities.contains_key(*k))
            {
                reports.push(SwapReport {
                    profile: name.clone(),
                    plugin: plugin.clone(),
                    change: "removed",
                });
            }
        }
        for r in &reports {
            self.metrics
                .plugin_swaps
                .with_label_values(&[&r.profile, &r.plugin, "success"])
                .inc();
        }
        if let Some(first) = profiles.first() {
            self.queue.set_sort(first.framework.queue_sort.clone());
        }
        self.by_name = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.framework.profile().to_string(), i))
            .collect();
        self.profiles = profiles;
        Ok(reports)
    }

    fn move_on(&mut self, event: ClusterEvent, now: Instant) {
        self.move_on_except(event, now, "");
    }

    /// Moves parked pods interested in `event`, except the pod `uid` (upstream moves
    /// after a forgotten assumed pod without the pod itself).
    fn move_on_except(&mut self, event: ClusterEvent, now: Instant, uid: &str) {
        let (profiles, by_name) = (&self.profiles, &self.by_name);
        self.queue.move_on_event(event, now, |q| {
            q.pod.uid != uid
                && by_name.get(&q.pod.scheduler_name).is_none_or(|&i| {
                    profiles[i]
                        .framework
                        .interested(&q.unschedulable_plugins, event)
                })
        });
    }

    fn set_node_gauge(&self) {
        self.metrics
            .cache_size
            .with_label_values(&["nodes"])
            .set(self.cache.num_nodes() as i64);
    }

    /// A node was added (informer add).
    pub fn on_node_add(&mut self, node: Arc<Node>, now: Instant) -> Result<(), SchedulerError> {
        self.cache.upsert_node(node)?;
        self.set_node_gauge();
        self.move_on(ClusterEvent::NodeAdd, now);
        Ok(())
    }

    /// A node changed (informer update).
    pub fn on_node_update(&mut self, node: Arc<Node>, now: Instant) -> Result<(), SchedulerError> {
        self.cache.upsert_node(node)?;
        self.move_on(ClusterEvent::NodeUpdate, now);
        Ok(())
    }

    /// A node was deleted.
    pub fn on_node_delete(&mut self, name: &str, now: Instant) -> Result<(), SchedulerError> {
        self.cache.remove_node(name)?;
        self.set_node_gauge();
        self.move_on(ClusterEvent::NodeDelete, now);
        Ok(())
    }

    /// A PodDisruptionBudget was added or changed (preemption prefers victims it allows).
    pub fn on_pdb_upsert(&mut self, pdb: &PodDisruptionBudget) {
        self.cache.upsert_pdb(PdbInfo::new(pdb));
    }

    /// A PodDisruptionBudget was deleted.
    pub fn on_pdb_delete(&mut self, namespace: &str, name: &str) {
        self.cache.remove_pdb(&format!("{namespace}/{name}"));
    }

    /// Whether a profile schedules pods with this `spec.schedulerName`.
    pub fn is_responsible(&self, scheduler_name: &str) -> bool {
        self.by_name.contains_key(scheduler_name)
    }

    /// A pod was added: bound pods go to the cache (confirming an assumed pod),
    /// unbound pods of our profiles to the queue, others are ignored.
    pub fn on_pod_add(&mut self, pod: Arc<Pod>, now: Instant) -> Result<(), SchedulerError> {
        let info = Arc::new(PodInfo::new(pod)?);
        if info.node_name.is_some() {
            self.queue.delete(&info.uid);
            self.cache.remove_nominated(&info.uid);
            let was_assumed = self.cache.is_assumed(&info.uid);
            self.cache.add_pod(info)?;
            if !was_assumed {
                self.move_on(ClusterEvent::AssignedPodAdd, now);
            }
        } else if self.is_responsible(&info.scheduler_name) && !self.cache.contains_pod(&info.uid) {
            if let Some(node) = &info.nominated_node {
                self.cache.add_nominated(info.clone(), node);
            }
            self.queue.add(info, now);
        }
        Ok(())
    }

    /// A pod changed.
    pub fn on_pod_update(&mut self, pod: Arc<Pod>, now: Instant) -> Result<(), SchedulerError> {
        let info = Arc::new(PodInfo::new(pod)?);
        if info.node_name.is_some() {
            let known = self.cache.contains_pod(&info.uid) && !self.cache.is_assumed(&info.uid);
            self.queue.delete(&info.uid);
            self.cache.remove_nominated(&info.uid);
            self.cache.add_pod(info)?;
            let event = if known {
                ClusterEvent::AssignedPodUpdate
            } else {
                ClusterEvent::AssignedPodAdd
            };
            self.move_on(event, now);
        } else if self.cache.is_assumed(&info.uid) {
            // Its binding is in flight; the bound version will follow.
        } else if self.is_responsible(&info.scheduler_name) {
            // An update without a nominated node keeps the one preemption just chose
            // (its status patch may still be in flight), as upstream's nominator does.
            match &info.nominated_node {
                Some(node) => self.cache.add_nominated(info.clone(), node),
                None => self.cache.update_nominated(info.clone()),
            }
            self.queue.update(info, now);
        } else {
            self.cache.remove_nominated(&info.uid);
            self.queue.delete(&info.uid);
        }
        Ok(())
    }

    /// A pod was deleted.
    pub fn on_pod_delete(&mut self, uid: &str, now: Instant) {
        // Upstream `RejectWaitingPod`: its binding cycle ends and forgets it.
        self.waiting.reject(uid, "", "removed");
        self.queue.delete(uid);
        self.cache.remove_nominated(uid);
        let bound = self.cache.contains_pod(uid) && !self.cache.is_assumed(uid);
        if self.cache.remove_pod(uid).is_some() && bound {
            self.move_on(ClusterEvent::AssignedPodDelete, now);
        }
    }

    /// Releases expired backoffs and pods parked too long; call about once a second.
    pub fn flush(&mut self, now: Instant) {
        self.queue.flush_backoff(now);
        self.queue.flush_unschedulable(now);
        let assumed = self.cache.num_assumed();
        let size = &self.metrics.cache_size;
        size.with_label_values(&["assumed_pods"])
            .set(assumed as i64);
        size.with_label_values(&["pods"])
            .set(self.cache.num_pods() as i64);
        self.set_node_gauge();
    }

    /// When the next backoff expires (for the I/O layer's timer).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.queue.next_backoff_expiry()
    }

    /// The cache (read-only).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The queue (read-only).
    pub fn queue(&self) -> &SchedulingQueue {
        &self.queue
    }

    /// The profiles' scheduler names.
    pub fn profile_names(&self) -> Vec<&str> {
        self.profiles
            .iter()
            .map(|p| p.framework.profile())
            .collect()
    }

    fn record_attempt(&self, result: &str, profile: &str, started: Instant) {
        self.metrics
            .schedule_attempts
            .with_label_values(&[result, profile])
            .inc();
        self.metrics
            .attempt_duration
            .with_label_values(&[result, profile])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Pops the next pod and runs one scheduling cycle; `None` when no pod is ready.
    pub fn schedule_one(&mut self, now: Instant) -> Option<ScheduleOutcome> {
        loop {
            let q = self.queue.pop(now)?;
            let pod = q.pod.clone();
            let Some(&pi) = self.by_name.get(&pod.scheduler_name) else {
                self.queue.delete(&pod.uid);
                continue;
            };
            if pod.terminating || self.cache.contains_pod(&pod.uid) {
                self.queue.delete(&pod.uid);
                continue;
            }
            let started = Instant::now();
            let span = tracing::info_span!(
                "scheduling_cycle",
                pod = %pod.key(),
                profile = %pod.scheduler_name,
                result = tracing::field::Empty,
                node = tracing::field::Empty,
                evaluated_nodes = tracing::field::Empty,
                feasible_nodes = tracing::field::Empty,
                pre_filter_seconds = tracing::field::Empty,
                filter_seconds = tracing::field::Empty,
                post_filter_seconds = tracing::field::Empty,
                pre_score_seconds = tracing::field::Empty,
                score_seconds = tracing::field::Empty,
                reserve_seconds = tracing::field::Empty,
                permit_seconds = tracing::field::Empty,
                plugin_durations = tracing::field::Empty,
            );
            let _cycle = span.enter();
            let fw = self.profiles[pi].framework.clone();
            self.cache.refresh_columns();
            self.cycles += 1;
            let mut state = CycleState::new();
            state.record_plugin_metrics = self.cycles.is_multiple_of(PLUGIN_METRICS_SAMPLE_EVERY);
            if !span.is_disabled() {
                state.plugin_times = Some(crate::framework::PluginTimes::default());
            }
            let ctx = CycleContext {
                cache: &self.cache,
                next_start: &mut self.next_start,
                rng: &mut self.rng,
            };
            let profile = fw.profile().to_string();
            let placement = match schedule_pod(&fw, ctx, &mut state, &pod) {
                Ok(p) => p,
                Err(Failure::Error(s)) => {
                    span.record("result", "error");
                    record_plugin_times(&span, &state);
                    return Some(self.fail(q, &profile, started, s, now));
                }
                Err(Failure::Unschedulable {
                    message,
                    reasons,
                    plugins,
                    nominated,
                    mut victims,
                }) => {
                    let (mut rejected_victims, mut cleared_nominations) = (Vec::new(), Vec::new());
                    if let Some(node) = &nominated {
                        // Upstream `prepareCandidate`: a victim waiting on Permit is
                        // rejected rather than deleted...
                        victims.retain(|v| {
                            let waiting = self.waiting.reject(
                                &v.uid,
                                crate::plugins::default_preemption::NAME,
                                "preempted",
                            );
                            if waiting {
                                rejected_victims.push(v.clone());
                            }
                            !waiting
                        });
                        // ...and lower-priority pods nominated to the node may no longer
                        // fit there: their nomination goes.
                        cleared_nominations = self
                            .cache
                            .nominated_pods(node)
                            .iter()
                            .filter(|p| p.priority < pod.priority && p.uid != pod.uid)
                            .cloned()
                            .collect();
                        for p in &cleared_nominations {
                            self.cache.remove_nominated(&p.uid);
                        }
                        self.cache.add_nominated(pod.clone(), node);
                        self.metrics
                            .preemption_victims
                            .observe((victims.len() + rejected_victims.len()) as f64);
                    }
                    let mut q = q;
                    q.unschedulable_plugins = plugins;
                    self.queue.requeue(q, false, now);
                    span.record("result", "unschedulable");
                    record_plugin_times(&span, &state);
                    self.record_attempt("unschedulable", &profile, started);
                    return Some(ScheduleOutcome::Unschedulable(UnschedulablePod {
                        pod,
                        profile,
                        message,
                        reasons,
                        nominated_node: nominated,
                        victims,
                        rejected_victims,
                        cleared_nominations,
                    }));
                }
            };
            let node = self.cache.node(placement.slot).name.clone();
            if let Err(e) = self.cache.assume_pod(pod.clone(), &node) {
                span.record("result", "error");
                record_plugin_times(&span, &state);
                return Some(self.fail(q, &profile, started, Status::error(e.to_string()), now));
            }
            self.cache.remove_nominated(&pod.uid);
            let s = fw.run_reserve(&mut state, &pod, &node);
            if !s.is_success() {
                let _ = self.cache.forget_pod(&pod.uid);
                span.record("result", "error");
                record_plugin_times(&span, &state);
                return Some(self.fail(q, &profile, started, s, now));
            }
            let (s, waits) = fw.run_permit(&mut state, &pod, &node);
            if s.is_rejected() || s.code() == Code::Error {
                fw.run_unreserve(&mut state, &pod, &node);
                let _ = self.cache.forget_pod(&pod.uid);
                if s.code() == Code::Error {
                    span.record("result", "error");
                    record_plugin_times(&span, &state);
                    return Some(self.fail(q, &profile, started, s, now));
                }
                self.queue.requeue(q, false, now);
                span.record("result", "unschedulable");
                record_plugin_times(&span, &state);
                self.record_attempt("unschedulable", &profile, started);
                return Some(ScheduleOutcome::Unschedulable(UnschedulablePod {
                    pod,
                    profile,
                    message: s.message(),
                    reasons: Default::default(),
                    nominated_node: None,
                    victims: Vec::new(),
                    rejected_victims: Vec::new(),
                    cleared_nominations: Vec::new(),
                }));
            }
            // Upstream adds the pod to the waiting map before the binding cycle starts, so
            // a later pod's Permit may already allow it.
            span.record("result", "scheduled");
            record_plugin_times(&span, &state);
            span.record("node", node.as_str());
            span.record("evaluated_nodes", placement.evaluated);
            span.record("feasible_nodes", placement.feasible);
            let waiting = (s.code() == Code::Wait).then(|| {
                let wp = WaitingPod::new(pod.clone(), &node, waits, now);
                self.waiting.add(wp.clone());
                wp
            });
            return Some(ScheduleOutcome::Scheduled(Box::new(ScheduledPod {
                pod,
                node,
                profile,
                evaluated_nodes: placement.evaluated,
                feasible_nodes: placement.feasible,
                scores: placement.scores,
                waiting,
                state,
                queued: q,
                framework: fw,
                started,
            })));
        }
    }

    fn fail(
        &mut self,
        q: crate::framework::QueuedPodInfo,
        profile: &str,
        started: Instant,
        s: Status,
        now: Instant,
    ) -> ScheduleOutcome {
        let pod = q.pod.clone();
        self.queue.requeue(q, true, now);
        self.record_attempt("error", profile, started);
        tracing::warn!(pod = %pod.key(), profile, error = %s, "scheduling attempt failed");
        ScheduleOutcome::Error {
            pod,
            profile: profile.to_string(),
            message: s.message(),
        }
    }

    /// Records how long a binding cycle waited on Permit and how the wait ended
    /// (`scheduler_permit_wait_duration_seconds{result}`).
    pub fn observe_permit_wait(&self, status: &Status, waited: std::time::Duration) {
        self.metrics
            .permit_wait_duration
            .with_label_values(&[status.code().as_str()])
            .observe(waited.as_secs_f64());
    }

    /// Pods waiting on Permit (what Permit plugins get in their factory context).
    pub fn waiting_pods(&self) -> &Arc<WaitingPods> {
        &self.waiting
    }

    /// Runs the PreBind plugins of a scheduled pod.
    pub fn pre_bind(&self, sp: &mut ScheduledPod) -> Status {
        sp.framework.run_pre_bind(&mut sp.state, &sp.pod, &sp.node)
    }

    /// Runs the Bind plugins; `Delegated` means the I/O layer writes the `Binding`.
    pub fn bind(&self, sp: &mut ScheduledPod) -> BindOutcome {
        let s = sp.framework.run_bind(&mut sp.state, &sp.pod, &sp.node);
        match s.code() {
            Code::Skip => BindOutcome::Delegated,
            Code::Success => BindOutcome::Bound,
            _ => BindOutcome::Failed(s),
        }
    }

    /// Ends a binding cycle: on success runs PostBind and counts the pod as
    /// scheduled (the cache confirms it when the bound pod arrives); on failure
    /// unreserves, forgets the assumed pod and requeues it with backoff.
    pub fn finish_binding(
        &mut self,
        mut sp: ScheduledPod,
        result: Result<(), String>,
        now: Instant,
    ) {
        self.waiting.remove(&sp.pod.uid);
        match result {
            Ok(()) => {
                sp.framework.run_post_bind(&sp.state, &sp.pod, &sp.node);
                self.queue.done(&sp.pod.uid);
                self.record_attempt("scheduled", &sp.profile, sp.started);
                let attempts = sp.queued.attempts.to_string();
                self.metrics
                    .sli_duration
                    .with_label_values(&[&attempts])
                    .observe(
                        now.saturating_duration_since(sp.queued.first_seen)
                            .as_secs_f64(),
                    );
            }
            Err(message) => {
                sp.framework.run_unreserve(&mut sp.state, &sp.pod, &sp.node);
                let forgotten = self.cache.is_assumed(&sp.pod.uid)
                    && self.cache.forget_pod(&sp.pod.uid).is_ok();
                tracing::warn!(pod = %sp.pod.key(), node = %sp.node, error = %message, "binding failed");
                let profile = sp.profile.clone();
                let uid = sp.pod.uid.clone();
                self.fail(sp.queued, &profile, sp.started, Status::error(message), now);
                if forgotten {
                    // Upstream: forgetting an assumed pod frees its room, like a
                    // deleted pod; the pod itself stays where it was requeued.
                    self.move_on_except(ClusterEvent::AssignedPodDelete, now, &uid);
                }
            }
        }
    }

    /// Ends a binding cycle whose Permit wait was denied or timed out: the pod is
    /// forgotten and parked as unschedulable. False when the pod was deleted
    /// meanwhile (nothing to report).
    pub fn reject(&mut self, mut sp: ScheduledPod, status: &Status, now: Instant) -> bool {
        self.waiting.remove(&sp.pod.uid);
        sp.framework.run_unreserve(&mut sp.state, &sp.pod, &sp.node);
        if !self.cache.is_assumed(&sp.pod.uid) {
            // Deleted while it waited: nothing to retry.
            return false;
        }
        let forgotten = self.cache.forget_pod(&sp.pod.uid).is_ok();
        tracing::info!(pod = %sp.pod.key(), reason = %status, "permit rejected");
        let mut q = sp.queued;
        q.unschedulable_plugins = status.plugin().map(String::from).into_iter().collect();
        let uid = q.pod.uid.clone();
        self.queue.requeue(q, false, now);
        self.record_attempt("unschedulable", &sp.profile, sp.started);
        if forgotten {
            self.move_on_except(ClusterEvent::AssignedPodDelete, now, &uid);
        }
        true
    }
}

#[cfg(test)]
mod tests;

/// Puts the time each plugin took in this cycle into the cycle's span.
fn record_plugin_times(span: &tracing::Span, state: &CycleState) {
    if let Some(times) = &state.plugin_times {
        span.record("plugin_durations", times.summary());
    }
}
