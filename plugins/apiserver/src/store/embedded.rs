//! The embedded store (the default backend): etcd semantics in-process, durable in a redb file, read from memory.
//!
//! Every current object lives in memory (the watch cache) and in `<dir>/store.redb`.
//! Writes queue to one commit thread that checks them in order, gives them
//! consecutive revisions, writes each group in one durable transaction (one fsync)
//! and only then applies it to memory, the history window and the watchers. Reads
//! never touch the disk.

mod commit;
mod disk;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

pub use self::commit::CommitMetrics;
use self::commit::{Op, Request};
use self::disk::Disk;
use super::cache::Cache;
use super::{
    CacheOptions, ListOptions, ListResult, Prepared, Revision, Store, StoreError, StoreStats,
    Stored, Watch,
};

/// Writes that may wait for the commit thread before writers wait to queue.
const QUEUE: usize = 4 * commit::MAX_BATCH;

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
    /// The commit loop's metrics, when the store's owner registered some.
    metrics: Option<CommitMetrics>,
}

impl EmbeddedStore {
    /// Opens the store in `dir` (created if needed), loading `<dir>/store.redb` into memory.
    ///
    /// Fails with [`StoreError::Unavailable`] when the directory or file cannot be
    /// used (including when another store has it open).
    pub fn open(dir: &Path, options: CacheOptions) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with_metrics(dir, options, None)
    }

    /// [`EmbeddedStore::open`], with the commit loop observed by `metrics`.
    pub fn open_with_metrics(
        dir: &Path,
        options: CacheOptions,
        metrics: Option<CommitMetrics>,
    ) -> Result<EmbeddedStore, StoreError> {
        let (disk, loaded) = Disk::open(dir)?;
        let path = dir.join(disk::FILE_NAME);
        info!(path = %path.display(), keys = loaded.objects.len(), revision = loaded.revision, "embedded store opened");
        let shared = Arc::new(Shared {
            cache: RwLock::new(Cache::new(loaded.objects, loaded.revision, options)),
            batches: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            metrics,
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
    async fn write(&self, key: &str, op: Result<Op, StoreError>) -> Result<Stored, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        let op = op?;
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
        // Serialized here, on the caller's thread, not on the commit thread.
        self.write(key, Prepared::new(key, object).map(Op::Create))
            .await
    }

    async fn update(
        &self,
        key: &str,
        object: Value,
        expected: Option<Revision>,
    ) -> Result<Stored, StoreError> {
        let op = Prepared::new(key, object).map(|object| Op::Update(object, expected));
        self.write(key, op).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Stored, StoreError> {
        self.write(key, Ok(Op::Delete(expected))).await
    }

    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self.shared.cache.read().get(key))
    }

    fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError> {
        self.shared.cache.read().list(opts, Instant::now())
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let mut cache = self.shared.cache.write();
        let reached = cache.revision();
        cache.watch(prefix, from, reached, Instant::now())
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
            storage_cluster_id: "embedded".into(),
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
