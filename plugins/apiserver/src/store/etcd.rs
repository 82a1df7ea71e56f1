//! The etcd v3 backend: objects live in etcd under a key prefix; reads, lists and watches are served from the watch cache that one etcd watch of the prefix feeds.
//!
//! Writes are etcd transactions: a create compares the key's `create_revision`
//! with 0, an update or delete its `mod_revision` (and the index its value holds)
//! with the expected resourceVersion's. Concurrent writes share one etcd
//! transaction, each with its own compare (see [`batch`]), and then one revision,
//! so resourceVersion is not equal to etcd's mod_revision: it is
//! mod_revision×64+index, because grouped writes share a revision (see
//! [`codec`]). Every write has its own resourceVersion, and they increase in the
//! order watches deliver the writes, so a watch resumed from any of them misses
//! nothing. A write returns
//! once this apiserver's cache has applied it, so reads through the same apiserver
//! see it. While etcd is unreachable, reads and new watches fail at once with
//! [`StoreError::Unavailable`] and writes within the request timeout; open watches
//! stay registered and resume when the feed is re-established from the cache's
//! revision (or close, for a clean 410 and re-list, if etcd compacted it meanwhile).

mod batch;
mod codec;
mod feed;
mod offers;
mod shared;
#[cfg(test)]
mod tests;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, TlsOptions, TxnOpResponse, TxnResponse,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use self::codec::Prefix;
use self::shared::Shared;
use super::{
    CacheOptions, ListOptions, ListResult, Revision, Store, StoreError, StoreStats, Stored, Watch,
};

/// Where and how to reach etcd, and the watch cache's limits.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Client URLs of the etcd members (`http://127.0.0.1:2379`, `https://...`).
    pub endpoints: Vec<String>,
    /// Key prefix of this cluster's objects (`/registry`).
    pub prefix: String,
    /// Client TLS files, for `https://` endpoints.
    pub tls: EtcdTls,
    /// Longest wait for one etcd request (and for connecting).
    pub request_timeout: Duration,
    /// Time between compactions of etcd's history; zero for none.
    pub compaction_interval: Duration,
    /// Limits of the watch cache.
    pub cache: CacheOptions,
}

/// Client TLS files (PEM) for `https://` etcd endpoints.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// CA bundle that signed etcd's serving certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, when etcd checks client certificates.
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    pub key_file: Option<PathBuf>,
}

/// Connecting to etcd failed. Config errors will fail the same way again; the
/// others may pass once etcd is reachable.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// `storage = "etcd"` without endpoints.
    #[error("config: key etcd_endpoints: empty; storage = \"etcd\" needs at least one endpoint")]
    NoEndpoints,
    /// A TLS file cannot be read.
    #[error("config: key {key}: {path}: {source}")]
    TlsFile {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// Only one of the client certificate and its key is given.
    #[error("config: keys etcd_cert_file and etcd_key_file go together; only {given} is set")]
    HalfIdentity {
        /// The key that is set.
        given: &'static str,
    },
    /// etcd refused or failed a request.
    #[error("etcd {endpoints}: {what}: {reason}")]
    Request {
        /// The endpoints.
        endpoints: String,
        /// What was asked (`connect`, `create pods/default/a`, ...).
        what: String,
        /// Why it failed.
        reason: String,
    },
}

/// Writes that may wait to be sent to etcd before callers wait to queue theirs.
const WRITE_QUEUE: usize = 1024;

/// The etcd-backed [`Store`]. Dropping it stops its tasks and closes every watch.
pub struct EtcdStore {
    /// State shared with the feed and upkeep tasks.
    shared: Arc<Shared>,
    /// Writes waiting to be sent to etcd in a group.
    writes: mpsc::Sender<batch::Write>,
    /// Key prefix in etcd.
    prefix: Prefix,
    /// The feed, group commit, health check and compaction tasks.
    tasks: Vec<JoinHandle<()>>,
}

impl EtcdStore {
    /// Connects to etcd, loads every object under the prefix into the cache and
    /// starts following it. Must run inside a tokio runtime, which then runs the
    /// store's tasks.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore, EtcdError> {
        if options.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let endpoints = options.endpoints.join(",");
        let timeout = options.request_timeout;
        let mut connect = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        if let Some(tls) = tls(&options.tls)? {
            connect = connect.with_tls(tls);
        }
        let failed = |what: &str, reason: String| EtcdError::Request {
            endpoints: endpoints.clone(),
            what: what.to_owned(),
            reason,
        };
        let client =
            tokio::time::timeout(timeout, Client::connect(&options.endpoints, Some(connect)))
                .await
                .map_err(|_| failed("connect", format!("no answer within {timeout:?}")))?
                .map_err(|err| failed("connect", describe(&err)))?;
        let prefix = Prefix::new(&options.prefix);
        let loaded = feed::load(&mut client.kv_client(), &prefix, timeout)
            .await
            .map_err(|reason| failed(&format!("list {}", prefix.as_str()), reason))?;
        info!(etcd = %endpoints, prefix = prefix.as_str(), keys = loaded.objects.len(), revision = loaded.revision, "etcd store connected");
        let shared = Arc::new(Shared::new(loaded, options.cache, endpoints, timeout));
        let (writes, queued) = mpsc::channel(WRITE_QUEUE);
        let mut tasks = vec![
            tokio::spawn(feed::run(shared.clone(), client.clone(), prefix.clone())),
            tokio::spawn(batch::run(shared.clone(), client.kv_client(), queued)),
            tokio::spawn(upkeep::check_health(shared.clone(), client.clone())),
        ];
        if !options.compaction_interval.is_zero() {
            tasks.push(tokio::spawn(upkeep::compact(
                shared.clone(),
                client.kv_client(),
                options.compaction_interval,
            )));
        }
        Ok(EtcdStore {
            shared,
            writes,
            prefix,
            tasks,
        })
    }

    /// Runs the transaction of one write to `key`, in a group with concurrent ones,
    /// within the request timeout. Returns the write's resourceVersion (when its
    /// compare held) and the answer to its own transaction.
    async fn txn(
        &self,
        verb: &str,
        key: &str,
        change: batch::Change,
    ) -> Result<(Revision, TxnResponse), StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        let timeout = self.shared.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let what = format!("{verb} {key}");
        let (reply, answer) = oneshot::channel();
        let write = batch::Write {
            what: what.clone(),
            etcd_key: self.prefix.etcd_key(key),
            change,
            reply,
        };
        let queued = tokio::time::timeout_at(deadline, self.writes.send(write)).await;
        let closed = || {
            self.shared
                .unavailable(&what, "the store is shutting down".into())
        };
        match queued {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(closed()),
            Err(_) => {
                return Err(self
                    .shared
                    .unavailable(&what, format!("no answer within {timeout:?}")))
            }
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer.map(|answer| (answer.revision, answer.response)),
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(self
                .shared
                .unavailable(&what, format!("no answer within {timeout:?}"))),
        }
    }

    /// The object written at `mod_revision`, once the cache has applied that revision
    /// (so reads through this apiserver see it), or the request timeout has passed.
    /// It is the object the feed stored from the write's offer when it took it,
    /// rather than one serialized again.
    async fn written(
        &self,
        offered: offers::Offered<'_>,
        create_revision: Revision,
        mod_revision: Revision,
    ) -> Result<Stored, StoreError> {
        self.wait_applied(mod_revision).await;
        offered.stored(create_revision, mod_revision)
    }

    /// Waits until the cache has applied `revision`, unless the feed is down (the
    /// write is durable in etcd; the cache catches up when the feed is back).
    async fn wait_applied(&self, revision: Revision) {
        if !self.shared.feed_live() {
            return;
        }
        let mut applied = self.shared.applied.subscribe();
        let timeout = self.shared.request_timeout;
        let caught_up = applied.wait_for(|applied| *applied >= revision);
        if tokio::time::timeout(timeout, caught_up).await.is_err() {
            warn!(etcd = %self.shared.endpoints, revision, "the watch cache did not apply a write within the request timeout");
        }
    }
}

/// The etcd key-value pair a transaction's first operation answered.
fn first_kv(response: &TxnResponse) -> Option<etcd_client::KeyValue> {
    match response.op_responses().into_iter().next()? {
        TxnOpResponse::Put(put) => put.prev_key().cloned(),
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
        TxnOpResponse::Txn(_) => None,
    }
}

/// Why an update or delete of `key` expecting `expected` did not apply, from the
/// key's current state read in the same transaction.
fn refused(
    key: &str,
    expected: Option<Revision>,
    current: Option<etcd_client::KeyValue>,
) -> StoreError {
    match (current, expected) {
        (Some(current), Some(expected)) => StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual: codec::modified(&current),
        },
        _ => StoreError::NotFound {
            key: key.to_owned(),
        },
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, mut object: Value) -> Result<Stored, StoreError> {
        let value = codec::encode(key, &mut object)?;
        let offered = self
            .shared
            .offers
            .offer(key, codec::json_of(&value), object);
        let change = batch::Change::Create(value);
        let (revision, response) = self.txn("create", key, change).await?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let created = codec::created(codec::etcd_revision(revision));
        self.written(offered, created, revision).await
    }

    async fn update(
        &self,
        key: &str,
        mut object: Value,
        expected: Option<Revision>,
    ) -> Result<Stored, StoreError> {
        let value = codec::encode(key, &mut object)?;
        let offered = self
            .shared
            .offers
            .offer(key, codec::json_of(&value), object);
        let change = batch::Change::Update(value, expected);
        let (revision, response) = self.txn("update", key, change).await?;
        let previous = first_kv(&response);
        if !response.succeeded() {
            return Err(refused(key, expected, previous));
        }
        let created = previous.map_or_else(
            || codec::created(codec::etcd_revision(revision)),
            |kv| codec::created(kv.create_revision()),
        );
        self.written(offered, created, revision).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Stored, StoreError> {
        let change = batch::Change::Delete(expected);
        let (revision, response) = self.txn("delete", key, change).await?;
        let previous = first_kv(&response);
        if !response.succeeded() {
            return Err(refused(key, expected, previous));
        }
        let previous = previous.ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })?;
        let deleted = codec::decode(
            Arc::from(key),
            previous.value(),
            codec::created(previous.create_revision()),
            revision,
        )?;
        self.wait_applied(revision).await;
        Ok(deleted)
    }

    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.shared.available()?;
        Ok(self.shared.cache.read().get(key))
    }

    fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError> {
        self.shared.available()?;
        self.shared.cache.read().list(opts, Instant::now())
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.shared.available()?;
        let reached = self.shared.reached.load(Ordering::Acquire);
        self.shared
            .cache
            .write()
            .watch(prefix, from, reached, Instant::now())
    }

    fn revision(&self) -> Revision {
        self.shared.cache.read().revision()
    }

    fn count_by_resource(&self) -> Vec<(String, usize)> {
        self.shared.cache.read().count_by_resource()
    }

    fn stats(&self) -> StoreStats {
        let cache = self.shared.cache.read();
        StoreStats {
            revision: cache.revision(),
            compacted: cache.compacted(),
            db_size_bytes: self.shared.db_size.load(Ordering::Relaxed),
            keys: cache.len(),
            storage_cluster_id: format!("{:x}", self.shared.cluster_id.load(Ordering::Relaxed)),
        }
    }

    fn health(&self) -> Result<(), StoreError> {
        self.shared.available()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.cache.write().close_watchers();
        info!(etcd = %self.shared.endpoints, "etcd store closed");
    }
}

/// The TLS settings of the given files; `None` when no file is given.
fn tls(files: &EtcdTls) -> Result<Option<TlsOptions>, EtcdError> {
    if files.ca_file.is_none() && files.cert_file.is_none() && files.key_file.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read("etcd_ca_file", ca)?));
    }
    match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("etcd_cert_file", cert)?,
                read("etcd_key_file", key)?,
            ));
        }
        (Some(_), None) => {
            return Err(EtcdError::HalfIdentity {
                given: "etcd_cert_file",
            })
        }
        (None, Some(_)) => {
            return Err(EtcdError::HalfIdentity {
                given: "etcd_key_file",
            })
        }
        (None, None) => {}
    }
    Ok(Some(tls))
}

/// Reads the file a config key names.
fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile {
        key,
        path: path.to_owned(),
        source,
    })
}

/// True when a request failed because no connection to the chosen member could be
/// made (the request never left this process), so retrying it on another member is safe.
fn never_sent(err: &etcd_client::Error) -> bool {
    let text = match err {
        etcd_client::Error::GRpcStatus(status) => {
            if format!("{:?}", status.code()) != "Unavailable" {
                return false;
            }
            format!("{status} {status:?}")
        }
        etcd_client::Error::TransportError(e) => format!("{e} {e:?}"),
        _ => return false,
    };
    let text = text.to_ascii_lowercase();
    [
        "connect error",
        "connection refused",
        "error trying to connect",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// A short description of an etcd client error: the gRPC message, without the
/// status' debug dump.
fn describe(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) if !status.message().is_empty() => {
            status.message().to_owned()
        }
        etcd_client::Error::GRpcStatus(status) => format!("{:?}", status.code()),
        other => other.to_string(),
    }
}
