//! The garbage collector: an ownerReferences graph over the watched types that
//! deletes dependents whose owners are gone (Background), lets owners wait for
//! their dependents (Foreground, `foregroundDeletion`) and orphans dependents
//! (Orphan, `orphan`).

mod graph;
mod kinds;
mod process;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Node, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kubernel_client::{Change, ObjectResource, WorkQueue};
use parking_lot::Mutex;

use crate::controller::{on_change, run_workers};
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::metrics::Metrics;

pub use graph::{Graph, FOREGROUND, ORPHAN};
pub use kinds::{GcKind, Typed};

/// How long the collector waits for a type's first list before counting a sync error.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The collector's state.
pub struct GarbageCollector {
    kinds: Vec<Arc<dyn GcKind>>,
    graph: Mutex<Graph>,
    attempt_to_delete: WorkQueue<String>,
    attempt_to_orphan: WorkQueue<String>,
}

impl GarbageCollector {
    /// The kind index of an owner reference (`None`: a type the collector does not know).
    pub fn kind_of(&self, r: &OwnerReference) -> Option<usize> {
        self.kinds
            .iter()
            .position(|k| k.kind() == r.kind && k.api_version() == r.api_version)
    }

    fn apply(&self, work: graph::Work) {
        for uid in work.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in work.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
    }
}

/// Starts the collector over every watched type.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let client = &ctx.client;
    let kinds: Vec<Arc<dyn GcKind>> = vec![
        Arc::new(Typed::<Pod>::new(client.clone())),
        Arc::new(Typed::<ReplicaSet>::new(client.clone())),
        Arc::new(Typed::<Deployment>::new(client.clone())),
        Arc::new(Typed::<StatefulSet>::new(client.clone())),
        Arc::new(Typed::<DaemonSet>::new(client.clone())),
        Arc::new(Typed::<Job>::new(client.clone())),
        Arc::new(Typed::<Service>::new(client.clone())),
        Arc::new(Typed::<Endpoints>::new(client.clone())),
        Arc::new(Typed::<EndpointSlice>::new(client.clone())),
        Arc::new(Typed::<ConfigMap>::new(client.clone())),
        Arc::new(Typed::<Secret>::new(client.clone())),
        Arc::new(Typed::<ServiceAccount>::new(client.clone())),
        Arc::new(Typed::<Lease>::new(client.clone())),
        Arc::new(Typed::<Node>::new(client.clone())),
    ];
    let gc = Arc::new(GarbageCollector {
        kinds,
        graph: Mutex::default(),
        attempt_to_delete: ctx.queue("garbage_collector_attempt_to_delete"),
        attempt_to_orphan: ctx.queue("garbage_collector_attempt_to_orphan"),
    });
    let synced = vec![
        watch::<Pod>(ctx, informers, &gc),
        watch::<ReplicaSet>(ctx, informers, &gc),
        watch::<Deployment>(ctx, informers, &gc),
        watch::<StatefulSet>(ctx, informers, &gc),
        watch::<DaemonSet>(ctx, informers, &gc),
        watch::<Job>(ctx, informers, &gc),
        watch::<Service>(ctx, informers, &gc),
        watch::<Endpoints>(ctx, informers, &gc),
        watch::<EndpointSlice>(ctx, informers, &gc),
        watch::<ConfigMap>(ctx, informers, &gc),
        watch::<Secret>(ctx, informers, &gc),
        watch::<ServiceAccount>(ctx, informers, &gc),
        watch::<Lease>(ctx, informers, &gc),
        watch::<Node>(ctx, informers, &gc),
    ];
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    let metrics = ctx.metrics.clone();
    tokio::spawn(async move {
        for wait in synced {
            wait_counting_errors(wait, &metrics).await;
        }
        let g = gc.clone();
        run_workers(
            "garbage-collector",
            gc.attempt_to_delete.clone(),
            workers,
            shutdown.clone(),
            move |uid: String| {
                let g = g.clone();
                async move { g.attempt_to_delete(&uid).await }
            },
        );
        let g = gc.clone();
        run_workers(
            "garbage-collector",
            gc.attempt_to_orphan.clone(),
            workers,
            shutdown,
            move |uid: String| {
                let g = g.clone();
                async move { g.attempt_to_orphan(&uid).await }
            },
        );
    });
}

/// A type's first list, named for the log.
type SyncWait = (&'static str, futures::future::BoxFuture<'static, ()>);

/// Waits for a type's first list, counting a sync error each time it takes longer than [`SYNC_TIMEOUT`].
async fn wait_counting_errors((kind, mut wait): SyncWait, metrics: &Metrics) {
    loop {
        match tokio::time::timeout(SYNC_TIMEOUT, &mut wait).await {
            Ok(()) => return,
            Err(_) => {
                metrics.gc_sync_errors.inc();
                tracing::warn!(kind, timeout = ?SYNC_TIMEOUT, "garbage collector: type not synced yet");
            }
        }
    }
}

/// Feeds the changes of type `K` (one of the collector's kinds) into the graph.
fn watch<K: ObjectResource>(
    ctx: &ControllerContext,
    informers: &mut Informers,
    gc: &Arc<GarbageCollector>,
) -> SyncWait {
    let index = gc
        .kinds
        .iter()
        .position(|k| k.kind() == K::KIND && k.api_version() == K::API_VERSION)
        .unwrap_or_default();
    let (cache, changes) = informers.subscribe::<K>();
    let gc = gc.clone();
    on_change(changes, ctx.shutdown.clone(), move |change| {
        let work = match change {
            Change::Added(o) | Change::Updated { new: o, .. } => {
                gc.graph
                    .lock()
                    .upsert(index, o.metadata(), |r| gc.kind_of(r))
            }
            Change::Deleted(o) => gc.graph.lock().remove(o.metadata()),
            Change::Synced => return,
        };
        gc.apply(work);
    });
    (K::KIND, Box::pin(async move { cache.wait_synced().await }))
}
