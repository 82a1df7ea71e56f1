//! Shared informers: one list+watch per resource type, its changes fanned out to
//! every controller that subscribed before [`Informers::start`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use kubernel_client::{
    Api, Cache, CancellationToken, Change, Client, Informer, ListParams, ObjectResource,
};
use parking_lot::Mutex;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

type Subscribers<K> = Arc<Mutex<Vec<UnboundedSender<Change<K>>>>>;

/// Hands out caches and change streams; every type is listed and watched once.
pub struct Informers {
    client: Client,
    shutdown: CancellationToken,
    started: CancellationToken,
    entries: HashMap<TypeId, Box<dyn Any + Send>>,
}

struct Entry<K> {
    cache: Cache<K>,
    subscribers: Subscribers<K>,
}

impl Informers {
    /// A factory whose informers run until `shutdown`.
    pub fn new(client: Client, shutdown: CancellationToken) -> Self {
        Informers {
            client,
            shutdown,
            started: CancellationToken::new(),
            entries: HashMap::new(),
        }
    }

    fn entry<K: ObjectResource>(&mut self) -> &Entry<K> {
        let client = self.client.clone();
        let shutdown = self.shutdown.clone();
        let started = self.started.clone();
        let boxed = self.entries.entry(TypeId::of::<K>()).or_insert_with(|| {
            let (cache, source) =
                Informer::start(Api::<K>::all(client), ListParams::default(), shutdown);
            let subscribers: Subscribers<K> = Arc::default();
            tokio::spawn(forward(source, started, subscribers.clone()));
            Box::new(Entry { cache, subscribers })
        });
        match boxed.downcast_ref::<Entry<K>>() {
            Some(entry) => entry,
            None => unreachable!("informer entries are keyed by their type"),
        }
    }

    /// The cache of every `K`, without its changes.
    pub fn cache<K: ObjectResource>(&mut self) -> Cache<K> {
        self.entry::<K>().cache.clone()
    }

    /// The cache of every `K` and a stream of its changes (the initial list as
    /// `Added`s, then `Synced`, then watch changes).
    pub fn subscribe<K: ObjectResource>(&mut self) -> (Cache<K>, UnboundedReceiver<Change<K>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let entry = self.entry::<K>();
        entry.subscribers.lock().push(tx);
        (entry.cache.clone(), rx)
    }

    /// Lets changes flow to the subscribers (call once every controller subscribed).
    pub fn start(self) {
        self.started.cancel();
    }
}

/// Copies every change of one informer to its subscribers, once started.
async fn forward<K: ObjectResource>(
    mut source: UnboundedReceiver<Change<K>>,
    started: CancellationToken,
    subscribers: Subscribers<K>,
) {
    started.cancelled().await;
    while let Some(change) = source.recv().await {
        // A cache-only informer keeps draining: its cache must stay current.
        subscribers
            .lock()
            .retain(|s| s.send(change.clone()).is_ok());
    }
}
