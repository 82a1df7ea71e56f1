//! The watch cache every backend serves reads from: current objects, the event history window and the watchers.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubernel_sdk::prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounterVec, Opts, Registry,
};
use tokio::sync::mpsc;
use tracing::debug;

use super::{Event, EventType, ListOptions, ListResult, Revision, StoreError, Stored, Watch};

/// The watch cache's metrics, kube-apiserver's names where it has them: events in
/// (from the backend) and out (to watchers), watchers dropped for falling behind
/// (the loop's errors), re-initialisations, and how long one batch of events takes
/// to apply and hand out.
#[derive(Clone, Debug)]
pub struct CacheMetrics {
    /// `apiserver_watch_cache_events_received_total{resource}`.
    pub received: IntCounterVec,
    /// `apiserver_watch_cache_events_dispatched_total{resource}`.
    pub dispatched: IntCounterVec,
    /// `apiserver_terminated_watchers_total{resource}`: watchers closed because they
    /// fell `watcher_buffer` events behind (their clients re-watch).
    pub terminated: IntCounterVec,
    /// `apiserver_watch_cache_initializations_total{resource}`: the cache (re)loaded.
    pub initializations: IntCounterVec,
    /// `kubernel_watch_cache_apply_duration_seconds`: one batch of events applied and
    /// handed to the watchers.
    pub apply_duration: Histogram,
}

impl CacheMetrics {
    /// New handles, registered in `registry`.
    pub fn registered(
        registry: &Registry,
    ) -> Result<CacheMetrics, kubernel_sdk::prometheus::Error> {
        let counter =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["resource"]);
        let m = CacheMetrics {
            received: counter(
                "apiserver_watch_cache_events_received_total",
                "Counter of events received in watch cache broken by resource type.",
            )?,
            dispatched: counter(
                "apiserver_watch_cache_events_dispatched_total",
                "Counter of events dispatched in watch cache broken by resource type.",
            )?,
            terminated: counter(
                "apiserver_terminated_watchers_total",
                "Counter of watchers closed due to unresponsiveness broken by resource type.",
            )?,
            initializations: counter(
                "apiserver_watch_cache_initializations_total",
                "Counter of watch cache initializations broken by resource type.",
            )?,
            apply_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubernel_watch_cache_apply_duration_seconds",
                    "Duration of applying one batch of store events to the watch cache and handing them to its watchers.",
                )
                .buckets(exponential_buckets(0.00001, 2.0, 18)?),
            )?,
        };
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.dispatched.clone()))?;
        registry.register(Box::new(m.terminated.clone()))?;
        registry.register(Box::new(m.initializations.clone()))?;
        registry.register(Box::new(m.apply_duration.clone()))?;
        Ok(m)
    }
}

/// Limits of the watch cache: how much history watches may resume from, and how
/// far behind a watcher may fall; and where it reports its metrics.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Most events kept for watches to start from (older revisions are compacted).
    pub history_revisions: usize,
    /// Oldest event kept for watches to start from.
    pub history_age: Duration,
    /// Events a watcher may have unread before it is closed (its client re-watches).
    pub watcher_buffer: usize,
    /// The metrics to update, if any.
    pub metrics: Option<CacheMetrics>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            history_revisions: 10_000,
            history_age: Duration::from_secs(5 * 60),
            watcher_buffer: 1024,
            metrics: None,
        }
    }
}

/// Everything reads are served from. One writer feeds it, in revision order: the
/// embedded store's commit thread after each batch is on disk, or the etcd
/// backend's watch of its key prefix.
///
/// Invariant: the history holds every event with a revision in
/// `compacted + 1 ..= revision`, oldest first. Revisions are increasing but need
/// not be consecutive (etcd spends revisions on keys outside the prefix).
pub(super) struct Cache {
    /// Current objects by key.
    objects: BTreeMap<Arc<str>, Stored>,
    /// Number of keys per resource (key part before the first `/`).
    per_resource: BTreeMap<String, usize>,
    /// Revision the cache is current at.
    revision: Revision,
    /// Revision before the oldest event kept.
    compacted: Revision,
    /// Recent events with the time they were applied, oldest first.
    history: VecDeque<(Instant, Event)>,
    /// Live watchers.
    watchers: Vec<Watcher>,
    /// History and watcher limits.
    options: CacheOptions,
}

/// One registered watch.
struct Watcher {
    /// Key prefix it watches.
    prefix: String,
    /// It gets the events after this revision only.
    after: Revision,
    /// Where its events go.
    tx: mpsc::Sender<Event>,
}

impl Cache {
    /// A cache holding `objects` at `revision`, with an empty history (so watches
    /// may start from `revision` on).
    pub(super) fn new(
        objects: BTreeMap<Arc<str>, Stored>,
        revision: Revision,
        options: CacheOptions,
    ) -> Cache {
        let mut cache = Cache {
            objects: BTreeMap::new(),
            per_resource: BTreeMap::new(),
            revision,
            compacted: revision,
            history: VecDeque::new(),
            watchers: Vec::new(),
            options,
        };
        cache.replace(objects, revision);
        cache.count_initialization();
        cache
    }

    /// Reads one key.
    pub(super) fn get(&self, key: &str) -> Option<Stored> {
        self.objects.get(key).cloned()
    }

    /// Revision the cache is current at.
    pub(super) fn revision(&self) -> Revision {
        self.revision
    }

    /// Revision before the oldest event kept.
    pub(super) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// Number of keys.
    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Number of registered watchers.
    pub(super) fn watchers(&self) -> usize {
        self.watchers.len()
    }

    /// Number of keys per resource, in resource order.
    pub(super) fn count_by_resource(&self) -> Vec<(String, usize)> {
        self.per_resource
            .iter()
            .map(|(resource, count)| (resource.clone(), *count))
            .collect()
    }

    /// One page of the keys under `opts.prefix`, after `opts.start_after`, as they
    /// are now or, with `opts.revision`, as they were at that revision.
    ///
    /// A past revision is rebuilt from the current objects by undoing the kept
    /// events after it (each event carries the object before it), so it must still
    /// be in the history window ([`StoreError::Compacted`] otherwise) and not be
    /// ahead of the cache ([`StoreError::FutureRevision`]).
    pub(super) fn list(&self, opts: &ListOptions, now: Instant) -> Result<ListResult, StoreError> {
        let prefix = opts.prefix.as_str();
        let start = match opts.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = opts.limit.filter(|limit| *limit > 0).unwrap_or(usize::MAX);
        let current = self
            .objects
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, stored)| (key.as_ref(), Some(stored)));
        let at = match opts.revision {
            Some(at) if at < self.revision => at,
            Some(at) if at > self.revision => {
                return Err(StoreError::FutureRevision {
                    requested: at,
                    current: self.revision,
                })
            }
            _ => {
                let (items, remaining) = page(current, limit);
                return Ok(ListResult {
                    items,
                    revision: self.revision,
                    remaining,
                });
            }
        };
        let compacted = self.horizon(now);
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        // The state at `at` of every key changed since: the object before the
        // oldest later event (none when that event created it).
        let mut undone: BTreeMap<&str, Option<&Stored>> = BTreeMap::new();
        let after_start = |key: &str| match start {
            Bound::Excluded(after) => key > after,
            _ => true,
        };
        for (_, event) in self.history.iter().rev() {
            if event.revision <= at {
                break;
            }
            let key = event.object.key.as_ref();
            if key.starts_with(prefix) && after_start(key) {
                undone.insert(key, event.prev.as_ref());
            }
        }
        let merged = Merge {
            current: current.peekable(),
            undone: undone.into_iter().peekable(),
        };
        let (items, remaining) = page(merged, limit);
        Ok(ListResult {
            items,
            revision: at,
            remaining,
        })
    }

    /// The revision before the oldest event a read may use now: [`Cache::compacted`],
    /// or later when the oldest kept events are beyond the count or age limit and
    /// will be trimmed at the next write.
    fn horizon(&self, now: Instant) -> Revision {
        let excess = self
            .history
            .len()
            .saturating_sub(self.options.history_revisions);
        let too_old = self.history.partition_point(|(at, _)| {
            now.saturating_duration_since(*at) > self.options.history_age
        });
        match excess.max(too_old) {
            0 => self.compacted,
            trimmed => self.history[trimmed - 1].1.revision.max(self.compacted),
        }
    }

    /// Starts a watch of `prefix` after `from`: the kept events after it, and a
    /// watcher for the events applied from now on.
    ///
    /// `reached` is the newest revision the backend is known to have reached: a
    /// watch may start up to it even before the cache has applied that far (a
    /// client read the revision from another apiserver of the same etcd).
    pub(super) fn watch(
        &mut self,
        prefix: &str,
        from: Revision,
        reached: Revision,
        now: Instant,
    ) -> Result<Watch, StoreError> {
        self.trim(now);
        if from < self.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: self.compacted,
            });
        }
        let current = self.revision.max(reached);
        if from > current {
            return Err(StoreError::FutureRevision {
                requested: from,
                current,
            });
        }
        let skip = self
            .history
            .partition_point(|(_, event)| event.revision <= from);
        let backlog = self
            .history
            .range(skip..)
            .map(|(_, event)| event)
            .filter(|event| event.object.key.starts_with(prefix))
            .map(Event::unshared)
            .collect();
        let (tx, events) = mpsc::channel(self.options.watcher_buffer.max(1));
        self.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            after: from,
            tx,
        });
        Ok(Watch { backlog, events })
    }

    /// Applies events (increasing revisions after the current one): updates the
    /// objects, appends to the history and delivers to watchers.
    pub(super) fn apply(&mut self, events: &[Event], now: Instant) {
        let started = Instant::now();
        for event in events {
            let key = &event.object.key;
            match event.kind {
                EventType::Added | EventType::Modified => {
                    if self
                        .objects
                        .insert(key.clone(), event.object.clone())
                        .is_none()
                    {
                        let resource = resource_of(key);
                        if !self.per_resource.contains_key(resource) {
                            self.first_seen(resource);
                        }
                        *self.per_resource.entry(resource.to_owned()).or_insert(0) += 1;
                    }
                }
                EventType::Deleted => {
                    if self.objects.remove(key).is_some() {
                        self.forget_one(resource_of(key));
                    }
                }
            }
            self.revision = self.revision.max(event.revision);
            self.history.push_back((now, event.unshared()));
        }
        self.trim(now);
        self.deliver(events);
        if let Some(m) = &self.options.metrics {
            for (resource, n) in per_resource(events.iter()) {
                m.received.with_label_values(&[resource]).inc_by(n);
            }
            m.apply_duration.observe(started.elapsed().as_secs_f64());
        }
    }

    /// Records that nothing under the cache's keys changed up to `revision` (an
    /// etcd progress notification): lists and watches may use it from now on.
    pub(super) fn advance(&mut self, revision: Revision) {
        self.revision = self.revision.max(revision);
    }

    /// Forgets the events up to `revision` (the backend compacted its history there):
    /// watches from before it answer [`StoreError::Compacted`].
    pub(super) fn compact(&mut self, revision: Revision) {
        let revision = revision.min(self.revision);
        while self
            .history
            .front()
            .is_some_and(|(_, event)| event.revision <= revision)
        {
            self.history.pop_front();
        }
        self.compacted = self.compacted.max(revision);
    }

    /// Replaces every object with `objects` read at `revision` (a re-list after the
    /// events since the cache's revision were compacted away): the history is
    /// dropped and every watcher closed, so their clients re-watch and get a 410.
    pub(super) fn reset(&mut self, objects: BTreeMap<Arc<str>, Stored>, revision: Revision) {
        self.close_watchers();
        self.history.clear();
        self.replace(objects, revision);
        self.count_initialization();
    }

    /// Counts a (re)load of the cache for every resource it holds.
    fn count_initialization(&self) {
        if let Some(m) = &self.options.metrics {
            for resource in self.per_resource.keys() {
                m.initializations.with_label_values(&[resource]).inc();
                m.terminated.with_label_values(&[resource]);
            }
        }
    }

    /// Starts the terminated-watcher series of a resource the cache holds for the
    /// first time at zero, so that `increase()` sees its first one.
    fn first_seen(&self, resource: &str) {
        if let Some(m) = &self.options.metrics {
            m.terminated.with_label_values(&[resource]);
        }
    }

    /// Closes every watcher (their receivers end).
    pub(super) fn close_watchers(&mut self) {
        self.watchers.clear();
    }

    /// Sets the objects and their counts, current and compacted at `revision`.
    fn replace(&mut self, objects: BTreeMap<Arc<str>, Stored>, revision: Revision) {
        self.per_resource.clear();
        for key in objects.keys() {
            *self
                .per_resource
                .entry(resource_of(key).to_owned())
                .or_insert(0) += 1;
        }
        self.objects = objects;
        self.revision = revision;
        self.compacted = revision;
    }

    /// Drops the oldest events beyond the count or age limit.
    fn trim(&mut self, now: Instant) {
        while let Some((at, event)) = self.history.front() {
            let too_many = self.history.len() > self.options.history_revisions;
            let too_old = now.saturating_duration_since(*at) > self.options.history_age;
            if !too_many && !too_old {
                break;
            }
            self.compacted = event.revision;
            self.history.pop_front();
        }
    }

    /// Sends `events` to the watchers of their keys; drops watchers that are gone
    /// or too far behind (their clients re-watch).
    fn deliver(&mut self, events: &[Event]) {
        // Counted per batch and resource, so the counters cost one update each.
        let mut dispatched: BTreeMap<&str, u64> = BTreeMap::new();
        let mut terminated: BTreeMap<&str, u64> = BTreeMap::new();
        self.watchers.retain(|watcher| {
            if watcher.tx.is_closed() {
                return false;
            }
            let mine = |event: &&Event| {
                event.revision > watcher.after && event.object.key.starts_with(&watcher.prefix)
            };
            for event in events.iter().filter(mine) {
                if let Err(err) = watcher.tx.try_send(event.clone()) {
                    let reason = match err {
                        mpsc::error::TrySendError::Full(_) => {
                            *terminated.entry(resource_of(&event.object.key)).or_default() += 1;
                            "too far behind"
                        }
                        mpsc::error::TrySendError::Closed(_) => "closed",
                    };
                    debug!(prefix = %watcher.prefix, revision = event.revision, reason, "watcher dropped");
                    return false;
                }
                *dispatched.entry(resource_of(&event.object.key)).or_default() += 1;
            }
            true
        });
        if let Some(m) = &self.options.metrics {
            for (resource, n) in dispatched {
                m.dispatched.with_label_values(&[resource]).inc_by(n);
            }
            for (resource, n) in terminated {
                m.terminated.with_label_values(&[resource]).inc_by(n);
            }
        }
    }

    /// Decrements the key count of `resource`, forgetting it at zero.
    fn forget_one(&mut self, resource: &str) {
        if let Some(count) = self.per_resource.get_mut(resource) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_resource.remove(resource);
            }
        }
    }
}

/// Events per resource, in resource order.
fn per_resource<'a>(events: impl Iterator<Item = &'a Event>) -> BTreeMap<&'a str, u64> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts.entry(resource_of(&event.object.key)).or_default() += 1;
    }
    counts
}

/// The first `limit` present objects of `entries` (in key order), and how many
/// present objects follow them.
fn page<'a>(
    entries: impl Iterator<Item = (&'a str, Option<&'a Stored>)>,
    limit: usize,
) -> (Vec<Stored>, usize) {
    let mut present = entries.filter_map(|(_, stored)| stored);
    let items: Vec<Stored> = present.by_ref().take(limit).cloned().collect();
    (items, present.count())
}

/// The keys of the current objects merged with the past state of the keys changed
/// since, in key order: where a key is in both, its past state wins (`None` when
/// it did not exist then).
struct Merge<C: Iterator, U: Iterator> {
    /// Current objects from the start key on.
    current: std::iter::Peekable<C>,
    /// Past states of the changed keys from the start key on.
    undone: std::iter::Peekable<U>,
}

impl<'a, C, U> Iterator for Merge<C, U>
where
    C: Iterator<Item = (&'a str, Option<&'a Stored>)>,
    U: Iterator<Item = (&'a str, Option<&'a Stored>)>,
{
    type Item = (&'a str, Option<&'a Stored>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.current.peek(), self.undone.peek()) {
            (Some((now, _)), Some((then, _))) if now < then => self.current.next(),
            (Some((now, _)), Some((then, _))) if now == then => {
                self.current.next();
                self.undone.next()
            }
            (_, Some(_)) => self.undone.next(),
            (Some(_), None) => self.current.next(),
            (None, None) => None,
        }
    }
}

/// The resource part of a key: what comes before the first `/`.
fn resource_of(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::{Cache, CacheOptions};
    use crate::store::tests::pod;
    use crate::store::{stored, Event, EventType, Revision, StoreError};

    /// An event creating `key` at `revision`.
    fn added(key: &str, revision: Revision) -> Event {
        Event {
            revision,
            kind: EventType::Added,
            object: stored(&key.into(), pod(key), revision, revision).expect("stored"),
            prev: None,
            encodings: Default::default(),
        }
    }

    fn revisions(events: &[Event]) -> Vec<Revision> {
        events.iter().map(|event| event.revision).collect()
    }

    #[test]
    fn cache_should_count_events_in_and_out_and_watchers_that_fell_behind() {
        let registry = kubernel_sdk::prometheus::Registry::new();
        let metrics = super::CacheMetrics::registered(&registry).expect("metrics");
        let options = CacheOptions {
            watcher_buffer: 1,
            metrics: Some(metrics.clone()),
            ..CacheOptions::default()
        };
        let now = Instant::now();
        let mut cache = Cache::new(BTreeMap::new(), 0, options);
        let mut nodes = cache.watch("nodes/", 0, 0, now).expect("watch nodes");
        let _slow = cache.watch("pods/", 0, 0, now).expect("watch pods");
        cache.apply(&[added("nodes/n1", 1), added("pods/a", 2)], now);
        assert!(nodes.events.try_recv().is_ok());
        // The pods watcher has one unread event in a buffer of one: the next closes it.
        cache.apply(&[added("pods/b", 3)], now);
        let count = |c: &kubernel_sdk::prometheus::IntCounterVec, resource: &str| {
            c.with_label_values(&[resource]).get()
        };
        assert_eq!(count(&metrics.received, "pods"), 2);
        assert_eq!(count(&metrics.received, "nodes"), 1);
        assert_eq!(count(&metrics.dispatched, "pods"), 1);
        assert_eq!(count(&metrics.dispatched, "nodes"), 1);
        assert_eq!(count(&metrics.terminated, "pods"), 1);
        assert_eq!(count(&metrics.terminated, "nodes"), 0);
        assert_eq!(cache.watchers(), 1);
        assert_eq!(metrics.apply_duration.get_sample_count(), 2);
        cache.reset(BTreeMap::new(), 5);
        assert_eq!(count(&metrics.initializations, "pods"), 0, "nothing held");
    }

    #[test]
    fn cache_should_forget_watchers_whose_receiver_is_dropped() {
        let now = Instant::now();
        let mut cache = Cache::new(BTreeMap::new(), 0, CacheOptions::default());
        drop(cache.watch("pods/", 0, 0, now).expect("watch"));
        let _kept = cache.watch("nodes/", 0, 0, now).expect("watch nodes");
        assert_eq!(cache.watchers(), 2);
        cache.apply(&[added("nodes/n1", 1)], now);
        assert_eq!(cache.watchers(), 1);
    }

    #[test]
    fn cache_should_serve_watches_across_revision_gaps_and_progress() {
        let now = Instant::now();
        let mut cache = Cache::new(BTreeMap::new(), 1, CacheOptions::default());
        cache.apply(
            &[added("pods/a", 3), added("pods/b", 7), added("pods/c", 9)],
            now,
        );
        let watch = cache.watch("pods/", 5, 9, now).expect("watch from a gap");
        assert_eq!(revisions(&watch.backlog), [7, 9]);
        cache.advance(12);
        assert_eq!(
            cache.list(&Default::default(), now).expect("list").revision,
            12
        );
        assert!(cache
            .watch("pods/", 12, 12, now)
            .expect("watch")
            .backlog
            .is_empty());
        assert!(matches!(
            cache.watch("pods/", 13, 12, now),
            Err(StoreError::FutureRevision {
                requested: 13,
                current: 12
            })
        ));
        let mut ahead = cache
            .watch("pods/", 15, 20, now)
            .expect("watch ahead of the cache");
        cache.apply(&[added("pods/d", 14), added("pods/e", 16)], now);
        assert_eq!(
            ahead.events.try_recv().map(|event| event.revision).ok(),
            Some(16)
        );
        assert!(ahead.events.try_recv().is_err());
    }

    #[test]
    fn cache_should_answer_compacted_below_a_backend_compaction_and_close_watchers_on_reset() {
        let now = Instant::now();
        let mut cache = Cache::new(BTreeMap::new(), 0, CacheOptions::default());
        let events: Vec<Event> = (1..=4).map(|r| added(&format!("pods/p{r}"), r)).collect();
        cache.apply(&events, now);
        cache.compact(2);
        assert!(matches!(
            cache.watch("pods/", 1, 4, now),
            Err(StoreError::Compacted {
                requested: 1,
                compacted: 2
            })
        ));
        let mut watch = cache
            .watch("pods/", 2, 4, now)
            .expect("watch from the compaction");
        assert_eq!(revisions(&watch.backlog), [3, 4]);
        let objects = BTreeMap::from([(events[0].object.key.clone(), events[0].object.clone())]);
        cache.reset(objects, 10);
        assert!(watch.events.try_recv().is_err());
        assert!(watch.events.is_closed());
        assert_eq!(
            (cache.len(), cache.revision(), cache.compacted()),
            (1, 10, 10)
        );
        assert_eq!(cache.count_by_resource(), [("pods".to_owned(), 1)]);
        assert!(matches!(
            cache.watch("pods/", 4, 10, now),
            Err(StoreError::Compacted {
                requested: 4,
                compacted: 10
            })
        ));
    }
}
