//! The embedded store (the default backend): etcd semantics in-process, durable in a redb file, read from memory.
//!
//! Every current object lives in memory (the watch cache) and in `<dir>/store.redb`.
//! Writes queue to one commit thread that checks them in order, gives them
//! consecutive revisions, writes each group in one durable transaction (one fsync)
//! and only then applies it to memory, the history window and the watchers. Reads
//! never touch the disk.

mod cache;
mod commit;
mod disk;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use self::cache::Cache;
use self::commit::{Op, Request};
use self::disk::Disk;
use super::{ListOptions, ListResult, Revision, Store, StoreError, StoreStats, Stored, Watch};

/// Writes that may wait for the commit thread before writers wait to queue.
const QUEUE: usize = 4 * commit::MAX_BATCH;

/// Tuning of an [`EmbeddedStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Most events kept for watches to start from (older revisions are compacted).
    pub history_revisions: usize,
    /// Oldest event kept for watches to start from.
    pub history_age: Duration,
    /// Events a watcher may have unread before it is closed (its client re-watches).
    pub watcher_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history_revisions: 10_000,
            history_age: Duration::from_secs(5 * 60),
            watcher_buffer: 1024,
        }
    }
}

/// The embedded, durable [`Store`]: one redb file plus an in-memory copy of it.
///
/// Dropping it waits for the batch being committed, stops the commit thread (writes
/// still queued fail with [`StoreError::Unavailable`]), closes every watch and
/// closes the file.
pub struct EmbeddedStore {
    /// State shared with the commit thread.
    shared: Arc<Shared>,
    /// Queue of the commit thread; `None` once closing.
    requests: Option<mpsc::Sender<Request>>,
    /// The commit thread; `None` once joined.
    thread: Option<JoinHandle<()>>,
    /// The database file.
    path: PathBuf,
}

/// What the store and its commit thread share.
struct Shared {
    /// Objects, history and watchers; written only by the commit thread.
    cache: RwLock<Cache>,
    /// Disk commits so far (one fsync each).
    batches: AtomicU64,
    /// Set when the store closes: the commit thread refuses what is still queued.
    stopping: AtomicBool,
}

impl EmbeddedStore {
    /// Opens the store in `dir` (created if needed), loading `<dir>/store.redb` into memory.
    ///
    /// Fails with [`StoreError::Unavailable`] when the directory or file cannot be
    /// used (including when another store has it open).
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        let (disk, loaded) = Disk::open(dir)?;
        let path = dir.join(disk::FILE_NAME);
        info!(path = %path.display(), keys = loaded.objects.len(), revision = loaded.revision, "embedded store opened");
        let shared = Arc::new(Shared {
            cache: RwLock::new(Cache::new(loaded.objects, loaded.revision, options)),
            batches: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let (requests, queue) = mpsc::channel(QUEUE);
        let thread = commit::spawn(disk, shared.clone(), queue).map_err(|err| {
            StoreError::Unavailable(format!(
                "{}: starting the commit thread: {err}",
                path.display()
            ))
        })?;
        Ok(EmbeddedStore {
            shared,
            requests: Some(requests),
            thread: Some(thread),
            path,
        })
    }

    /// Number of disk commits (fsyncs) since the store opened; each holds one or more writes.
    pub fn commit_batches(&self) -> u64 {
        self.shared.batches.load(Ordering::Relaxed)
    }

    /// Number of open watches, for metrics (upstream `apiserver_registered_watchers`).
    pub fn watchers(&self) -> usize {
        self.shared.cache.read().watchers()
    }

    /// Queues one write and waits until it is durable (or refused).
    async fn write(&self, key: &str, op: Op) -> Result<Stored, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        let requests = self.requests.as_ref().ok_or_else(commit::shutting_down)?;
        let (reply, outcome) = oneshot::channel();
        requests
            .send(Request {
                key: Arc::from(key),
                op,
                reply,
            })
            .await
            .map_err(|_| commit::shutting_down())?;
        outcome.await.map_err(|_| commit::shutting_down())?
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn create(&self, key: &str, object: Value) -> Result<Stored, StoreError> {
        self.write(key, Op::Create(object)).await
    }

    async fn update(
        &self,
        key: &str,
        object: Value,
        expected: Option<Revision>,
    ) -> Result<Stored, StoreError> {
        self.write(key, Op::Update(object, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Stored, StoreError> {
        self.write(key, Op::Delete(expected)).await
    }

    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self.shared.cache.read().get(key))
    }

    fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError> {
        Ok(self.shared.cache.read().list(opts))
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.shared
            .cache
            .write()
            .watch(prefix, from, Instant::now())
    }

    fn revision(&self) -> Revision {
        self.shared.cache.read().revision()
    }

    fn count_by_resource(&self) -> Vec<(String, usize)> {
        self.shared.cache.read().count_by_resource()
    }

    fn stats(&self) -> StoreStats {
        let (revision, compacted, keys) = {
            let cache = self.shared.cache.read();
            (cache.revision(), cache.compacted(), cache.len())
        };
        let db_size_bytes = std::fs::metadata(&self.path).map_or(0, |meta| meta.len());
        StoreStats {
            revision,
            compacted,
            db_size_bytes,
            keys,
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!(path = %self.path.display(), "the store commit thread panicked");
            }
        }
        self.shared.cache.write().close_watchers();
        info!(path = %self.path.display(), "embedded store closed");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::{EmbeddedOptions, EmbeddedStore};
    use crate::store::{ListOptions, Store, StoreError, Stored};

    /// A minimal pod-like object named `name`.
    pub(super) fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": {}})
    }

    /// Creates `pod(name)` at `key`, failing the test naming the key on an error.
    pub(super) async fn create(store: &EmbeddedStore, key: &str, name: &str) -> Stored {
        store
            .create(key, pod(name))
            .await
            .unwrap_or_else(|e| panic!("create {key}: {e}"))
    }

    /// A store in a fresh temporary directory (kept alive by the returned guard).
    pub(super) fn open_temp(options: EmbeddedOptions) -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), options).expect("open store");
        (dir, store)
    }

    fn keys(
        store: &EmbeddedStore,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> (Vec<String>, usize) {
        let opts = ListOptions {
            prefix: prefix.into(),
            start_after: start_after.map(Into::into),
            limit,
        };
        let page = store.list(&opts).expect("list");
        (
            page.items.iter().map(|item| item.key.to_string()).collect(),
            page.remaining,
        )
    }

    #[tokio::test]
    async fn embedded_store_should_count_one_revision_per_write() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        assert_eq!(store.revision(), 0);
        let created = create(&store, "pods/default/a", "a").await;
        assert_eq!((created.create_revision, created.mod_revision), (1, 1));
        assert_eq!(created.object["metadata"]["resourceVersion"], "1");
        let updated = store
            .update("pods/default/a", pod("a"), None)
            .await
            .expect("update");
        assert_eq!((updated.create_revision, updated.mod_revision), (1, 2));
        let json: Value = serde_json::from_slice(&updated.json).expect("json");
        assert_eq!(json["metadata"]["resourceVersion"], "2");
        create(&store, "pods/default/b", "b").await;
        let deleted = store.delete("pods/default/a", None).await.expect("delete");
        assert_eq!(deleted.mod_revision, 4);
        assert_eq!(deleted.object["metadata"]["resourceVersion"], "4");
        assert_eq!(store.revision(), 4);
    }

    #[tokio::test]
    async fn embedded_store_should_refuse_writes_that_do_not_apply_without_spending_a_revision() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        create(&store, "pods/default/a", "a").await;
        assert!(matches!(
            store.create("pods/default/a", pod("a")).await,
            Err(StoreError::AlreadyExists { key }) if key == "pods/default/a"
        ));
        assert!(matches!(
            store.update("pods/default/x", pod("x"), None).await,
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
        assert_eq!(store.revision(), 1);
        assert_eq!(
            store
                .create("pods/default/c", pod("c"))
                .await
                .expect("create c")
                .mod_revision,
            2
        );
    }

    #[tokio::test]
    async fn embedded_store_should_compare_and_swap_on_the_mod_revision() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        create(&store, "pods/default/a", "a").await;
        store
            .update("pods/default/a", pod("a"), Some(1))
            .await
            .expect("update at 1");
        assert!(matches!(
            store.update("pods/default/a", pod("a"), Some(1)).await,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ));
        assert!(matches!(
            store.delete("pods/default/a", Some(1)).await,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ));
        store
            .delete("pods/default/a", Some(2))
            .await
            .expect("delete at 2");
        assert!(store.get("pods/default/a").expect("get").is_none());
        assert_eq!(store.revision(), 3);
    }

    #[tokio::test]
    async fn embedded_store_should_list_pages_in_key_order() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        for name in ["e", "a", "d", "b", "c"] {
            create(&store, &format!("pods/ns1/{name}"), name).await;
        }
        create(&store, "pods/ns0/z", "z").await;
        create(&store, "pods/ns2/a", "a").await;
        create(&store, "services/ns1/a", "a").await;
        assert_eq!(
            keys(&store, "pods/ns1/", None, Some(2)),
            (vec!["pods/ns1/a".into(), "pods/ns1/b".into()], 3)
        );
        assert_eq!(
            keys(&store, "pods/ns1/", Some("pods/ns1/b"), Some(2)),
            (vec!["pods/ns1/c".into(), "pods/ns1/d".into()], 1)
        );
        assert_eq!(
            keys(&store, "pods/ns1/", Some("pods/ns1/d"), Some(2)),
            (vec!["pods/ns1/e".into()], 0)
        );
        assert_eq!(
            keys(&store, "pods/ns1/", Some("pods/ns1/e"), None),
            (vec![], 0)
        );
        assert_eq!(
            keys(&store, "pods/ns1/", Some("pods/ns0/z"), Some(0))
                .0
                .len(),
            5
        );
        assert_eq!(keys(&store, "pods/", None, None).0.len(), 7);
        assert_eq!(
            keys(&store, "", None, Some(1)),
            (vec!["pods/ns0/z".into()], 7)
        );
        let page = store
            .list(&ListOptions {
                prefix: "pods/".into(),
                ..ListOptions::default()
            })
            .expect("list");
        assert_eq!(page.revision, 8);
    }

    #[tokio::test]
    async fn embedded_store_should_count_keys_per_resource() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        for key in ["pods/a/1", "pods/b/2", "nodes/n1", "deployments.apps/a/d"] {
            store.create(key, pod("x")).await.expect("create");
        }
        store.delete("nodes/n1", None).await.expect("delete");
        assert_eq!(
            store.count_by_resource(),
            vec![("deployments.apps".into(), 1), ("pods".into(), 2)]
        );
        let stats = store.stats();
        assert_eq!((stats.revision, stats.compacted, stats.keys), (5, 0, 3));
        assert!(stats.db_size_bytes > 0);
    }

    #[tokio::test]
    async fn embedded_store_should_close_watches_when_dropped() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        let mut watch = store.watch("pods/", 0).expect("watch");
        drop(store);
        assert!(watch.events.recv().await.is_none());
    }
}
