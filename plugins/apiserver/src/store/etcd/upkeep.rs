//! The etcd backend's periodic work: a health check for `/readyz` and the compaction of etcd's history.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};
use tracing::{debug, info, warn};

use super::codec;
use super::{describe, never_sent, Shared};
use crate::store::Revision;

/// Time between health checks.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for a health check (kube-apiserver's `--etcd-healthcheck-timeout`).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The key a health check reads (as kube-apiserver's check does).
const HEALTH_KEY: &str = "health";

/// The key whose version apiservers sharing an etcd compare-and-swap so that only
/// one of them compacts per interval (kube-apiserver's key, so they can share too).
const COMPACT_KEY: &str = "compact_rev_key";

/// Checks every second that etcd answers a quorum read; records the outcome, the
/// revision etcd has reached and the size of its database.
pub(super) async fn check_health(shared: Arc<Shared>, client: Client) {
    let mut ticks = tokio::time::interval(HEALTH_INTERVAL);
    let timeout = HEALTH_TIMEOUT.min(shared.request_timeout);
    loop {
        ticks.tick().await;
        let mut kv = client.kv_client();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let read = kv.get(HEALTH_KEY, Some(GetOptions::new().with_count_only()));
            match tokio::time::timeout_at(deadline, read).await {
                // A dead member among several: ask another one (see `never_sent`).
                Ok(Err(err)) if never_sent(&err) && attempts < 2 * shared.members() => continue,
                other => break other,
            }
        };
        match outcome {
            Ok(Ok(response)) => {
                if let Some(header) = response.header() {
                    shared.reach(codec::complete(header.revision()));
                    shared
                        .cluster_id
                        .store(header.cluster_id(), Ordering::Relaxed);
                }
                shared.set_check(None);
            }
            Ok(Err(err)) => {
                shared.set_check(Some(describe(&err)));
                continue;
            }
            Err(_) => {
                shared.set_check(Some(format!("no answer within {timeout:?}")));
                continue;
            }
        }
        let mut maintenance = client.maintenance_client();
        if let Ok(Ok(status)) = tokio::time::timeout(timeout, maintenance.status()).await {
            let size = u64::try_from(status.db_size()).unwrap_or(0);
            shared.db_size.store(size, Ordering::Relaxed);
        }
    }
}

/// Every `interval`, compacts etcd's history up to the revision seen one interval
/// before (so watches may resume from at least `interval` ago), and forgets the
/// compacted events in the cache. Apiservers sharing the etcd take turns through
/// [`COMPACT_KEY`], as kube-apiserver's compactor does.
pub(super) async fn compact(shared: Arc<Shared>, mut kv: KvClient, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut version = 0;
    let mut last = 0;
    loop {
        ticks.tick().await;
        match compact_once(&mut kv, shared.request_timeout, version, last).await {
            Ok(round) => {
                if let Some(compacted) = round.compacted {
                    // A watch may start from any resourceVersion of the etcd
                    // revision compacted at (its events from there on are kept).
                    shared
                        .cache
                        .write()
                        .compact(codec::resource_version(codec::raw(compacted), 0));
                    info!(etcd = %shared.endpoints, revision = compacted, "etcd history compacted");
                }
                version = round.version;
                last = round.revision;
            }
            Err(reason) => {
                warn!(etcd = %shared.endpoints, reason = %reason, "etcd compaction failed; next try in one interval");
            }
        }
    }
}

/// What one compaction round saw and did.
struct Round {
    /// Version of [`COMPACT_KEY`] after the round.
    version: i64,
    /// etcd's revision at the round: what the next round compacts to.
    revision: Revision,
    /// The revision compacted to, if this apiserver compacted.
    compacted: Option<Revision>,
}

/// Claims the round by bumping [`COMPACT_KEY`] from `version`; the winner compacts
/// at `last` (the revision of the previous round; 0: nothing yet).
async fn compact_once(
    kv: &mut KvClient,
    timeout: Duration,
    version: i64,
    last: Revision,
) -> Result<Round, String> {
    let claim = Txn::new()
        .when([Compare::version(COMPACT_KEY, CompareOp::Equal, version)])
        .and_then([TxnOp::put(COMPACT_KEY, last.to_string(), None)])
        .or_else([TxnOp::get(COMPACT_KEY, None)]);
    let response = match tokio::time::timeout(timeout, kv.txn(claim)).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return Err(format!("claim {COMPACT_KEY}: {}", describe(&err))),
        Err(_) => return Err(format!("claim {COMPACT_KEY}: no answer within {timeout:?}")),
    };
    let revision = response
        .header()
        .map_or(0, |header| codec::revision(header.revision()));
    if !response.succeeded() {
        let seen = match response.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map_or(0, |kv| kv.version()),
            _ => 0,
        };
        debug!(version = seen, "another apiserver compacts this round");
        return Ok(Round {
            version: seen,
            revision,
            compacted: None,
        });
    }
    let compacted = if last == 0 {
        None
    } else {
        match tokio::time::timeout(timeout, kv.compact(codec::raw(last), None)).await {
            Ok(Ok(_)) => Some(last),
            Ok(Err(err)) if describe(&err).contains("compacted") => Some(last),
            Ok(Err(err)) => return Err(format!("compact at {last}: {}", describe(&err))),
            Err(_) => return Err(format!("compact at {last}: no answer within {timeout:?}")),
        }
    };
    Ok(Round {
        version: version + 1,
        revision,
        compacted,
    })
}
