//! The `Store` contract, checked on every backend: each scenario runs on the embedded store and on a real etcd.
//!
//! A scenario counts writes from the store's revision when opened (`base`): a
//! fresh embedded store starts at 0, a fresh etcd at 1. The embedded store gives
//! the n-th write revision `base + n`; etcd gives a write that has an etcd
//! revision to itself `(etcd revision) × 64` (see `etcd::codec`), which
//! [`Harness::rv`] and [`Harness::relative`] convert.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::embedded::EmbeddedStore;
use super::etcd::{EtcdOptions, EtcdStore};
use super::{CacheOptions, Event, EventType, ListOptions, Revision, Store, StoreError, Stored};

/// A minimal pod-like object named `name`.
pub(super) fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": {}})
}

/// A backend the scenarios run on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Backend {
    /// [`EmbeddedStore`] in a temporary directory.
    Embedded,
    /// [`EtcdStore`] on an etcd started for the test.
    Etcd,
}

/// A store under test and what keeps its backend alive.
pub(super) struct Harness {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its revision when opened.
    pub base: Revision,
    /// Store revisions per backend revision: 1 on the embedded store, 64 on etcd.
    pub unit: Revision,
    /// The temporary directory or the etcd process; dropped after the store.
    _backend: Box<dyn std::any::Any + Send>,
}

impl Backend {
    /// Opens a fresh store of this backend with `options`.
    pub(super) async fn open(self, options: CacheOptions) -> Harness {
        let (store, backend): (Arc<dyn Store>, Box<dyn std::any::Any + Send>) = match self {
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = EmbeddedStore::open(dir.path(), options).expect("open store");
                (Arc::new(store), Box::new(dir))
            }
            Backend::Etcd => {
                let etcd = tokio::task::spawn_blocking(kubernel_e2e::Etcd::start)
                    .await
                    .expect("etcd start task")
                    .expect("start etcd");
                let store = EtcdStore::connect(etcd_options(&etcd.endpoint, options))
                    .await
                    .expect("connect to etcd");
                (Arc::new(store), Box::new(etcd))
            }
        };
        let unit = match self {
            Backend::Embedded => 1,
            Backend::Etcd => 64,
        };
        Harness {
            base: store.revision(),
            unit,
            store,
            _backend: backend,
        }
    }
}

/// Options of an etcd store at `endpoint` for tests: short timeouts, no compaction.
pub(super) fn etcd_options(endpoint: &str, cache: CacheOptions) -> EtcdOptions {
    EtcdOptions {
        endpoints: vec![endpoint.to_owned()],
        prefix: "/registry".into(),
        tls: Default::default(),
        request_timeout: Duration::from_secs(3),
        compaction_interval: Duration::ZERO,
        cache,
    }
}

impl Harness {
    /// Creates `pod(name)` at `key`, failing the test naming the key on an error.
    async fn create(&self, key: &str, name: &str) -> Stored {
        self.store
            .create(key, pod(name))
            .await
            .unwrap_or_else(|e| panic!("create {key}: {e}"))
    }

    /// Keys of one list page, and how many are left after it.
    fn keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> (Vec<String>, usize) {
        let opts = ListOptions {
            prefix: prefix.into(),
            start_after: start_after.map(Into::into),
            limit,
            revision: None,
        };
        let page = self.store.list(&opts).expect("list");
        (
            page.items.iter().map(|item| item.key.to_string()).collect(),
            page.remaining,
        )
    }

    /// The resourceVersion of the `n`-th write after `base`, each write alone in
    /// its backend revision.
    fn rv(&self, n: Revision) -> Revision {
        (self.base / self.unit + n) * self.unit
    }

    /// Backend revisions relative to `base` (the `n` of [`Harness::rv`]).
    fn relative(&self, revisions: impl IntoIterator<Item = Revision>) -> Vec<Revision> {
        revisions
            .into_iter()
            .map(|r| r / self.unit - self.base / self.unit)
            .collect()
    }
}

/// Instantiates each scenario as a test on each backend: `embedded::<scenario>`, `etcd::<scenario>`.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Embedded).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Etcd).await;
                }
            )*
        }
    };
}

on_every_backend!(
    store_should_count_one_revision_per_write,
    store_should_refuse_writes_that_do_not_apply_without_spending_a_revision,
    store_should_compare_and_swap_on_the_mod_revision,
    store_should_list_pages_in_key_order,
    store_should_count_keys_per_resource,
    store_should_list_the_keys_as_they_were_at_a_past_revision,
    store_should_answer_compacted_for_a_list_at_a_trimmed_revision,
    store_should_close_watches_when_dropped,
    watch_should_return_backlog_then_live_events_in_order,
    watch_should_miss_and_repeat_nothing_while_writes_race_with_registration,
    watch_should_answer_compacted_once_history_is_trimmed_by_count,
    watch_should_answer_compacted_once_history_is_trimmed_by_age,
    watch_should_refuse_a_future_revision,
    watch_should_report_a_delete_at_the_delete_revision,
    watch_should_close_a_watcher_that_falls_behind,
);

async fn store_should_count_one_revision_per_write(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    let created = h.create("pods/default/a", "a").await;
    assert_eq!(
        h.relative([created.create_revision, created.mod_revision]),
        [1, 1]
    );
    assert_eq!(
        created.object["metadata"]["resourceVersion"],
        h.rv(1).to_string()
    );
    let updated = h
        .store
        .update("pods/default/a", pod("a"), None)
        .await
        .expect("update");
    assert_eq!(
        h.relative([updated.create_revision, updated.mod_revision]),
        [1, 2]
    );
    let json: Value = serde_json::from_slice(&updated.json).expect("json");
    assert_eq!(json["metadata"]["resourceVersion"], h.rv(2).to_string());
    h.create("pods/default/b", "b").await;
    let deleted = h
        .store
        .delete("pods/default/a", None)
        .await
        .expect("delete");
    assert_eq!(h.relative([deleted.mod_revision]), [4]);
    assert_eq!(
        deleted.object["metadata"]["resourceVersion"],
        h.rv(4).to_string()
    );
    assert_eq!(h.relative([h.store.revision()]), [4]);
    let read = h
        .store
        .get("pods/default/b")
        .expect("get")
        .expect("b is there");
    assert_eq!(h.relative([read.mod_revision]), [3]);
}

async fn store_should_refuse_writes_that_do_not_apply_without_spending_a_revision(
    backend: Backend,
) {
    let h = backend.open(CacheOptions::default()).await;
    let store = &h.store;
    h.create("pods/default/a", "a").await;
    assert!(matches!(
        store.create("pods/default/a", pod("a")).await,
        Err(StoreError::AlreadyExists { key }) if key == "pods/default/a"
    ));
    assert!(matches!(
        store.update("pods/default/x", pod("x"), None).await,
        Err(StoreError::NotFound { key }) if key == "pods/default/x"
    ));
    assert!(matches!(
        store.update("pods/default/x", pod("x"), Some(1)).await,
        Err(StoreError::NotFound { key }) if key == "pods/default/x"
    ));
    assert!(matches!(
        store.delete("pods/default/x", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.create("pods/default/c", json!([1])).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .create("pods/default/c", json!({"metadata": "no"}))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create("", pod("c")).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(h.relative([store.revision()]), [1]);
    let c = store
        .create("pods/default/c", pod("c"))
        .await
        .expect("create c");
    assert_eq!(h.relative([c.mod_revision]), [2]);
}

async fn store_should_compare_and_swap_on_the_mod_revision(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    let store = &h.store;
    h.create("pods/default/a", "a").await;
    store
        .update("pods/default/a", pod("a"), Some(h.rv(1)))
        .await
        .expect("update at 1");
    let stale = store
        .update("pods/default/a", pod("a"), Some(h.rv(1)))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { expected, actual, .. }) if expected == h.rv(1) && actual == h.rv(2)),
        "{stale:?}"
    );
    let stale = store.delete("pods/default/a", Some(h.rv(1))).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { expected, actual, .. }) if expected == h.rv(1) && actual == h.rv(2)),
        "{stale:?}"
    );
    store
        .delete("pods/default/a", Some(h.rv(2)))
        .await
        .expect("delete at 2");
    assert!(store.get("pods/default/a").expect("get").is_none());
    assert_eq!(h.relative([store.revision()]), [3]);
}

async fn store_should_list_pages_in_key_order(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    for name in ["e", "a", "d", "b", "c"] {
        h.create(&format!("pods/ns1/{name}"), name).await;
    }
    h.create("pods/ns0/z", "z").await;
    h.create("pods/ns2/a", "a").await;
    h.create("services/ns1/a", "a").await;
    assert_eq!(
        h.keys("pods/ns1/", None, Some(2)),
        (vec!["pods/ns1/a".into(), "pods/ns1/b".into()], 3)
    );
    assert_eq!(
        h.keys("pods/ns1/", Some("pods/ns1/b"), Some(2)),
        (vec!["pods/ns1/c".into(), "pods/ns1/d".into()], 1)
    );
    assert_eq!(
        h.keys("pods/ns1/", Some("pods/ns1/d"), Some(2)),
        (vec!["pods/ns1/e".into()], 0)
    );
    assert_eq!(h.keys("pods/ns1/", Some("pods/ns1/e"), None), (vec![], 0));
    assert_eq!(h.keys("pods/ns1/", Some("pods/ns0/z"), Some(0)).0.len(), 5);
    assert_eq!(h.keys("pods/", None, None).0.len(), 7);
    assert_eq!(h.keys("", None, Some(1)), (vec!["pods/ns0/z".into()], 7));
    let page = h
        .store
        .list(&ListOptions {
            prefix: "pods/".into(),
            ..ListOptions::default()
        })
        .expect("list");
    assert_eq!(h.relative([page.revision]), [8]);
}

/// `(name, resourceVersion)` of each item of the page of `prefix` after `start_after` at `revision`.
fn names_at(
    h: &Harness,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
    revision: Revision,
) -> (Vec<(String, String)>, usize, Revision) {
    let page = h
        .store
        .list(&ListOptions {
            prefix: prefix.into(),
            start_after: start_after.map(Into::into),
            limit,
            revision: Some(revision),
        })
        .unwrap_or_else(|e| panic!("list {prefix} at {revision}: {e}"));
    let items = page
        .items
        .iter()
        .map(|item| {
            (
                item.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                item.object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    (items, page.remaining, page.revision)
}

async fn store_should_list_the_keys_as_they_were_at_a_past_revision(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    let mut versions = Vec::new();
    for name in ["b", "c", "d", "e"] {
        let created = h.create(&format!("pods/ns1/{name}"), name).await;
        versions.push((name.to_owned(), created.mod_revision.to_string()));
    }
    h.create("pods/ns2/x", "x").await;
    let snapshot = h.store.revision();
    // Changes after the snapshot: a key before all, one between, a delete, an
    // update, a delete then re-create, a key in another namespace.
    h.create("pods/ns1/a", "a").await;
    h.create("pods/ns1/cc", "cc").await;
    h.store.delete("pods/ns1/b", None).await.expect("delete b");
    let mut changed = pod("d");
    changed["spec"] = json!({"nodeName": "n1"});
    h.store
        .update("pods/ns1/d", changed, None)
        .await
        .expect("update d");
    h.store.delete("pods/ns1/e", None).await.expect("delete e");
    h.create("pods/ns1/e", "e").await;
    h.create("pods/ns0/y", "y").await;

    let (all, remaining, revision) = names_at(&h, "pods/ns1/", None, None, snapshot);
    assert_eq!((all, remaining, revision), (versions.clone(), 0, snapshot));
    let (first, remaining, _) = names_at(&h, "pods/ns1/", None, Some(2), snapshot);
    assert_eq!((first, remaining), (versions[..2].to_vec(), 2));
    let (second, remaining, _) = names_at(&h, "pods/ns1/", Some("pods/ns1/c"), Some(1), snapshot);
    assert_eq!((second, remaining), (versions[2..3].to_vec(), 1));
    let (last, remaining, _) = names_at(&h, "pods/ns1/", Some("pods/ns1/d"), Some(5), snapshot);
    assert_eq!((last, remaining), (versions[3..].to_vec(), 0));
    let everything = names_at(&h, "pods/", None, None, snapshot).0;
    assert_eq!(everything.len(), 5, "{everything:?}");

    let now = names_at(&h, "pods/ns1/", None, None, h.store.revision()).0;
    let names: Vec<&str> = now.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["a", "c", "cc", "d", "e"]);
    let future = h.store.list(&ListOptions {
        prefix: "pods/".into(),
        revision: Some(h.store.revision() + 100),
        ..ListOptions::default()
    });
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{:?}",
        future.err()
    );
}

async fn store_should_answer_compacted_for_a_list_at_a_trimmed_revision(backend: Backend) {
    let options = CacheOptions {
        history_revisions: 3,
        ..CacheOptions::default()
    };
    let h = backend.open(options).await;
    for i in 0..6 {
        h.create(&format!("pods/default/p{i}"), "p").await;
    }
    let trimmed = h.store.list(&ListOptions {
        prefix: "pods/".into(),
        revision: Some(h.rv(2)),
        ..ListOptions::default()
    });
    assert!(
        matches!(trimmed, Err(StoreError::Compacted { requested, compacted }) if requested == h.rv(2) && compacted == h.rv(3)),
        "{:?}",
        trimmed.err()
    );
    let (kept, _, revision) = names_at(&h, "pods/", None, None, h.rv(3));
    assert_eq!((kept.len(), revision), (3, h.rv(3)));
}

async fn store_should_count_keys_per_resource(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    for key in ["pods/a/1", "pods/b/2", "nodes/n1", "deployments.apps/a/d"] {
        h.store.create(key, pod("x")).await.expect("create");
    }
    h.store.delete("nodes/n1", None).await.expect("delete");
    assert_eq!(
        h.store.count_by_resource(),
        vec![("deployments.apps".into(), 1), ("pods".into(), 2)]
    );
    let stats = h.store.stats();
    assert_eq!(h.relative([stats.revision, stats.compacted]), [5, 0]);
    assert_eq!(stats.keys, 3);
    assert!(!stats.storage_cluster_id.is_empty());
}

async fn store_should_close_watches_when_dropped(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    let mut watch = h.store.watch("pods/", h.base).expect("watch");
    let Harness {
        store, _backend, ..
    } = h;
    drop(store);
    let closed = tokio::time::timeout(Duration::from_secs(10), watch.events.recv()).await;
    assert!(closed.expect("closed in time").is_none());
}

async fn watch_should_return_backlog_then_live_events_in_order(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    h.create("pods/default/a", "a").await;
    h.create("nodes/n1", "n1").await;
    h.create("pods/default/b", "b").await;
    let mut watch = h.store.watch("pods/", h.rv(1)).expect("watch");
    assert_eq!(h.relative(watch.backlog.iter().map(|e| e.revision)), [3]);
    h.store
        .update("pods/default/a", pod("a"), Some(h.rv(1)))
        .await
        .expect("update a");
    h.create("nodes/n2", "n2").await;
    h.store
        .delete("pods/default/b", None)
        .await
        .expect("delete b");
    let live: Vec<Event> = vec![
        watch.events.recv().await.expect("event 4"),
        watch.events.recv().await.expect("event 6"),
    ];
    assert_eq!(
        live.iter()
            .map(|e| (h.relative([e.revision])[0], e.kind))
            .collect::<Vec<_>>(),
        vec![(4, EventType::Modified), (6, EventType::Deleted)]
    );
    assert!(watch.events.try_recv().is_err());
}

async fn watch_should_miss_and_repeat_nothing_while_writes_race_with_registration(
    backend: Backend,
) {
    let h = backend.open(CacheOptions::default()).await;
    let mut writers = Vec::new();
    for task in 0..8 {
        let store = h.store.clone();
        writers.push(tokio::spawn(async move {
            let mut pods = Vec::new();
            for i in 0..100 {
                let key = format!("pods/ns{task}/p{i}");
                let created = store.create(&key, pod(&key)).await.expect("create pod");
                pods.push((created.mod_revision, key));
                if i % 2 == 0 {
                    let key = format!("configmaps/ns{task}/c{i}");
                    store
                        .create(&key, pod(&key))
                        .await
                        .expect("create configmap");
                }
            }
            pods
        }));
    }
    let mut watches = Vec::new();
    for round in 0..20u64 {
        let from = h.store.revision().saturating_sub(round % 7).max(h.base);
        watches.push((from, h.store.watch("pods/", from).expect("watch")));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Concurrent writes may share an etcd revision (one transaction), never a
    // resourceVersion: a watch gets each write once, in resourceVersion order.
    let mut pods = BTreeSet::new();
    for writer in writers {
        pods.extend(writer.await.expect("writer"));
    }
    for (from, mut watch) in watches {
        let expected: Vec<(Revision, String)> = pods
            .iter()
            .filter(|(revision, _)| *revision > from)
            .cloned()
            .collect();
        let mut seen: Vec<(Revision, String)> = watch
            .backlog
            .iter()
            .map(|event| (event.revision, event.object.key.to_string()))
            .collect();
        while seen.len() < expected.len() {
            let next = tokio::time::timeout(Duration::from_secs(10), watch.events.recv()).await;
            match next.expect("events arrive in time") {
                Some(event) => seen.push((event.revision, event.object.key.to_string())),
                None => panic!("watch from {from} closed after {} events", seen.len()),
            }
        }
        assert!(
            seen.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "watch from {from}: revisions strictly increase"
        );
        seen.sort();
        assert_eq!(seen, expected, "watch from {from}");
        assert!(
            watch.events.try_recv().is_err(),
            "watch from {from}: nothing more"
        );
    }
}

async fn watch_should_answer_compacted_once_history_is_trimmed_by_count(backend: Backend) {
    let options = CacheOptions {
        history_revisions: 5,
        ..CacheOptions::default()
    };
    let h = backend.open(options).await;
    for i in 0..10 {
        h.create(&format!("pods/default/p{i}"), "p").await;
    }
    let compacted = h.store.watch("pods/", h.rv(4));
    assert!(
        matches!(compacted, Err(StoreError::Compacted { requested, compacted }) if requested == h.rv(4) && compacted == h.rv(5)),
        "{:?}",
        compacted.err()
    );
    let watch = h
        .store
        .watch("pods/", h.rv(5))
        .expect("watch from compacted");
    assert_eq!(
        h.relative(watch.backlog.iter().map(|e| e.revision)),
        [6, 7, 8, 9, 10]
    );
    assert_eq!(h.relative([h.store.stats().compacted]), [5]);
}

async fn watch_should_answer_compacted_once_history_is_trimmed_by_age(backend: Backend) {
    let options = CacheOptions {
        history_age: Duration::from_millis(20),
        ..CacheOptions::default()
    };
    let h = backend.open(options).await;
    for i in 0..3 {
        h.create(&format!("pods/default/p{i}"), "p").await;
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let compacted = h.store.watch("pods/", h.base);
    assert!(
        matches!(compacted, Err(StoreError::Compacted { requested, compacted }) if requested == h.base && compacted == h.rv(3)),
        "{:?}",
        compacted.err()
    );
    let watch = h.store.watch("pods/", h.rv(3)).expect("watch from now");
    assert!(watch.backlog.is_empty());
}

async fn watch_should_refuse_a_future_revision(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    h.create("pods/default/a", "a").await;
    let future = h.store.watch("pods/", h.rv(1000));
    assert!(
        matches!(future, Err(StoreError::FutureRevision { requested, .. }) if requested == h.rv(1000)),
        "{:?}",
        future.err()
    );
}

async fn watch_should_report_a_delete_at_the_delete_revision(backend: Backend) {
    let h = backend.open(CacheOptions::default()).await;
    h.create("pods/default/a", "a").await;
    h.store
        .update("pods/default/a", pod("a"), None)
        .await
        .expect("update");
    let mut watch = h.store.watch("pods/", h.rv(2)).expect("watch");
    h.store
        .delete("pods/default/a", Some(h.rv(2)))
        .await
        .expect("delete");
    let event = watch.events.recv().await.expect("delete event");
    assert_eq!(
        (h.relative([event.revision])[0], event.kind),
        (3, EventType::Deleted)
    );
    assert_eq!(
        h.relative([event.object.mod_revision, event.object.create_revision]),
        [3, 1]
    );
    let rv = h.rv(3).to_string();
    assert_eq!(event.object.object["metadata"]["resourceVersion"], rv);
    let json: Value = serde_json::from_slice(&event.object.json).expect("json");
    assert_eq!(json["metadata"]["resourceVersion"], rv);
    assert_eq!(h.relative([event.prev.expect("prev").mod_revision]), [2]);
}

async fn watch_should_close_a_watcher_that_falls_behind(backend: Backend) {
    let options = CacheOptions {
        watcher_buffer: 2,
        ..CacheOptions::default()
    };
    let h = backend.open(options).await;
    let mut watch = h.store.watch("pods/", h.base).expect("watch");
    let mut other = h.store.watch("nodes/", h.base).expect("watch nodes");
    for i in 0..5 {
        h.create(&format!("pods/default/p{i}"), "p").await;
    }
    let mut first = Vec::new();
    while let Some(event) = watch.events.recv().await {
        first.push(h.relative([event.revision])[0]);
    }
    assert_eq!(first, [1, 2]);
    h.create("nodes/n1", "n1").await;
    assert_eq!(
        other
            .events
            .recv()
            .await
            .map(|e| h.relative([e.revision])[0]),
        Some(6)
    );
}
