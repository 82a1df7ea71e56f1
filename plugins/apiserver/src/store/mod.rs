//! The `Store` trait: etcd's model of a revisioned key-value store holding JSON objects.
//!
//! One global revision counts every write; a write's revision becomes the object's
//! `metadata.resourceVersion` (the store sets it). Updates and deletes can compare
//! and swap on the object's modification revision. Lists read the current state,
//! or the state at a revision still in the history window, in key order with
//! `limit`/`continue`. A watch delivers, in revision order, every
//! event after a revision still in the history window; older revisions are
//! compacted and answer [`StoreError::Compacted`] (HTTP 410 Expired).
//!
//! Keys are laid out as Kubernetes lays them out in etcd, without the prefix:
//! `pods/<namespace>/<name>`, `nodes/<name>`, `deployments.apps/<ns>/<name>`... so
//! a list of one namespace is a prefix range and the etcd backend is a thin adapter.
//! Both backends serve reads, lists and watches from the same in-memory watch cache.

mod cache;
pub mod embedded;
pub mod etcd;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

pub use self::cache::{CacheMetrics, CacheOptions};

/// A store revision: 1 for the first write, then one more per write.
pub type Revision = u64;

/// A stored object as read from the store.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its key.
    pub key: Arc<str>,
    /// The object, with `metadata.resourceVersion` equal to `mod_revision`.
    pub object: Arc<Value>,
    /// `object` serialized as JSON (served as is in lists and watches).
    pub json: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The key was created.
    Added,
    /// The key was updated.
    Modified,
    /// The key was deleted.
    Deleted,
}

/// One change to the store.
#[derive(Debug, Clone)]
pub struct Event {
    /// Revision of the change.
    pub revision: Revision,
    /// Kind of change.
    pub kind: EventType,
    /// The object after the change; for a delete, its last state with
    /// `metadata.resourceVersion` set to the delete's revision (as Kubernetes does).
    pub object: Stored,
    /// The object before the change (updates and deletes).
    pub prev: Option<Stored>,
    /// Encodings of this event made for its watchers, shared by every watcher it
    /// is delivered to (upstream's `cachingObject`).
    pub encodings: Encodings,
}

impl Event {
    /// A copy that shares no [`Encodings`] with `self` (kept in the history, whose
    /// events must not hold on to encodings once delivered).
    pub fn unshared(&self) -> Event {
        Event {
            encodings: Encodings::default(),
            ..self.clone()
        }
    }
}

/// Encodings of one event, each made once by the first watcher that needs it and
/// reused by the others: a watch of N clients encodes an event once per format,
/// not N times. Keys are the encoder's own (the store does not read them).
#[derive(Debug, Clone, Default)]
pub struct Encodings(Arc<parking_lot::Mutex<Vec<(u8, Bytes)>>>);

impl Encodings {
    /// The encoding under `key`, made by `encode` if no watcher made it yet. Watchers
    /// asking at once wait for the first one's `encode` instead of repeating it.
    pub fn get_or_insert_with(&self, key: u8, encode: impl FnOnce() -> Bytes) -> Bytes {
        let mut made = self.0.lock();
        if let Some((_, bytes)) = made.iter().find(|(k, _)| *k == key) {
            return bytes.clone();
        }
        let bytes = encode();
        made.push((key, bytes.clone()));
        bytes
    }

    /// Number of encodings made so far.
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Whether no encoding was made yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A store operation failed. `Unavailable` may succeed on retry; the others will
/// fail the same way until the state changes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Create of a key that exists.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// Update or delete of a key that does not exist.
    #[error("{key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Compare-and-swap failed: the key was modified since `expected`.
    #[error("{key}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// Revision the caller expected.
        expected: Revision,
        /// Revision found.
        actual: Revision,
    },
    /// The requested revision is older than the history kept.
    #[error("too old resource version: {requested} ({compacted})")]
    Compacted {
        /// Revision asked for.
        requested: Revision,
        /// Oldest revision a watch may start from.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's.
    #[error("revision {requested} is newer than the store's {current}")]
    FutureRevision {
        /// Revision asked for.
        requested: Revision,
        /// Current revision.
        current: Revision,
    },
    /// The object is not a JSON object with `metadata`.
    #[error("invalid object: {0}")]
    Invalid(String),
    /// The backend failed (I/O, closed, shutting down); retrying may help.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Options of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Key prefix (e.g. `pods/default/` or `pods/`).
    pub prefix: String,
    /// Continue after this key (exclusive), from a previous page.
    pub start_after: Option<String>,
    /// At most this many items; `None` or 0 for all.
    pub limit: Option<usize>,
    /// Read the keys as they were at this revision (a consistent snapshot for the
    /// later pages of a paginated list); `None` for the current state. Fails with
    /// [`StoreError::Compacted`] once the revision left the history window.
    pub revision: Option<Revision>,
}

/// A page of [`Store::list`].
#[derive(Debug, Clone)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<Stored>,
    /// The store revision the page was read at (`ListOptions::revision` when given).
    pub revision: Revision,
    /// Items left after this page under the prefix (0 when this is the last page).
    pub remaining: usize,
}

/// A live watch: past events first, then new ones as they commit.
pub struct Watch {
    /// Events between the start revision and registration, in order.
    pub backlog: Vec<Event>,
    /// Events after registration, in order. Closed when the watcher falls too far
    /// behind or the store shuts down: the client re-watches from its last revision.
    pub events: tokio::sync::mpsc::Receiver<Event>,
}

/// Counters a store reports for metrics.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Current revision.
    pub revision: Revision,
    /// Oldest revision a watch may start from.
    pub compacted: Revision,
    /// Size of the database on disk, bytes.
    pub db_size_bytes: u64,
    /// Number of keys.
    pub keys: usize,
    /// Which database: `embedded`, or the etcd cluster's id (the
    /// `storage_cluster_id` label of `apiserver_storage_db_total_size_in_bytes`).
    pub storage_cluster_id: String,
}

/// A revisioned key-value store of JSON objects with etcd's semantics.
///
/// Writes are durable when they return (an acknowledged write survives `kill -9`).
/// Reads see every acknowledged write.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates `key`; fails with `AlreadyExists` if present.
    async fn create(&self, key: &str, object: Value) -> Result<Stored, StoreError>;

    /// Replaces `key`; with `expected`, only if its `mod_revision` equals it (else `Conflict`).
    async fn update(
        &self,
        key: &str,
        object: Value,
        expected: Option<Revision>,
    ) -> Result<Stored, StoreError>;

    /// Deletes `key`; with `expected`, only if its `mod_revision` equals it. Returns the
    /// deleted object with `metadata.resourceVersion` set to the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Stored, StoreError>;

    /// Reads one key.
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError>;

    /// Lists keys under a prefix, in key order, now or at `opts.revision`.
    fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError>;

    /// Watches keys under `prefix` for events with revision greater than `from`.
    fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError>;

    /// The current revision.
    fn revision(&self) -> Revision;

    /// Number of keys under each prefix up to the first `/` (per resource), for metrics.
    fn count_by_resource(&self) -> Vec<(String, usize)>;

    /// Counters for metrics.
    fn stats(&self) -> StoreStats;

    /// Whether the store can serve requests now (`/readyz`); the error says why not.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `object` as stored at `mod_revision`: `metadata.resourceVersion` set, serialized.
fn stored(
    key: &Arc<str>,
    object: Value,
    create_revision: Revision,
    mod_revision: Revision,
) -> Result<Stored, StoreError> {
    Ok(Prepared::new(key, object)?.finish(key, create_revision, mod_revision))
}

/// Writes the `index`th key of a JSON object being written: the comma before it
/// (unless it is the first), the quoted key and the colon.
fn write_key(json: &mut Vec<u8>, index: usize, key: &str) -> Result<(), serde_json::Error> {
    if index > 0 {
        json.push(b',');
    }
    serde_json::to_writer(&mut *json, key)?;
    json.push(b':');
    Ok(())
}

/// An object serialized before its write gets a revision, with an empty
/// `metadata.resourceVersion` whose place in the bytes is known. The embedded
/// store's commit thread, which every write crosses one at a time, then writes
/// the revision's digits in there instead of serializing the whole object.
#[derive(Debug)]
pub struct Prepared {
    /// The object, `metadata.resourceVersion` empty until [`Prepared::finish`].
    object: Value,
    /// `object` as JSON, the same bytes `serde_json::to_vec` makes.
    json: Vec<u8>,
    /// Offset in `json` between the two quotes of the empty `resourceVersion`.
    revision_at: usize,
}

impl Prepared {
    /// Serializes `object` (written at `key`) with an empty resourceVersion; fails
    /// unless it is a JSON object with a `metadata` object.
    pub fn new(key: &str, mut object: Value) -> Result<Prepared, StoreError> {
        let invalid =
            || StoreError::Invalid(format!("{key}: not a JSON object with a metadata object"));
        let failed = |err: serde_json::Error| StoreError::Invalid(format!("{key}: {err}"));
        let top = object.as_object_mut().ok_or_else(invalid)?;
        let metadata = top
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(invalid)?;
        metadata.insert("resourceVersion".into(), Value::String(String::new()));
        // The object and its metadata are written entry by entry, in the order
        // serde_json writes maps, to learn where the resourceVersion goes.
        let mut json = Vec::with_capacity(1024);
        let mut revision_at = 0;
        json.push(b'{');
        for (i, (name, value)) in top.iter().enumerate() {
            write_key(&mut json, i, name).map_err(failed)?;
            match value {
                Value::Object(metadata) if name == "metadata" => {
                    json.push(b'{');
                    for (j, (field, value)) in metadata.iter().enumerate() {
                        write_key(&mut json, j, field).map_err(failed)?;
                        if field == "resourceVersion" {
                            json.push(b'"');
                            revision_at = json.len();
                            json.push(b'"');
                        } else {
                            serde_json::to_writer(&mut json, value).map_err(failed)?;
                        }
                    }
                    json.push(b'}');
                }
                value => serde_json::to_writer(&mut json, value).map_err(failed)?,
            }
        }
        json.push(b'}');
        Ok(Prepared {
            object,
            json,
            revision_at,
        })
    }

    /// The object as stored at `key` by the write of `mod_revision`.
    pub fn finish(
        mut self,
        key: &Arc<str>,
        create_revision: Revision,
        mod_revision: Revision,
    ) -> Stored {
        let digits = mod_revision.to_string();
        if let Some(metadata) = self
            .object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            metadata.insert("resourceVersion".into(), Value::String(digits.clone()));
        }
        let mut json = Vec::with_capacity(self.json.len() + digits.len());
        json.extend_from_slice(&self.json[..self.revision_at]);
        json.extend_from_slice(digits.as_bytes());
        json.extend_from_slice(&self.json[self.revision_at..]);
        Stored {
            key: key.clone(),
            object: Arc::new(self.object),
            json: Bytes::from(json),
            create_revision,
            mod_revision,
        }
    }
}
