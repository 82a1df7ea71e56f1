//! The watch cache's feed: every object under the prefix read at one revision, page by page, then one etcd watch of the prefix from there on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, EventType as EtcdEventType, GetOptions, KvClient, WatchOptions, WatchResponse,
};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::codec::{self, Prefix};
use super::offers::Offers;
use super::{describe, Shared};
use crate::store::cache::Cache;
use crate::store::{stored, Event, EventType, Revision, Stored};

/// Keys read per range request when loading.
const PAGE: i64 = 500;

/// How often the feed asks etcd for a progress notification (the revision etcd
/// has reached with no more events for the prefix). It keeps the cache's revision
/// current for lists and bookmarks, and shows the watch stream is alive.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// First and longest wait between attempts to re-establish the feed.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// The objects under a prefix at one revision.
pub(super) struct Loaded {
    /// Objects by store key.
    pub objects: BTreeMap<Arc<str>, Stored>,
    /// The store revision they were read at (every write of etcd's revision then).
    pub revision: Revision,
    /// etcd's cluster id.
    pub cluster_id: u64,
}

/// Reads every object under `prefix` at one revision, `PAGE` keys per request.
/// Values that are not stored objects are skipped with a warning. The error says
/// why etcd did not answer.
pub(super) async fn load(
    kv: &mut KvClient,
    prefix: &Prefix,
    timeout: Duration,
) -> Result<Loaded, String> {
    let mut objects = BTreeMap::new();
    let mut revision = 0;
    let mut cluster_id = 0;
    // The etcd revision of the first page, which the later ones are read at.
    let mut start = prefix.as_str().as_bytes().to_vec();
    loop {
        let options = GetOptions::new()
            .with_range(prefix.range_end())
            .with_limit(PAGE)
            .with_revision(revision);
        let page = match tokio::time::timeout(timeout, kv.get(start.clone(), Some(options))).await {
            Ok(Ok(page)) => page,
            Ok(Err(err)) => return Err(describe(&err)),
            Err(_) => return Err(format!("no answer within {timeout:?}")),
        };
        if let Some(header) = page.header().filter(|_| revision == 0) {
            revision = header.revision();
            cluster_id = header.cluster_id();
        }
        for kv in page.kvs() {
            let Some(key) = prefix.store_key(kv.key()) else {
                continue;
            };
            let create = codec::created(kv.create_revision());
            let modified = codec::modified(kv);
            match codec::decode(key.clone(), kv.value(), create, modified) {
                Ok(stored) => {
                    objects.insert(key, stored);
                }
                Err(err) => {
                    warn!(key = %key, error = %err, "skipping an etcd value that is not a stored object")
                }
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok(Loaded {
        objects,
        revision: codec::complete(revision),
        cluster_id,
    })
}

/// How following the watch ended.
enum Ended {
    /// etcd compacted (at this etcd revision) the revision the cache needs next: re-list.
    Compacted(i64),
    /// The stream failed or could not be opened.
    Failed(String),
}

/// Follows the prefix for as long as the store lives: watches from the cache's
/// revision, re-establishes the watch after failures (with backoff), and re-lists
/// when the revision it needs was compacted.
pub(super) async fn run(shared: Arc<Shared>, client: Client, prefix: Prefix) {
    let mut backoff = BACKOFF.0;
    loop {
        let started = Instant::now();
        let from = shared.cache.read().revision();
        let reason = match follow(&shared, &client, &prefix, from).await {
            Ended::Failed(reason) => reason,
            Ended::Compacted(compacted) => {
                shared.set_feed(Some(format!(
                    "re-listing: etcd revision {} was compacted (at {compacted})",
                    codec::etcd_revision(from) + 1
                )));
                match load(&mut client.kv_client(), &prefix, shared.request_timeout).await {
                    Ok(loaded) => {
                        info!(etcd = %shared.endpoints, keys = loaded.objects.len(), revision = loaded.revision, "watch cache re-listed; its watchers were closed");
                        shared.cache.write().reset(loaded.objects, loaded.revision);
                        shared.applied.send_replace(loaded.revision);
                        backoff = BACKOFF.0;
                        continue;
                    }
                    Err(reason) => format!("re-listing {}: {reason}", prefix.as_str()),
                }
            }
        };
        shared.set_feed(Some(reason));
        if started.elapsed() > BACKOFF.1 {
            backoff = BACKOFF.0;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Watches the prefix after the store revision `from` until the stream ends. The
/// cache holds every write of an etcd revision or none of them (it applies whole
/// watch responses), so the watch starts at the etcd revision after `from`'s. The
/// feed is live (reads are served) from etcd's first progress notification on,
/// when the cache has caught up with every event etcd had.
async fn follow(shared: &Shared, client: &Client, prefix: &Prefix, from: Revision) -> Ended {
    let options = WatchOptions::new()
        .with_range(prefix.range_end())
        .with_start_revision(codec::etcd_revision(from) + 1)
        .with_progress_notify();
    let timeout = shared.request_timeout;
    let mut watch_client = client.watch_client();
    let stream =
        match tokio::time::timeout(timeout, watch_client.watch(prefix.as_str(), Some(options)))
            .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                return Ended::Failed(format!("watch {}: {}", prefix.as_str(), describe(&err)))
            }
            Err(_) => {
                return Ended::Failed(format!(
                    "watch {}: no answer within {timeout:?}",
                    prefix.as_str()
                ))
            }
        };
    let (mut requests, mut responses) = stream.split();
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    let mut heard = Instant::now();
    let mut pending = None;
    loop {
        tokio::select! {
            message = responses.message() => {
                heard = Instant::now();
                match message {
                    Ok(Some(response)) => {
                        if let Some(ended) = handle(shared, prefix, &response, &mut pending) {
                            return ended;
                        }
                    }
                    Ok(None) => return Ended::Failed("the watch stream ended".into()),
                    Err(err) => return Ended::Failed(format!("watch {}: {}", prefix.as_str(), describe(&err))),
                }
            }
            _ = progress.tick() => {
                if heard.elapsed() > timeout + PROGRESS_INTERVAL {
                    return Ended::Failed(format!("watch {}: no answer within {timeout:?}", prefix.as_str()));
                }
                if let Err(err) = requests.request_progress().await {
                    return Ended::Failed(format!("watch {}: {}", prefix.as_str(), describe(&err)));
                }
            }
        }
    }
}

/// Applies one watch response to the cache; `Some` when the watch ended.
///
/// A progress notification's revision is applied at the next one: etcd before
/// 3.4.25/3.5.8 may report a revision whose events are still on their way
/// (etcd-io/etcd#15220), and a second later they have arrived. `pending` holds it.
fn handle(
    shared: &Shared,
    prefix: &Prefix,
    response: &WatchResponse,
    pending: &mut Option<Revision>,
) -> Option<Ended> {
    if response.canceled() {
        let compacted = response.compact_revision();
        return Some(if compacted > 0 {
            Ended::Compacted(compacted)
        } else {
            Ended::Failed(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            ))
        });
    }
    if response.created() {
        debug!(etcd = %shared.endpoints, prefix = prefix.as_str(), "etcd watch created");
        return None;
    }
    if response.events().is_empty() {
        // A progress notification: no event for the prefix up to this revision.
        let revision = response
            .header()
            .map_or(0, |h| codec::complete(h.revision()));
        shared.reach(revision);
        if let Some(settled) = pending.replace(revision) {
            shared.cache.write().advance(settled);
        }
        shared.set_feed(None);
        return None;
    }
    // etcd sends every event of a revision in one response: the cache is then
    // current at the last store revision of the last etcd revision.
    let last = response
        .events()
        .iter()
        .filter_map(|e| e.kv())
        .map(|kv| codec::complete(kv.mod_revision()))
        .max()
        .unwrap_or(0);
    {
        let mut cache = shared.cache.write();
        let events = convert(&cache, &shared.offers, prefix, response.events());
        cache.apply(&events, Instant::now());
        cache.advance(last);
    }
    shared.reach(last);
    shared
        .applied
        .send_modify(|applied| *applied = (*applied).max(last));
    None
}

/// The store events of a batch of etcd events (whole etcd revisions, each in the
/// order etcd applied its writes), given the cache's state before them.
///
/// A put's resourceVersion takes the index its value holds; a delete's, the one
/// after the previous event of its revision, or 0 (as the group commit counts).
/// A put this apiserver made stores the writer's object (see [`Offers`]).
fn convert(
    cache: &Cache,
    offers: &Offers,
    prefix: &Prefix,
    batch: &[etcd_client::Event],
) -> Vec<Event> {
    let mut written: HashMap<Arc<str>, Option<Stored>> = HashMap::new();
    let mut events = Vec::with_capacity(batch.len());
    // The etcd revision and index of the previous event.
    let mut previous: Option<(i64, u64)> = None;
    for event in batch {
        let Some(kv) = event.kv() else { continue };
        let raw = kv.mod_revision();
        let index = match event.event_type() {
            EtcdEventType::Put => codec::split(kv.value()).map_or(0, |(index, _)| index),
            EtcdEventType::Delete => match previous {
                Some((at, index)) if at == raw => index + 1,
                _ => 0,
            },
        };
        previous = Some((raw, index));
        let Some(key) = prefix.store_key(kv.key()) else {
            continue;
        };
        let revision = codec::resource_version(raw, index);
        let prev = match written.get(&key) {
            Some(current) => current.clone(),
            None => cache.get(&key),
        };
        let converted = match event.event_type() {
            EtcdEventType::Put => {
                let create = codec::created(kv.create_revision());
                let offered = offers.take(&key, codec::json_of(kv.value()), |object| {
                    stored(&key, object, create, revision)
                });
                let object = offered
                    .unwrap_or_else(|| codec::decode(key.clone(), kv.value(), create, revision));
                object.map(|object| Event {
                    revision,
                    kind: if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    object,
                    prev,
                    encodings: Default::default(),
                })
            }
            EtcdEventType::Delete => {
                // Unknown to the cache (its value was skipped): nothing to report.
                let Some(prev) = prev else { continue };
                let last = Value::clone(&prev.object);
                stored(&key, last, prev.create_revision, revision).map(|object| Event {
                    revision,
                    kind: EventType::Deleted,
                    object,
                    prev: Some(prev),
                    encodings: Default::default(),
                })
            }
        };
        match converted {
            Ok(event) => {
                let after = (event.kind != EventType::Deleted).then(|| event.object.clone());
                written.insert(key, after);
                events.push(event);
            }
            Err(err) => {
                warn!(key = %key, revision, error = %err, "skipping an etcd event whose value is not a stored object")
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use etcd_client::Client;

    use super::super::codec::Prefix;
    use super::super::shared::Shared;
    use super::{load, run};
    use crate::store::tests::pod;
    use crate::store::{CacheOptions, StoreError};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feed_should_re_list_and_close_watchers_when_its_revision_was_compacted() {
        let etcd = tokio::task::spawn_blocking(kubernel_e2e::Etcd::start)
            .await
            .expect("etcd start task")
            .expect("start etcd");
        let client = Client::connect([etcd.endpoint.as_str()], None)
            .await
            .expect("connect");
        let mut kv = client.kv_client();
        let prefix = Prefix::new("/registry");
        let put = |name: &str| {
            (
                prefix.etcd_key(&format!("pods/default/{name}")),
                pod(name).to_string(),
            )
        };
        let (key, value) = put("a");
        kv.put(key, value, None).await.expect("put a");
        let timeout = Duration::from_secs(3);
        let loaded = load(&mut kv, &prefix, timeout).await.expect("load");
        let before = loaded.revision;
        let shared = Arc::new(Shared::new(
            loaded,
            CacheOptions::default(),
            etcd.endpoint.clone(),
            timeout,
        ));
        let mut watch = shared
            .cache
            .write()
            .watch("pods/", before, before, Instant::now())
            .expect("watch");
        for name in ["b", "c"] {
            let (key, value) = put(name);
            kv.put(key, value, None).await.expect("put");
        }
        let latest = kv
            .get("x", None)
            .await
            .expect("get")
            .header()
            .map_or(0, |h| h.revision());
        kv.compact(latest, None).await.expect("compact");
        let feed = tokio::spawn(run(shared.clone(), client.clone(), prefix.clone()));
        let closed = tokio::time::timeout(Duration::from_secs(10), watch.events.recv()).await;
        assert!(closed.expect("watch closed in time").is_none());
        {
            let cache = shared.cache.read();
            assert_eq!(cache.len(), 3);
            assert!(cache.revision() >= super::codec::complete(latest));
        }
        let stale = shared
            .cache
            .write()
            .watch("pods/", before, before, Instant::now());
        assert!(
            matches!(stale, Err(StoreError::Compacted { .. })),
            "{:?}",
            stale.err()
        );
        feed.abort();
    }
}
