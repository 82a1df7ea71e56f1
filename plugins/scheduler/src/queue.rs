//! The scheduling queue (PodQueue): activeQ, backoffQ, unschedulable and gated pods.
//!
//! * activeQ: pods ready to be tried, ordered by the QueueSort plugin.
//! * backoffQ: pods that failed recently, released when their backoff expires
//!   (1 s doubling per attempt up to 10 s).
//! * unschedulable: pods no node fits, parked until a cluster event that one of
//!   the plugins that rejected them cares about (or 5 minutes) moves them back.
//! * gated: pods with scheduling gates, until the gates are removed.
//!
//! Time never comes from a clock here: every operation takes `now`, so tests and
//! simulations control it. Heaps are lazily cleaned: an entry whose generation no
//! longer matches the pod's is skipped.

mod heap;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framework::{ClusterEvent, QueueSortPlugin, QueuedPodInfo};
use crate::metrics::Metrics;
use crate::pod_info::PodInfo;
use heap::Heap;

/// Initial backoff of a failed pod (upstream `podInitialBackoffSeconds`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff (upstream `podMaxBackoffSeconds`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest stay in the unschedulable pool without an event (`podMaxInUnschedulablePodsDuration`).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// Where a queued pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// In activeQ.
    Active,
    /// In backoffQ.
    Backoff,
    /// Parked as unschedulable.
    Unschedulable,
    /// Waiting for its scheduling gates to be removed.
    Gated,
    /// Popped and being scheduled.
    InFlight,
}

impl Location {
    /// The `queue` label of the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Location::Active => "active",
            Location::Backoff => "backoff",
            Location::Unschedulable => "unschedulable",
            Location::Gated => "gated",
            Location::InFlight => "in_flight",
        }
    }
}

#[derive(Debug)]
struct Entry {
    info: QueuedPodInfo,
    loc: Location,
    generation: u64,
    /// The scheduling cycle in which the pod was last popped.
    cycle: u64,
}

/// The scheduler's queue of pods to schedule.
pub struct SchedulingQueue {
    sort: Arc<dyn QueueSortPlugin>,
    pods: HashMap<String, Entry>,
    active: Heap<(QueuedPodInfo, u64)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_generation: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    counts: [i64; 5],
    metrics: Option<Metrics>,
}

/// Exponential backoff after `attempts` failed attempts: 1 s, 2 s, 4 s, 8 s, 10 s, ...
pub fn backoff_duration(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        d *= 2;
        if d >= MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d
}

impl SchedulingQueue {
    /// An empty queue ordered by `sort`, reporting to `metrics` when given.
    /// Its `scheduler_pending_pods` gauges are set (to 0) at once, so that every
    /// queue has a series from the start, also in a swapped-in instance.
    pub fn new(sort: Arc<dyn QueueSortPlugin>, metrics: Option<Metrics>) -> Self {
        let queue = SchedulingQueue {
            sort,
            pods: HashMap::new(),
            active: Heap::new(),
            backoff: BinaryHeap::new(),
            next_generation: 0,
            scheduling_cycle: 0,
            move_request_cycle: 0,
            counts: [0; 5],
            metrics,
        };
        if let Some(m) = &queue.metrics {
            queue.update_gauges(m);
        }
        queue
    }

    /// Replaces the QueueSort plugin (hot swap); reorders activeQ.
    pub fn set_sort(&mut self, sort: Arc<dyn QueueSortPlugin>) {
        self.sort = sort;
        for item in std::mem::take(&mut self.active).into_items() {
            self.push_active(item);
        }
    }

    fn push_active(&mut self, item: (QueuedPodInfo, u64)) {
        let sort = &self.sort;
        self.active.push(item, |a, b| sort.less(&a.0, &b.0));
    }

    /// Moves `uid` to `loc`, enqueuing it there and counting the move under `event`.
    fn place(&mut self, uid: &str, loc: Location, event: &str) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let Some(e) = self.pods.get_mut(uid) else {
            return;
        };
        self.counts[e.loc as usize] -= 1;
        self.counts[loc as usize] += 1;
        e.loc = loc;
        e.generation = generation;
        let item = (e.info.clone(), generation);
        let expiry = e.info.timestamp + backoff_duration(e.info.attempts);
        match loc {
            Location::Active => self.push_active(item),
            Location::Backoff => self
                .backoff
                .push(Reverse((expiry, generation, uid.to_string()))),
            _ => {}
        }
        if let Some(m) = &self.metrics {
            if loc != Location::InFlight {
                m.incoming_pods
                    .with_label_values(&[loc.label(), event])
                    .inc();
            }
            self.update_gauges(m);
        }
    }

    fn update_gauges(&self, m: &Metrics) {
        for loc in [
            Location::Active,
            Location::Backoff,
            Location::Unschedulable,
            Location::Gated,
        ] {
            m.pending(loc.label()).set(self.counts[loc as usize]);
        }
    }

    /// Adds a new unscheduled pod (or updates it when already queued).
    pub fn add(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if self.pods.contains_key(&pod.uid) {
            self.update(pod, now);
            return;
        }
        let uid = pod.uid.clone();
        let gated = pod.gated;
        let info = QueuedPodInfo {
            pod,
            timestamp: now,
            initial_attempt: None,
            first_seen: now,
            attempts: 0,
            unschedulable_plugins: Default::default(),
        };
        // Counted as in flight until placed, so that `place` moves it from there.
        self.counts[Location::InFlight as usize] += 1;
        self.pods.insert(
            uid.clone(),
            Entry {
                info,
                loc: Location::InFlight,
                generation: 0,
                cycle: 0,
            },
        );
        let loc = if gated {
            Location::Gated
        } else {
            Location::Active
        };
        self.place(&uid, loc, "PodAdd");
    }

    /// Applies an update of a queued pod; a parked pod whose spec changed is retried.
    pub fn update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        let Some(e) = self.pods.get_mut(&uid) else {
            self.add(pod, now);
            return;
        };
        let changed = e.info.pod.pod.spec != pod.pod.spec
            || e.info.pod.pod.metadata.labels != pod.pod.metadata.labels;
        let gated = pod.gated;
        e.info.pod = pod;
        match e.loc {
            Location::InFlight => {}
            Location::Gated if !gated => self.place(&uid, Location::Active, "PodUpdate"),
            Location::Gated => {}
            Location::Unschedulable if changed => {
                let loc = self.backoff_or_active(&uid, now);
                self.place(&uid, loc, "PodUpdate");
            }
            Location::Unschedulable => {}
            loc => self.place(&uid, loc, "PodUpdate"),
        }
    }

    /// Removes a pod (deleted, or bound by someone else).
    pub fn delete(&mut self, uid: &str) -> bool {
        match self.pods.remove(uid) {
            Some(e) => {
                self.counts[e.loc as usize] -= 1;
                if let Some(m) = &self.metrics {
                    self.update_gauges(m);
                }
                true
            }
            None => false,
        }
    }

    fn backoff_or_active(&self, uid: &str, now: Instant) -> Location {
        match self.pods.get(uid) {
            Some(e)
                if e.info.attempts > 0
                    && now < e.info.timestamp + backoff_duration(e.info.attempts) =>
            {
                Location::Backoff
            }
            _ => Location::Active,
        }
    }

    /// Moves pods whose backoff expired to activeQ.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((expiry, generation, uid))) = self.backoff.peek().cloned() {
            if expiry > now {
                break;
            }
            self.backoff.pop();
            if self
                .pods
                .get(&uid)
                .is_some_and(|e| e.generation == generation && e.loc == Location::Backoff)
            {
                self.place(&uid, Location::Active, "BackoffComplete");
            }
        }
    }

    /// Moves pods parked longer than [`MAX_UNSCHEDULABLE`] back to the queues.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| {
                e.loc == Location::Unschedulable
                    && now.saturating_duration_since(e.info.timestamp) > MAX_UNSCHEDULABLE
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            let loc = self.backoff_or_active(&uid, now);
            self.place(&uid, loc, "UnschedulableTimeout");
        }
    }

    /// Pops the next pod to schedule (after releasing expired backoffs), or `None`.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPodInfo> {
        self.flush_backoff(now);
        loop {
            let sort = &self.sort;
            let (item, generation) = self.active.pop(|a, b| sort.less(&a.0, &b.0))?;
            let uid = item.pod.uid.clone();
            if self
                .pods
                .get(&uid)
                .is_some_and(|e| e.loc == Location::Active && e.generation == generation)
            {
                self.scheduling_cycle += 1;
                let cycle = self.scheduling_cycle;
                self.place(&uid, Location::InFlight, "");
                let e = self.pods.get_mut(&uid)?;
                e.cycle = cycle;
                e.info.attempts += 1;
                e.info.initial_attempt.get_or_insert(now);
                return Some(e.info.clone());
            }
        }
    }

    /// A popped pod was scheduled (assumed): it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        if self
            .pods
            .get(uid)
            .is_some_and(|e| e.loc == Location::InFlight)
        {
            self.delete(uid);
        }
    }

    /// Requeues a popped pod after a failed attempt.
    ///
    /// An error goes to backoffQ; an unschedulable pod is parked, unless a cluster
    /// event arrived while it was being scheduled (then it backs off and retries).
    /// A pod deleted meanwhile is dropped.
    pub fn requeue(&mut self, info: QueuedPodInfo, error: bool, now: Instant) {
        let uid = info.pod.uid.clone();
        let move_requested = self.move_request_cycle;
        let Some(e) = self.pods.get_mut(&uid) else {
            return;
        };
        if e.loc != Location::InFlight {
            return;
        }
        let updated_pod = e.info.pod.clone();
        e.info = QueuedPodInfo {
            pod: updated_pod,
            timestamp: now,
            ..info
        };
        let loc = if error || move_requested >= e.cycle {
            Location::Backoff
        } else {
            Location::Unschedulable
        };
        self.place(&uid, loc, "ScheduleAttemptFailure");
    }

    /// Moves parked pods that `retry` accepts after `event` to backoffQ or activeQ.
    pub fn move_on_event(
        &mut self,
        event: ClusterEvent,
        now: Instant,
        retry: impl Fn(&QueuedPodInfo) -> bool,
    ) {
        self.move_request_cycle = self.scheduling_cycle;
        let moving: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| e.loc == Location::Unschedulable && retry(&e.info))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in moving {
            let loc = self.backoff_or_active(&uid, now);
            self.place(&uid, loc, event.label());
        }
    }

    /// When the earliest backoff expires, for the I/O layer's timer.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.iter().map(|Reverse((t, _, _))| *t).min()
    }

    /// Where a pod is, if queued.
    pub fn location(&self, uid: &str) -> Option<Location> {
        self.pods.get(uid).map(|e| e.loc)
    }

    /// Number of pods in `loc`.
    pub fn count(&self, loc: Location) -> usize {
        self.counts[loc as usize].max(0) as usize
    }

    /// Number of queued pods in any state.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// True when no pod is queued.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests;
