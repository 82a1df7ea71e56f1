//! What the etcd store shares with its feed and upkeep tasks: the watch cache, revisions seen, and health.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tracing::{info, warn};

use super::feed::Loaded;
use super::offers::Offers;
use super::EtcdError;
use crate::store::cache::Cache;
use crate::store::{CacheOptions, Revision, StoreError};

/// What the store and its tasks share.
pub(super) struct Shared {
    /// Objects, history and watchers, fed by the etcd watch.
    pub(super) cache: RwLock<Cache>,
    /// Revision the cache has applied, for writes waiting to be readable.
    pub(super) applied: watch::Sender<Revision>,
    /// Newest revision seen in any etcd answer (the cache may lag behind it).
    pub(super) reached: AtomicU64,
    /// Why the feed or the health check is failing; both `None` when healthy.
    health: Mutex<Health>,
    /// Size of etcd's database, bytes, from the last health check.
    pub(super) db_size: AtomicU64,
    /// etcd's cluster id.
    pub(super) cluster_id: AtomicU64,
    /// The endpoints, for messages.
    pub(super) endpoints: String,
    /// Longest wait for one etcd request.
    pub(super) request_timeout: Duration,
    /// Objects being written, for the feed to take instead of decoding them.
    pub(super) offers: Offers,
}

/// Why the store cannot serve, if it cannot.
#[derive(Debug, Default)]
struct Health {
    /// The etcd watch feeding the cache is down (the cache may be stale).
    feed: Option<String>,
    /// The last health check failed.
    check: Option<String>,
}

impl Shared {
    /// The state of a store that loaded `loaded` from etcd at `endpoints`.
    pub(super) fn new(
        loaded: Loaded,
        options: CacheOptions,
        endpoints: String,
        request_timeout: Duration,
    ) -> Shared {
        Shared {
            cache: RwLock::new(Cache::new(loaded.objects, loaded.revision, options)),
            applied: watch::Sender::new(loaded.revision),
            reached: AtomicU64::new(loaded.revision),
            health: Mutex::new(Health::default()),
            db_size: AtomicU64::new(0),
            cluster_id: AtomicU64::new(loaded.cluster_id),
            endpoints,
            request_timeout,
            offers: Offers::default(),
        }
    }

    /// Whether the etcd watch feeds the cache now.
    pub(super) fn feed_live(&self) -> bool {
        self.health.lock().feed.is_none()
    }

    /// `Ok` when the feed is live and the last health check passed.
    pub(super) fn available(&self) -> Result<(), StoreError> {
        let health = self.health.lock();
        match health.feed.as_ref().or(health.check.as_ref()) {
            None => Ok(()),
            Some(reason) => Err(StoreError::Unavailable(format!(
                "etcd {}: {reason}",
                self.endpoints
            ))),
        }
    }

    /// Records the feed's state; logs changes.
    pub(super) fn set_feed(&self, down: Option<String>) {
        let mut health = self.health.lock();
        match (&health.feed, &down) {
            (None, Some(reason)) => {
                warn!(etcd = %self.endpoints, reason = %reason, "etcd watch feed lost; reads answer 503 until it is back")
            }
            (Some(_), None) => info!(etcd = %self.endpoints, "etcd watch feed live again"),
            _ => {}
        }
        health.feed = down;
    }

    /// Records the health check's outcome; logs changes.
    pub(super) fn set_check(&self, failing: Option<String>) {
        let mut health = self.health.lock();
        match (&health.check, &failing) {
            (None, Some(reason)) => {
                warn!(etcd = %self.endpoints, reason = %reason, "etcd health check failing")
            }
            (Some(_), None) => info!(etcd = %self.endpoints, "etcd healthy again"),
            _ => {}
        }
        health.check = failing;
    }

    /// Notes that etcd answered at `revision`.
    pub(super) fn reach(&self, revision: Revision) {
        self.reached.fetch_max(revision, Ordering::AcqRel);
    }

    /// How many etcd members the client was given.
    pub(super) fn members(&self) -> usize {
        self.endpoints.split(',').count().max(1)
    }

    /// The error of a failed request about `what`.
    pub(super) fn unavailable(&self, what: &str, reason: String) -> StoreError {
        StoreError::Unavailable(
            EtcdError::Request {
                endpoints: self.endpoints.clone(),
                what: what.to_owned(),
                reason,
            }
            .to_string(),
        )
    }
}
