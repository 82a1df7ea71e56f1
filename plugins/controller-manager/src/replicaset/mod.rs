//! The ReplicaSet controller: keeps `spec.replicas` pods of each ReplicaSet,
//! adopting and releasing pods by selector, and reports their status.

mod rank;
mod status;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kubernel_client::{Cache, Change, Client, EventRecorder, WorkQueue};

use crate::controller::{key_of, on_change, run_workers};
use crate::expectations::Expectations;
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::pods::{controller_of, is_ready};
use crate::selector;

pub use rank::deletion_order;
pub use status::compute_status;

/// Most pods created or deleted in one sync (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The ReplicaSet controller's state.
pub struct ReplicaSetController {
    client: Client,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    expectations: Expectations,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
}

/// Starts the controller: subscribes to ReplicaSets and Pods, then runs its workers.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (replica_sets, rs_changes) = informers.subscribe::<ReplicaSet>();
    let (pods, pod_changes) = informers.subscribe::<Pod>();
    let queue = ctx.queue("replicaset");
    let controller = Arc::new(ReplicaSetController {
        client: ctx.client.clone(),
        replica_sets,
        pods,
        expectations: Expectations::default(),
        recorder: ctx.recorder.clone(),
        queue: queue.clone(),
    });
    let c = controller.clone();
    on_change(rs_changes, ctx.shutdown.clone(), move |change| {
        c.replica_set_changed(change)
    });
    let c = controller.clone();
    on_change(pod_changes, ctx.shutdown.clone(), move |change| {
        c.pod_changed(change)
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.replica_sets.wait_synced().await;
        controller.pods.wait_synced().await;
        let c = controller.clone();
        run_workers(
            "replicaset",
            queue,
            workers,
            shutdown,
            move |key: String| {
                let c = c.clone();
                async move { c.sync(&key).await }
            },
        );
    });
}

impl ReplicaSetController {
    fn replica_set_changed(&self, change: Change<ReplicaSet>) {
        match change {
            Change::Added(rs) => self.queue.add(key_of(&*rs)),
            Change::Updated { new, .. } => self.queue.add(key_of(&*new)),
            Change::Deleted(rs) => {
                let key = key_of(&*rs);
                self.expectations.forget(&key);
                self.queue.add(key);
            }
            Change::Synced => {}
        }
    }

    /// The ReplicaSet that controls `pod`, if it exists with the referenced uid.
    fn owner_of(&self, pod: &Pod) -> Option<Arc<ReplicaSet>> {
        let r = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.replica_sets
            .get(&format!("{ns}/{}", r.name))
            .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    /// Queues every ReplicaSet of the pod's namespace whose selector matches it (orphans).
    fn enqueue_selecting(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        for rs in self.replica_sets.filter(|rs| {
            rs.metadata.namespace.as_deref() == Some(ns)
                && selector::matches(
                    &rs.spec
                        .as_ref()
                        .map(|s| s.selector.clone())
                        .unwrap_or_default(),
                    pod.metadata.labels.as_ref(),
                )
        }) {
            self.queue.add(key_of(&*rs));
        }
    }

    fn pod_changed(&self, change: Change<Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    return self.pod_deleted(&pod);
                }
                match self.owner_of(&pod) {
                    Some(rs) => {
                        let key = key_of(&*rs);
                        self.expectations.creation_observed(&key);
                        self.queue.add(key);
                    }
                    None if controller_of(&pod.metadata).is_none() => self.enqueue_selecting(&pod),
                    None => {}
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if new.metadata.deletion_timestamp.is_some() {
                    // Deleted gracefully: the controller may replace it at once.
                    self.pod_deleted(&new);
                    if controller_of(&old.metadata) != controller_of(&new.metadata) {
                        if let Some(rs) = self.owner_of(&old) {
                            self.queue.add(key_of(&*rs));
                        }
                    }
                    return;
                }
                if controller_of(&old.metadata) != controller_of(&new.metadata) {
                    if let Some(rs) = self.owner_of(&old) {
                        self.queue.add(key_of(&*rs));
                    }
                }
                match self.owner_of(&new) {
                    Some(rs) => {
                        let key = key_of(&*rs);
                        let min_ready = rs
                            .spec
                            .as_ref()
                            .and_then(|s| s.min_ready_seconds)
                            .unwrap_or(0);
                        if min_ready > 0 && !is_ready(&old) && is_ready(&new) {
                            // Check availability once minReadySeconds have passed.
                            let after =
                                Duration::from_secs(min_ready as u64) + Duration::from_millis(100);
                            self.queue.add_after(key.clone(), after);
                        }
                        self.queue.add(key);
                    }
                    None if controller_of(&new.metadata).is_none()
                        && (old.metadata.labels != new.metadata.labels
                            || controller_of(&old.metadata).is_some()) =>
                    {
                        self.enqueue_selecting(&new)
                    }
                    None => {}
                }
            }
            Change::Deleted(pod) => self.pod_deleted(&pod),
            Change::Synced => {}
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        if let Some(rs) = self.owner_of(pod) {
            let key = key_of(&*rs);
            self.expectations.deletion_observed(&key, &key_of(pod));
            self.queue.add(key);
        }
    }
}
