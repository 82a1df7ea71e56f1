//! Informers: list, then watch from the list's revision, keeping a local cache and
//! telling the owner what changed; relists after 410 Gone and reconnects with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::ObjectResource;
use crate::{Api, Backoff, ListParams, WatchEvent};

/// What changed in an informer's cache.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// A new object.
    Added(Arc<K>),
    /// An object changed (`old` is the cached state before).
    Updated {
        /// The state before.
        old: Arc<K>,
        /// The state now.
        new: Arc<K>,
    },
    /// An object was deleted; its last known state.
    Deleted(Arc<K>),
    /// The cache holds a complete list (sent after the first list and every relist).
    Synced,
}

/// The cache key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key_of<K: ObjectResource>(object: &K) -> String {
    let meta = object.metadata();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// A read-only view of an informer's objects; cheap to clone.
pub struct Cache<K> {
    objects: Arc<RwLock<HashMap<String, Arc<K>>>>,
    synced: watch::Receiver<bool>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            objects: self.objects.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K: ObjectResource> Cache<K> {
    /// The object with key `namespace/name` (or `name` when cluster-scoped).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.objects.read().get(key).cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects.read().values().cloned().collect()
    }

    /// Cached objects for which `keep` holds.
    pub fn filter(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.objects
            .read()
            .values()
            .filter(|o| keep(o))
            .cloned()
            .collect()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.objects.read().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.objects.read().is_empty()
    }

    /// True once the first list has been loaded.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list has been loaded (returns at once afterwards).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Starts list+watch informers.
pub struct Informer;

impl Informer {
    /// Lists and watches `api` with `params` on the current tokio runtime until
    /// `shutdown`; returns the cache and the stream of changes (which the caller
    /// must drain).
    pub fn start<K: ObjectResource>(
        api: Api<K>,
        params: ListParams,
        shutdown: CancellationToken,
    ) -> (Cache<K>, mpsc::UnboundedReceiver<Change<K>>) {
        let (synced_tx, synced) = watch::channel(false);
        let objects = Arc::new(RwLock::new(HashMap::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let runner = Runner {
            api,
            params,
            objects: objects.clone(),
            synced: synced_tx,
            tx,
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = runner.run() => {}
            }
        });
        (Cache { objects, synced }, rx)
    }
}

struct Runner<K> {
    api: Api<K>,
    params: ListParams,
    objects: Arc<RwLock<HashMap<String, Arc<K>>>>,
    synced: watch::Sender<bool>,
    tx: mpsc::UnboundedSender<Change<K>>,
}

impl<K: ObjectResource> Runner<K> {
    async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let started = std::time::Instant::now();
            let listed = self.relist().await;
            self.count_list(listed.is_ok(), started.elapsed());
            let mut rv = match listed {
                Ok(rv) => rv,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "informer list failed");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            backoff.reset();
            // Watch until the revision expires (then relist) or the receiver is gone.
            loop {
                if self.tx.is_closed() {
                    return;
                }
                let end = self.watch_from(&mut rv).await;
                self.count_watch_restart(&end);
                match end {
                    WatchEnd::Closed => backoff.reset(),
                    WatchEnd::Expired => break,
                    WatchEnd::Failed(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "informer watch failed");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    /// Counts one list (`kubernel_informer_lists_total`, `..._list_duration_seconds`).
    fn count_list(&self, ok: bool, took: Duration) {
        if let Some(m) = self.api.client().metrics() {
            let result = if ok { "success" } else { "error" };
            m.informer_lists
                .with_label_values(&[K::URL_PATH_SEGMENT, result])
                .inc();
            m.informer_list_duration
                .with_label_values(&[K::URL_PATH_SEGMENT])
                .observe(took.as_secs_f64());
            // The restart series start at zero, so `increase()` sees the first one.
            for reason in ["closed", "expired", "failed"] {
                m.informer_watch_restarts
                    .with_label_values(&[K::URL_PATH_SEGMENT, reason]);
            }
        }
    }

    /// Counts the end of a watch that is begun again (`kubernel_informer_watch_restarts_total`).
    fn count_watch_restart(&self, end: &WatchEnd) {
        if let Some(m) = self.api.client().metrics() {
            let reason = match end {
                WatchEnd::Closed => "closed",
                WatchEnd::Expired => "expired",
                WatchEnd::Failed(_) => "failed",
            };
            m.informer_watch_restarts
                .with_label_values(&[K::URL_PATH_SEGMENT, reason])
                .inc();
        }
    }

    /// Lists everything, replaces the cache, emits the differences and `Synced`.
    async fn relist(&self) -> Result<String, crate::ClientError> {
        let list = self.api.list(&self.params).await?;
        let fresh: HashMap<String, Arc<K>> = list
            .items
            .into_iter()
            .map(|o| (key_of(&o), Arc::new(o)))
            .collect();
        let mut changes = Vec::new();
        {
            let mut objects = self.objects.write();
            for (key, old) in objects.iter() {
                if !fresh.contains_key(key) {
                    changes.push(Change::Deleted(old.clone()));
                }
            }
            for (key, new) in &fresh {
                match objects.get(key) {
                    None => changes.push(Change::Added(new.clone())),
                    Some(old) if rv(&**old) != rv(&**new) => changes.push(Change::Updated {
                        old: old.clone(),
                        new: new.clone(),
                    }),
                    Some(_) => {}
                }
            }
            *objects = fresh;
        }
        for change in changes {
            let _ = self.tx.send(change);
        }
        let _ = self.tx.send(Change::Synced);
        self.synced.send_replace(true);
        Ok(list.resource_version)
    }

    async fn watch_from(&self, revision: &mut String) -> WatchEnd {
        let mut stream = match self.api.watch(&self.params, revision).await {
            Ok(s) => Box::pin(s),
            Err(e) if e.code() == Some(410) => return WatchEnd::Expired,
            Err(e) => return WatchEnd::Failed(e.to_string()),
        };
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(ev) => ev,
                Err(e) => return WatchEnd::Failed(e.to_string()),
            };
            match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    *revision = rv(&o).to_string();
                    let key = key_of(&o);
                    let new = Arc::new(o);
                    let old = self.objects.write().insert(key, new.clone());
                    let change = match old {
                        Some(old) => Change::Updated { old, new },
                        None => Change::Added(new),
                    };
                    let _ = self.tx.send(change);
                }
                WatchEvent::Deleted(o) => {
                    *revision = rv(&o).to_string();
                    let removed = self.objects.write().remove(&key_of(&o));
                    let last = removed.unwrap_or_else(|| Arc::new(o));
                    let _ = self.tx.send(Change::Deleted(last));
                }
                WatchEvent::Bookmark(r) => *revision = r,
                WatchEvent::Error { code: 410, .. } => return WatchEnd::Expired,
                WatchEvent::Error { code, message } => {
                    return WatchEnd::Failed(format!("watch error {code}: {message}"))
                }
            }
        }
        WatchEnd::Closed
    }
}

enum WatchEnd {
    /// The server ended the watch normally (timeout): watch again from the same revision.
    Closed,
    /// The revision is no longer in the server's history: relist.
    Expired,
    /// The connection failed: back off, then watch again.
    Failed(String),
}

fn rv<K: ObjectResource>(o: &K) -> &str {
    o.metadata().resource_version.as_deref().unwrap_or_default()
}
