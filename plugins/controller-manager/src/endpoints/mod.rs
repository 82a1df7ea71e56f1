//! The Endpoints controller: keeps the Endpoints of every Service with a selector
//! equal to the addresses of the pods it selects, within one reconcile of a pod change.

mod subsets;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubernel_client::{Api, Cache, Change, Client, ClientError, DeleteParams, WorkQueue};

use crate::controller::{key_of, on_change, run_workers, split_key, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::services::{enqueue_for_pod, pods_of, selector_of};

pub use subsets::desired_subsets;

/// The label marking Endpoints this controller manages (upstream sets it so the
/// EndpointSlice mirroring controller skips them).
pub const MANAGED_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// The Endpoints of the `kubernetes` Service, which the apiserver writes itself.
const APISERVER_ENDPOINTS: &str = "default/kubernetes";

/// The label on the endpoints of a headless Service (`clusterIP: None`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Why the Endpoints of a Service could not be written. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("endpoints {key}: {source}")]
pub struct EndpointsError {
    /// The Service's `namespace/name`.
    pub key: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct EndpointsController {
    client: Client,
    services: Cache<Service>,
    pods: Cache<Pod>,
    endpoints: Cache<Endpoints>,
}

/// Starts the controller: subscribes to Services, Pods and Endpoints, then runs its workers.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (services, svc_changes) = informers.subscribe::<Service>();
    let (pods, pod_changes) = informers.subscribe::<Pod>();
    let (endpoints, ep_changes) = informers.subscribe::<Endpoints>();
    let queue = ctx.queue("endpoint");
    watch_services(svc_changes, &queue, ctx);
    let (q, svcs) = (queue.clone(), services.clone());
    on_change(pod_changes, ctx.shutdown.clone(), move |change| {
        enqueue_for_pod(change, &svcs, &q)
    });
    let q = queue.clone();
    on_change(ep_changes, ctx.shutdown.clone(), move |change| {
        // Someone deleted Endpoints the controller maintains: write them again.
        if let Change::Deleted(ep) = change {
            q.add(key_of(&*ep));
        }
    });
    let controller = Arc::new(EndpointsController {
        client: ctx.client.clone(),
        services,
        pods,
        endpoints,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.services.wait_synced().await;
        controller.pods.wait_synced().await;
        controller.endpoints.wait_synced().await;
        run_workers("endpoint", queue, workers, shutdown, move |key: String| {
            let c = controller.clone();
            async move { c.sync(&key).await }
        });
    });
}

/// Queues a Service on every change of it (the Endpoints and EndpointSlice controllers share this).
pub(crate) fn watch_services(
    changes: tokio::sync::mpsc::UnboundedReceiver<Change<Service>>,
    queue: &WorkQueue<String>,
    ctx: &ControllerContext,
) {
    let q = queue.clone();
    on_change(changes, ctx.shutdown.clone(), move |change| match change {
        Change::Added(s) | Change::Deleted(s) => q.add(key_of(&*s)),
        Change::Updated { old, new } => {
            if old.metadata.resource_version != new.metadata.resource_version {
                q.add(key_of(&*new));
            }
        }
        Change::Synced => {}
    });
}

/// The labels of the endpoints of `service`: its own labels, the headless label
/// when it has no cluster IP, and `extra`.
pub(crate) fn endpoint_labels(
    service: &Service,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    let headless = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

impl EndpointsController {
    async fn sync(&self, key: &str) -> Result<Action, EndpointsError> {
        let (ns, name) = split_key(key);
        let api = Api::<Endpoints>::namespaced(self.client.clone(), ns);
        let err = |source| EndpointsError {
            key: key.to_string(),
            source,
        };
        let current = self.endpoints.get(key);
        let service = match self.services.get(key) {
            None => {
                if current.is_some() {
                    self.delete(&api, ns, name).await.map_err(err)?;
                }
                return Ok(Action::AwaitChange);
            }
            Some(s) => s,
        };
        if selector_of(&service).is_none() {
            // Without a selector the Endpoints are the user's, unless this controller wrote
            // them. `default/kubernetes` is the apiserver's (its endpoint reconciler writes
            // it with the same skip-mirror label as ours): never ours.
            let ours = key != APISERVER_ENDPOINTS
                && current.as_ref().is_some_and(|ep| {
                    ep.metadata
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key(MANAGED_LABEL))
                });
            if ours {
                self.delete(&api, ns, name).await.map_err(err)?;
            }
            return Ok(Action::AwaitChange);
        }
        let subsets = desired_subsets(&service, &pods_of(&service, &self.pods));
        let labels = endpoint_labels(&service, &[(MANAGED_LABEL, "true")]);
        if let Some(cur) = &current {
            if cur.subsets.clone().unwrap_or_default() == subsets
                && cur.metadata.labels.as_ref() == Some(&labels)
            {
                return Ok(Action::AwaitChange);
            }
        }
        let mut desired = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: current
                    .as_ref()
                    .and_then(|c| c.metadata.annotations.clone()),
                resource_version: current
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            subsets: (!subsets.is_empty()).then_some(subsets),
        };
        let written = if current.is_some() {
            api.replace(name, &desired).await
        } else {
            match api.create(&desired).await {
                Err(e) if e.is_already_exists() => {
                    // The cache has not seen them yet: update what the apiserver has.
                    let live = api.get(name).await.map_err(err)?;
                    desired.metadata.resource_version = live.metadata.resource_version;
                    api.replace(name, &desired).await
                }
                other => other,
            }
        };
        match written {
            Ok(_) => {
                tracing::debug!(service = %key, "endpoints updated");
                Ok(Action::AwaitChange)
            }
            // The namespace is going away (404 or 403 on create).
            Err(e) if current.is_none() && (e.is_not_found() || e.code() == Some(403)) => {
                Ok(Action::AwaitChange)
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn delete(&self, api: &Api<Endpoints>, ns: &str, name: &str) -> Result<(), ClientError> {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(namespace = %ns, endpoints = %name, "deleted endpoints");
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
