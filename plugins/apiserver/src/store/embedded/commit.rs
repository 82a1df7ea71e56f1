//! The embedded store's single writer: checks queued writes, commits them to disk in groups, then applies them to memory.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use kubernel_sdk::prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, Registry,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, trace};

use super::disk::Disk;
use super::Shared;
use crate::store::cache::Cache;
use crate::store::{stored, Event, EventType, Prepared, Revision, StoreError, Stored};

/// At most this many writes share one disk commit (one fsync).
pub(super) const MAX_BATCH: usize = 1000;

/// The commit loop's metrics: its rate and duration (one sample per disk commit),
/// the writes each commit holds, and the commits that failed.
#[derive(Clone)]
pub struct CommitMetrics {
    /// `kubernel_store_commit_duration_seconds`: one durable disk transaction (fsync included).
    pub duration: Histogram,
    /// `kubernel_store_commit_batch_writes`: writes sharing one disk commit.
    pub batch_writes: Histogram,
    /// `kubernel_store_commit_failures_total`: disk commits that failed (their writes are refused).
    pub failures: IntCounter,
}

impl CommitMetrics {
    fn new() -> Result<CommitMetrics, kubernel_sdk::prometheus::Error> {
        Ok(CommitMetrics {
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubernel_store_commit_duration_seconds",
                    "Duration of one durable commit of the embedded store (a group of writes, one fsync).",
                )
                .buckets(exponential_buckets(0.0001, 2.0, 16)?),
            )?,
            batch_writes: Histogram::with_opts(
                HistogramOpts::new(
                    "kubernel_store_commit_batch_writes",
                    "Writes committed together in one durable commit of the embedded store.",
                )
                .buckets(exponential_buckets(1.0, 2.0, 11)?),
            )?,
            failures: IntCounter::new(
                "kubernel_store_commit_failures_total",
                "Durable commits of the embedded store that failed (their writes were refused).",
            )?,
        })
    }

    /// New handles, registered in `registry`.
    pub fn registered(
        registry: &Registry,
    ) -> Result<CommitMetrics, kubernel_sdk::prometheus::Error> {
        let m = CommitMetrics::new()?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.batch_writes.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        Ok(m)
    }
}

/// A write to apply to one key.
#[derive(Debug)]
pub(super) enum Op {
    /// Create the key with this object.
    Create(Prepared),
    /// Replace the key's object, if its mod revision is the expected one.
    Update(Prepared, Option<Revision>),
    /// Delete the key, if its mod revision is the expected one.
    Delete(Option<Revision>),
}

/// Where a write's outcome goes.
pub(super) type Reply = oneshot::Sender<Result<Stored, StoreError>>;

/// A write waiting for the commit thread.
#[derive(Debug)]
pub(super) struct Request {
    /// The key written.
    pub key: Arc<str>,
    /// What to do.
    pub op: Op,
    /// Where the outcome goes once durable (or refused).
    pub reply: Reply,
}

/// Starts the commit thread; it runs until every request sender is dropped.
pub(super) fn spawn(
    disk: Disk,
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-commit".into())
        .spawn(move || run(&disk, &shared, requests))
}

/// The thread's loop: takes every queued request (up to [`MAX_BATCH`]) and commits them together.
fn run(disk: &Disk, shared: &Shared, mut requests: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if shared.stopping.load(Ordering::Acquire) {
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(shutting_down()));
            }
            continue;
        }
        commit(disk, shared, &mut batch);
    }
    debug!("store commit thread stopped");
}

/// Checks, writes to disk, applies to memory and answers one batch.
fn commit(disk: &Disk, shared: &Shared, batch: &mut Vec<Request>) {
    let outcomes = plan(&shared.cache.read(), batch.drain(..));
    let events: Vec<Event> = outcomes
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().ok().cloned())
        .collect();
    if let Some(last) = events.last() {
        let started = Instant::now();
        let written = disk.write(&events);
        if let Some(m) = &shared.metrics {
            m.duration.observe(started.elapsed().as_secs_f64());
            if written.is_err() {
                m.failures.inc();
            }
        }
        if let Err(err) = written {
            error!(error = %err, writes = events.len(), "store commit failed; the batch is refused");
            for (reply, _) in outcomes {
                let _ = reply.send(Err(err.clone()));
            }
            return;
        }
        shared.batches.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &shared.metrics {
            m.batch_writes.observe(events.len() as f64);
        }
        shared.cache.write().apply(&events, Instant::now());
        trace!(
            writes = events.len(),
            revision = last.revision,
            "store batch committed"
        );
    }
    for (reply, outcome) in outcomes {
        let _ = reply.send(outcome.map(|event| event.object));
    }
}

/// Checks each request in order against the cache and the batch's earlier writes,
/// giving each successful one the next revision.
fn plan(
    cache: &Cache,
    requests: impl Iterator<Item = Request>,
) -> Vec<(Reply, Result<Event, StoreError>)> {
    let mut written: HashMap<Arc<str>, Option<Stored>> = HashMap::new();
    let mut next = cache.revision() + 1;
    requests
        .map(|request| {
            let current = match written.get(&request.key) {
                Some(current) => current.clone(),
                None => cache.get(&request.key),
            };
            let outcome = event(&request.key, request.op, current, next);
            if let Ok(event) = &outcome {
                let after = (event.kind != EventType::Deleted).then(|| event.object.clone());
                written.insert(request.key.clone(), after);
                next += 1;
            }
            (request.reply, outcome)
        })
        .collect()
}

/// The event `op` makes at `revision` given the key's `current` state, or why it is refused.
fn event(
    key: &Arc<str>,
    op: Op,
    current: Option<Stored>,
    revision: Revision,
) -> Result<Event, StoreError> {
    match op {
        Op::Create(object) => {
            if current.is_some() {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            let object = object.finish(key, revision, revision);
            Ok(Event {
                revision,
                kind: EventType::Added,
                object,
                prev: None,
                encodings: Default::default(),
            })
        }
        Op::Update(object, expected) => {
            let prev = existing(key, current, expected)?;
            let object = object.finish(key, prev.create_revision, revision);
            Ok(Event {
                revision,
                kind: EventType::Modified,
                object,
                prev: Some(prev),
                encodings: Default::default(),
            })
        }
        Op::Delete(expected) => {
            let prev = existing(key, current, expected)?;
            let object = stored(
                key,
                Value::clone(&prev.object),
                prev.create_revision,
                revision,
            )?;
            Ok(Event {
                revision,
                kind: EventType::Deleted,
                object,
                prev: Some(prev),
                encodings: Default::default(),
            })
        }
    }
}

/// The key's current state, if it exists and has the expected mod revision.
fn existing(
    key: &Arc<str>,
    current: Option<Stored>,
    expected: Option<Revision>,
) -> Result<Stored, StoreError> {
    let current = current.ok_or_else(|| StoreError::NotFound {
        key: key.to_string(),
    })?;
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(current),
    }
}

/// The error of a write made while the store closes.
pub(super) fn shutting_down() -> StoreError {
    StoreError::Unavailable("the embedded store is shut down".into())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    use parking_lot::RwLock;
    use serde_json::json;
    use tokio::sync::{mpsc, oneshot};

    use super::super::disk::Disk;
    use super::super::{EmbeddedStore, Shared};
    use super::{plan, run, Op, Prepared, Request};
    use crate::store::cache::Cache;
    use crate::store::tests::pod;
    use crate::store::{CacheOptions, Revision, Store, StoreError};

    /// A store in a fresh temporary directory (kept alive by the returned guard).
    fn open_temp() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), CacheOptions::default()).expect("open store");
        (dir, store)
    }

    fn prepared(name: &str) -> Prepared {
        Prepared::new("pods/a", pod(name)).expect("prepared")
    }

    fn request(key: &str, op: Op) -> Request {
        let (reply, _) = oneshot::channel();
        Request {
            key: Arc::from(key),
            op,
            reply,
        }
    }

    #[test]
    fn plan_should_check_each_write_against_earlier_writes_of_its_batch() {
        let cache = Cache::new(BTreeMap::new(), 7, CacheOptions::default());
        let requests = vec![
            request("pods/a", Op::Create(prepared("a"))),
            request("pods/a", Op::Create(prepared("a"))),
            request("pods/a", Op::Update(prepared("a"), Some(7))),
            request("pods/a", Op::Update(prepared("a"), Some(8))),
            request("pods/a", Op::Delete(None)),
            request("pods/a", Op::Delete(None)),
        ];
        let outcomes: Vec<Result<Revision, StoreError>> = plan(&cache, requests.into_iter())
            .into_iter()
            .map(|(_, outcome)| outcome.map(|event| event.revision))
            .collect();
        assert!(matches!(outcomes[0], Ok(8)));
        assert!(matches!(outcomes[1], Err(StoreError::AlreadyExists { .. })));
        assert!(matches!(
            outcomes[2],
            Err(StoreError::Conflict {
                expected: 7,
                actual: 8,
                ..
            })
        ));
        assert!(matches!(outcomes[3], Ok(9)));
        assert!(matches!(outcomes[4], Ok(10)));
        assert!(matches!(outcomes[5], Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn an_object_without_metadata_should_be_refused_before_it_is_queued() {
        assert!(matches!(
            Prepared::new("pods/b", json!({"kind": "Pod"})),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            Prepared::new("pods/b", json!(["not", "an", "object"])),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn a_prepared_object_should_store_the_bytes_serde_json_writes() {
        let key: Arc<str> = Arc::from("events/default/e");
        // Another resourceVersion sorts before metadata's: only metadata's is the revision.
        let object = json!({
            "apiVersion": "v1", "kind": "Event",
            "involvedObject": {"kind": "Pod", "name": "p", "resourceVersion": ""},
            "metadata": {"name": "e", "namespace": "default", "labels": {"a\"b": "\u{1}"}},
            "message": "resourceVersion \"\"",
        });
        let stored = Prepared::new(&key, object.clone())
            .expect("prepared")
            .finish(&key, 3, 12);
        let mut expected = object;
        expected["metadata"]["resourceVersion"] = json!("12");
        assert_eq!(*stored.object, expected);
        assert_eq!(
            &stored.json[..],
            serde_json::to_vec(&expected).expect("json")
        );
        assert_eq!((stored.create_revision, stored.mod_revision), (3, 12));
    }

    #[tokio::test]
    async fn commit_metrics_should_count_commits_and_their_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = kubernel_sdk::prometheus::Registry::new();
        let metrics = super::CommitMetrics::registered(&registry).expect("register");
        let store = EmbeddedStore::open_with_metrics(
            dir.path(),
            CacheOptions::default(),
            Some(metrics.clone()),
        )
        .expect("open store");
        for name in ["a", "b", "c"] {
            store
                .create(&format!("pods/default/{name}"), pod(name))
                .await
                .expect("create");
        }
        let commits = metrics.duration.get_sample_count();
        assert!((1..=3).contains(&commits), "{commits} commits");
        assert_eq!(metrics.batch_writes.get_sample_sum(), 3.0);
        assert_eq!(metrics.failures.get(), 0);
        assert_eq!(registry.gather().len(), 3);
    }

    #[test]
    fn commit_thread_should_refuse_requests_still_queued_when_the_store_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (disk, loaded) = Disk::open(dir.path()).expect("open disk");
        let shared = Shared {
            cache: RwLock::new(Cache::new(
                loaded.objects,
                loaded.revision,
                CacheOptions::default(),
            )),
            batches: AtomicU64::new(0),
            stopping: AtomicBool::new(true),
            metrics: None,
        };
        let (requests, queue) = mpsc::channel(4);
        let (reply, mut outcome) = oneshot::channel();
        requests
            .try_send(Request {
                key: Arc::from("pods/a"),
                op: Op::Create(prepared("a")),
                reply,
            })
            .expect("queue");
        drop(requests);
        run(&disk, &shared, queue);
        assert!(matches!(
            outcome.try_recv(),
            Ok(Err(StoreError::Unavailable(_)))
        ));
        assert_eq!(shared.cache.read().revision(), 0);
    }

    #[tokio::test]
    async fn commit_should_group_a_burst_of_concurrent_creates_with_distinct_revisions() {
        let (_dir, store) = open_temp();
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..32)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut revisions = Vec::new();
                    for i in 0..63 {
                        let key = format!("pods/ns{task}/p{i}");
                        revisions.push(
                            store
                                .create(&key, pod(&key))
                                .await
                                .expect("create")
                                .mod_revision,
                        );
                    }
                    revisions
                })
            })
            .collect();
        let mut revisions = BTreeSet::new();
        for task in tasks {
            for revision in task.await.expect("task") {
                assert!(
                    revisions.insert(revision),
                    "revision {revision} given twice"
                );
            }
        }
        assert_eq!(revisions.len(), 32 * 63);
        assert_eq!(revisions.first().copied(), Some(1));
        assert_eq!(revisions.last().copied(), Some(32 * 63));
        assert_eq!(store.revision(), 32 * 63);
        let batches = store.commit_batches();
        assert!(
            batches < 32 * 63,
            "{batches} commits for {} writes",
            32 * 63
        );
    }

    #[tokio::test]
    async fn commit_should_let_one_of_racing_creates_of_a_key_win_and_spend_one_revision() {
        let (_dir, store) = open_temp();
        let store = Arc::new(store);
        let racers: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.create("pods/default/same", pod("same")).await })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            match racer.await.expect("racer") {
                Ok(stored) => {
                    won += 1;
                    assert_eq!(stored.mod_revision, 1);
                }
                Err(err) => assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}"),
            }
        }
        assert_eq!(won, 1);
        assert_eq!(store.revision(), 1);
    }
}
