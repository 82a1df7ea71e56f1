//! The embedded store's memory: current objects, the event history window and the watchers.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::debug;

use super::EmbeddedOptions;
use crate::store::{
    Event, EventType, ListOptions, ListResult, Revision, StoreError, Stored, Watch,
};

/// Everything reads are served from. The commit thread is its only writer: it
/// applies each batch after the batch is on disk.
///
/// Invariant: `compacted + history.len() == revision`, and the history holds one
/// event per revision in `compacted + 1 ..= revision`.
pub(super) struct Cache {
    /// Current objects by key.
    objects: BTreeMap<Arc<str>, Stored>,
    /// Number of keys per resource (key part before the first `/`).
    per_resource: BTreeMap<String, usize>,
    /// Revision of the last applied write.
    revision: Revision,
    /// Revision before the oldest event kept.
    compacted: Revision,
    /// Recent events with the time they were applied, oldest first.
    history: VecDeque<(Instant, Event)>,
    /// Live watchers.
    watchers: Vec<Watcher>,
    /// History and watcher limits.
    options: EmbeddedOptions,
}

/// One registered watch.
struct Watcher {
    /// Key prefix it watches.
    prefix: String,
    /// Where its events go.
    tx: mpsc::Sender<Event>,
}

impl Cache {
    /// A cache holding `objects` at `revision`, with an empty history (so watches
    /// may start from `revision` on).
    pub(super) fn new(
        objects: BTreeMap<Arc<str>, Stored>,
        revision: Revision,
        options: EmbeddedOptions,
    ) -> Cache {
        let mut per_resource = BTreeMap::new();
        for key in objects.keys() {
            *per_resource.entry(resource_of(key).to_owned()).or_insert(0) += 1;
        }
        Cache {
            objects,
            per_resource,
            revision,
            compacted: revision,
            history: VecDeque::new(),
            watchers: Vec::new(),
            options,
        }
    }

    /// Reads one key.
    pub(super) fn get(&self, key: &str) -> Option<Stored> {
        self.objects.get(key).cloned()
    }

    /// Revision of the last applied write.
    pub(super) fn revision(&self) -> Revision {
        self.revision
    }

    /// Revision before the oldest event kept.
    pub(super) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// Number of keys.
    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Number of registered watchers.
    pub(super) fn watchers(&self) -> usize {
        self.watchers.len()
    }

    /// Number of keys per resource, in resource order.
    pub(super) fn count_by_resource(&self) -> Vec<(String, usize)> {
        self.per_resource
            .iter()
            .map(|(resource, count)| (resource.clone(), *count))
            .collect()
    }

    /// One page of the keys under `opts.prefix`, after `opts.start_after`.
    pub(super) fn list(&self, opts: &ListOptions) -> ListResult {
        let prefix = opts.prefix.as_str();
        let start = match opts.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = opts.limit.filter(|limit| *limit > 0).unwrap_or(usize::MAX);
        let mut range = self
            .objects
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, stored)| stored);
        let items: Vec<Stored> = range.by_ref().take(limit).cloned().collect();
        let remaining = range.count();
        ListResult {
            items,
            revision: self.revision,
            remaining,
        }
    }

    /// Starts a watch of `prefix` after `from`: the kept events after it, and a
    /// watcher for the events applied from now on.
    pub(super) fn watch(
        &mut self,
        prefix: &str,
        from: Revision,
        now: Instant,
    ) -> Result<Watch, StoreError> {
        self.trim(now);
        if from < self.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: self.compacted,
            });
        }
        if from > self.revision {
            return Err(StoreError::FutureRevision {
                requested: from,
                current: self.revision,
            });
        }
        let skip = usize::try_from(from - self.compacted)
            .unwrap_or(usize::MAX)
            .min(self.history.len());
        let backlog = self
            .history
            .range(skip..)
            .map(|(_, event)| event)
            .filter(|event| event.object.key.starts_with(prefix))
            .cloned()
            .collect();
        let (tx, events) = mpsc::channel(self.options.watcher_buffer.max(1));
        self.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            tx,
        });
        Ok(Watch { backlog, events })
    }

    /// Applies committed events (consecutive revisions after the current one):
    /// updates the objects, appends to the history and delivers to watchers.
    pub(super) fn apply(&mut self, events: &[Event], now: Instant) {
        for event in events {
            let key = &event.object.key;
            match event.kind {
                EventType::Added | EventType::Modified => {
                    if self
                        .objects
                        .insert(key.clone(), event.object.clone())
                        .is_none()
                    {
                        *self
                            .per_resource
                            .entry(resource_of(key).to_owned())
                            .or_insert(0) += 1;
                    }
                }
                EventType::Deleted => {
                    if self.objects.remove(key).is_some() {
                        self.forget_one(resource_of(key));
                    }
                }
            }
            self.revision = event.revision;
            self.history.push_back((now, event.clone()));
        }
        self.trim(now);
        self.deliver(events);
    }

    /// Closes every watcher (their receivers end).
    pub(super) fn close_watchers(&mut self) {
        self.watchers.clear();
    }

    /// Drops the oldest events beyond the count or age limit.
    fn trim(&mut self, now: Instant) {
        while let Some((at, event)) = self.history.front() {
            let too_many = self.history.len() > self.options.history_revisions;
            let too_old = now.saturating_duration_since(*at) > self.options.history_age;
            if !too_many && !too_old {
                break;
            }
            self.compacted = event.revision;
            self.history.pop_front();
        }
    }

    /// Sends `events` to the watchers of their keys; drops watchers that are gone
    /// or too far behind (their clients re-watch).
    fn deliver(&mut self, events: &[Event]) {
        self.watchers.retain(|watcher| {
            if watcher.tx.is_closed() {
                return false;
            }
            for event in events.iter().filter(|event| event.object.key.starts_with(&watcher.prefix)) {
                if let Err(err) = watcher.tx.try_send(event.clone()) {
                    let reason = match err {
                        mpsc::error::TrySendError::Full(_) => "too far behind",
                        mpsc::error::TrySendError::Closed(_) => "closed",
                    };
                    debug!(prefix = %watcher.prefix, revision = event.revision, reason, "watcher dropped");
                    return false;
                }
            }
            true
        });
    }

    /// Decrements the key count of `resource`, forgetting it at zero.
    fn forget_one(&mut self, resource: &str) {
        if let Some(count) = self.per_resource.get_mut(resource) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_resource.remove(resource);
            }
        }
    }
}

/// The resource part of a key: what comes before the first `/`.
fn resource_of(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::tests::{create, open_temp, pod};
    use super::super::EmbeddedOptions;
    use crate::store::{Event, EventType, Revision, Store, StoreError, Watch};

    /// Receives events until one at `last` (or a timeout), returning their revisions.
    async fn revisions_until(watch: &mut Watch, last: Revision) -> Vec<Revision> {
        let mut seen: Vec<Revision> = watch.backlog.iter().map(|event| event.revision).collect();
        while seen.last().is_none_or(|revision| *revision < last) {
            let next = tokio::time::timeout(Duration::from_secs(10), watch.events.recv()).await;
            match next.expect("events arrive in time") {
                Some(event) => seen.push(event.revision),
                None => panic!("watch closed after {seen:?}"),
            }
        }
        seen
    }

    #[tokio::test]
    async fn watch_should_return_backlog_then_live_events_in_order() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        create(&store, "pods/default/a", "a").await;
        create(&store, "nodes/n1", "n1").await;
        create(&store, "pods/default/b", "b").await;
        let mut watch = store.watch("pods/", 1).expect("watch");
        assert_eq!(
            watch.backlog.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![3]
        );
        store
            .update("pods/default/a", pod("a"), Some(1))
            .await
            .expect("update a");
        create(&store, "nodes/n2", "n2").await;
        store
            .delete("pods/default/b", None)
            .await
            .expect("delete b");
        let live: Vec<Event> = vec![
            watch.events.recv().await.expect("event 4"),
            watch.events.recv().await.expect("event 6"),
        ];
        assert_eq!(
            live.iter()
                .map(|e| (e.revision, e.kind))
                .collect::<Vec<_>>(),
            vec![(4, EventType::Modified), (6, EventType::Deleted)]
        );
        assert!(watch.events.try_recv().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_should_miss_and_repeat_nothing_while_writes_race_with_registration() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        let store = Arc::new(store);
        let mut writers = Vec::new();
        for task in 0..8 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let mut pods = Vec::new();
                for i in 0..100 {
                    let key = format!("pods/ns{task}/p{i}");
                    pods.push(
                        store
                            .create(&key, pod(&key))
                            .await
                            .expect("create pod")
                            .mod_revision,
                    );
                    if i % 2 == 0 {
                        let key = format!("configmaps/ns{task}/c{i}");
                        create(&store, &key, &key).await;
                    }
                }
                pods
            }));
        }
        let mut watches = Vec::new();
        for round in 0..20u64 {
            let from = store.revision().saturating_sub(round % 7);
            watches.push((from, store.watch("pods/", from).expect("watch")));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut pods = BTreeSet::new();
        for writer in writers {
            pods.extend(writer.await.expect("writer"));
        }
        let last = *pods.last().expect("some pods");
        for (from, mut watch) in watches {
            let seen = revisions_until(&mut watch, last).await;
            let expected: Vec<Revision> = pods.range(from + 1..).copied().collect();
            assert_eq!(seen, expected, "watch from {from}");
        }
    }

    #[tokio::test]
    async fn watch_should_answer_compacted_once_history_is_trimmed_by_count() {
        let options = EmbeddedOptions {
            history_revisions: 5,
            ..EmbeddedOptions::default()
        };
        let (_dir, store) = open_temp(options);
        for i in 0..10 {
            create(&store, &format!("pods/default/p{i}"), "p").await;
        }
        assert!(matches!(
            store.watch("pods/", 4),
            Err(StoreError::Compacted {
                requested: 4,
                compacted: 5
            })
        ));
        let watch = store.watch("pods/", 5).expect("watch from compacted");
        assert_eq!(
            watch.backlog.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![6, 7, 8, 9, 10]
        );
        assert_eq!(store.stats().compacted, 5);
    }

    #[tokio::test]
    async fn watch_should_answer_compacted_once_history_is_trimmed_by_age() {
        let options = EmbeddedOptions {
            history_age: Duration::from_millis(20),
            ..EmbeddedOptions::default()
        };
        let (_dir, store) = open_temp(options);
        for i in 0..3 {
            create(&store, &format!("pods/default/p{i}"), "p").await;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(
            store.watch("pods/", 0),
            Err(StoreError::Compacted {
                requested: 0,
                compacted: 3
            })
        ));
        assert!(store
            .watch("pods/", 3)
            .expect("watch from now")
            .backlog
            .is_empty());
    }

    #[tokio::test]
    async fn watch_should_refuse_a_future_revision() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        create(&store, "pods/default/a", "a").await;
        assert!(matches!(
            store.watch("pods/", 2),
            Err(StoreError::FutureRevision {
                requested: 2,
                current: 1
            })
        ));
    }

    #[tokio::test]
    async fn watch_should_report_a_delete_at_the_delete_revision() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        create(&store, "pods/default/a", "a").await;
        store
            .update("pods/default/a", pod("a"), None)
            .await
            .expect("update");
        let mut watch = store.watch("pods/", 2).expect("watch");
        store
            .delete("pods/default/a", Some(2))
            .await
            .expect("delete");
        let event = watch.events.recv().await.expect("delete event");
        assert_eq!((event.revision, event.kind), (3, EventType::Deleted));
        assert_eq!(event.object.mod_revision, 3);
        assert_eq!(event.object.create_revision, 1);
        assert_eq!(event.object.object["metadata"]["resourceVersion"], "3");
        let json: serde_json::Value = serde_json::from_slice(&event.object.json).expect("json");
        assert_eq!(json["metadata"]["resourceVersion"], "3");
        assert_eq!(event.prev.expect("prev").mod_revision, 2);
    }

    #[tokio::test]
    async fn watch_should_close_a_watcher_that_falls_behind() {
        let options = EmbeddedOptions {
            watcher_buffer: 2,
            ..EmbeddedOptions::default()
        };
        let (_dir, store) = open_temp(options);
        let mut watch = store.watch("pods/", 0).expect("watch");
        let mut other = store.watch("nodes/", 0).expect("watch nodes");
        for i in 0..5 {
            create(&store, &format!("pods/default/p{i}"), "p").await;
        }
        assert_eq!(watch.events.recv().await.map(|e| e.revision), Some(1));
        assert_eq!(watch.events.recv().await.map(|e| e.revision), Some(2));
        assert!(watch.events.recv().await.is_none());
        create(&store, "nodes/n1", "n1").await;
        assert_eq!(other.events.recv().await.map(|e| e.revision), Some(6));
    }

    #[tokio::test]
    async fn watch_should_forget_watchers_whose_receiver_is_dropped() {
        let (_dir, store) = open_temp(EmbeddedOptions::default());
        drop(store.watch("pods/", 0).expect("watch"));
        let _kept = store.watch("nodes/", 0).expect("watch nodes");
        assert_eq!(store.watchers(), 2);
        store.create("nodes/n1", pod("n1")).await.expect("create");
        assert_eq!(store.watchers(), 1);
    }
}
