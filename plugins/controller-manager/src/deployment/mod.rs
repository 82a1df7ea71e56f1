//! The Deployment controller: rolls pod templates out through ReplicaSets
//! (RollingUpdate or Recreate), keeps revisions and history, and maintains the
//! status and conditions `kubectl rollout status` reads.

mod conditions;
mod replicas;
mod revisions;
mod rollout;
mod sync;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kubernel_client::{Cache, Change, Client, EventRecorder, WorkQueue};

use crate::controller::{key_of, on_change, run_workers};
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::pods::controller_of;
use crate::selector;

pub use revisions::template_hash;

/// The Deployment controller's state.
pub struct DeploymentController {
    client: Client,
    deployments: Cache<Deployment>,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    recorder: EventRecorder,
    queue: WorkQueue<String>,
}

/// Starts the controller: subscribes to Deployments, ReplicaSets and Pods, then runs its workers.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (deployments, d_changes) = informers.subscribe::<Deployment>();
    let (replica_sets, rs_changes) = informers.subscribe::<ReplicaSet>();
    let (pods, pod_changes) = informers.subscribe::<Pod>();
    let queue = ctx.queue("deployment");
    let controller = Arc::new(DeploymentController {
        client: ctx.client.clone(),
        deployments,
        replica_sets,
        pods,
        recorder: ctx.recorder.clone(),
        queue: queue.clone(),
    });
    let c = controller.clone();
    on_change(
        d_changes,
        ctx.shutdown.clone(),
        move |change| match change {
            Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d) => {
                c.queue.add(key_of(&*d))
            }
            Change::Synced => {}
        },
    );
    let c = controller.clone();
    on_change(
        rs_changes,
        ctx.shutdown.clone(),
        move |change| match change {
            Change::Added(rs) | Change::Deleted(rs) => c.replica_set_changed(&rs, None),
            Change::Updated { old, new } => c.replica_set_changed(&new, Some(&old)),
            Change::Synced => {}
        },
    );
    let c = controller.clone();
    on_change(pod_changes, ctx.shutdown.clone(), move |change| {
        // Recreate waits for the old pods to be gone.
        if let Change::Deleted(pod) = change {
            c.pod_deleted(&pod);
        }
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.deployments.wait_synced().await;
        controller.replica_sets.wait_synced().await;
        controller.pods.wait_synced().await;
        let c = controller.clone();
        run_workers(
            "deployment",
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

impl DeploymentController {
    /// The Deployment controlling `meta`'s object in namespace `ns`, if cached with that uid.
    fn owner_of(
        &self,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Option<Arc<Deployment>> {
        let r = controller_of(meta).filter(|r| r.kind == "Deployment")?;
        let ns = meta.namespace.as_deref().unwrap_or_default();
        self.deployments
            .get(&format!("{ns}/{}", r.name))
            .filter(|d| d.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    fn replica_set_changed(&self, rs: &ReplicaSet, old: Option<&ReplicaSet>) {
        if let Some(old) = old {
            if controller_of(&old.metadata) != controller_of(&rs.metadata) {
                if let Some(d) = self.owner_of(&old.metadata) {
                    self.queue.add(key_of(&*d));
                }
            }
        }
        match self.owner_of(&rs.metadata) {
            Some(d) => self.queue.add(key_of(&*d)),
            None if controller_of(&rs.metadata).is_none() => {
                let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
                for d in self.deployments.filter(|d| {
                    d.metadata.namespace.as_deref() == Some(ns)
                        && d.spec.as_ref().is_some_and(|s| {
                            !selector::is_empty(&s.selector)
                                && selector::matches(&s.selector, rs.metadata.labels.as_ref())
                        })
                }) {
                    self.queue.add(key_of(&*d));
                }
            }
            None => {}
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(rs) = self.replica_sets.get(&format!("{ns}/{}", r.name)) {
            if let Some(d) = self.owner_of(&rs.metadata) {
                let recreate = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.strategy.as_ref())
                    .and_then(|s| s.type_.as_deref())
                    == Some("Recreate");
                if recreate {
                    self.queue.add(key_of(&*d));
                }
            }
        }
    }
}
