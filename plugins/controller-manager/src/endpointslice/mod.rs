//! The EndpointSlice controller: keeps the `discovery.k8s.io/v1` EndpointSlices of
//! every Service with a selector equal to the pods it selects, and deletes them
//! when the Service goes away or loses its selector.

mod slices;

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubernel_client::{Api, Cache, Change, Client, ClientError, DeleteParams};

use crate::controller::{on_change, run_workers, split_key, Action};
use crate::endpoints::watch_services;
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::services::{enqueue_for_pod, pods_of, selector_of};

pub use slices::{
    desired_slices, up_to_date, MANAGED_BY, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE,
    SERVICE_NAME_LABEL,
};

/// Why the EndpointSlices of a Service could not be written. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("endpointslice {namespace}/{name} of service {service}: {source}")]
pub struct EndpointSliceError {
    /// The Service's `namespace/name`.
    pub service: String,
    /// The slice's namespace.
    pub namespace: String,
    /// The slice's name.
    pub name: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct EndpointSliceController {
    client: Client,
    services: Cache<Service>,
    pods: Cache<Pod>,
    slices: Cache<EndpointSlice>,
}

/// The `namespace/name` key of the Service a slice this controller manages belongs to.
fn service_key_of(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
    Some(format!("{ns}/{}", labels.get(SERVICE_NAME_LABEL)?))
}

/// Starts the controller: subscribes to Services, Pods and EndpointSlices, then runs its workers.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (services, svc_changes) = informers.subscribe::<Service>();
    let (pods, pod_changes) = informers.subscribe::<Pod>();
    let (slices, slice_changes) = informers.subscribe::<EndpointSlice>();
    let queue = ctx.queue("endpoint_slice");
    watch_services(svc_changes, &queue, ctx);
    let (q, svcs) = (queue.clone(), services.clone());
    on_change(pod_changes, ctx.shutdown.clone(), move |change| {
        enqueue_for_pod(change, &svcs, &q)
    });
    let q = queue.clone();
    on_change(slice_changes, ctx.shutdown.clone(), move |change| {
        // A managed slice deleted by someone else: write it again.
        if let Change::Deleted(slice) = change {
            if let Some(key) = service_key_of(&slice) {
                q.add(key);
            }
        }
    });
    let controller = Arc::new(EndpointSliceController {
        client: ctx.client.clone(),
        services,
        pods,
        slices,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.services.wait_synced().await;
        controller.pods.wait_synced().await;
        controller.slices.wait_synced().await;
        run_workers(
            "endpointslice",
            queue,
            workers,
            shutdown,
            move |key: String| {
                let c = controller.clone();
                async move { c.sync(&key).await }
            },
        );
    });
}

impl EndpointSliceController {
    async fn sync(&self, key: &str) -> Result<Action, EndpointSliceError> {
        let (ns, _) = split_key(key);
        let api = Api::<EndpointSlice>::namespaced(self.client.clone(), ns);
        let err = |name: &str, source| EndpointSliceError {
            service: key.to_string(),
            namespace: ns.to_string(),
            name: name.to_string(),
            source,
        };
        let existing = self
            .slices
            .filter(|s| service_key_of(s).as_deref() == Some(key));
        let desired = match self.services.get(key) {
            Some(svc)
                if selector_of(&svc).is_some() && svc.metadata.deletion_timestamp.is_none() =>
            {
                desired_slices(&svc, &pods_of(&svc, &self.pods))
            }
            _ => Vec::new(),
        };
        let wanted: HashSet<&str> = desired
            .iter()
            .filter_map(|s| s.metadata.name.as_deref())
            .collect();
        for slice in &existing {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            if wanted.contains(name) {
                continue;
            }
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(service = %key, slice = %name, "deleted endpointslice"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(err(name, e)),
            }
        }
        for mut slice in desired {
            let name = slice.metadata.name.clone().unwrap_or_default();
            let current = existing
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            let written = match current {
                Some(cur) if up_to_date(cur, &slice) => continue,
                Some(cur) => {
                    slice.metadata.resource_version = cur.metadata.resource_version.clone();
                    slice.metadata.annotations = cur.metadata.annotations.clone();
                    api.replace(&name, &slice).await
                }
                None => match api.create(&slice).await {
                    Err(e) if e.is_already_exists() => {
                        // The cache has not seen it yet: update what the apiserver has.
                        let live = api.get(&name).await.map_err(|e| err(&name, e))?;
                        slice.metadata.resource_version = live.metadata.resource_version;
                        api.replace(&name, &slice).await
                    }
                    other => other,
                },
            };
            match written {
                Ok(_) => tracing::debug!(service = %key, slice = %name, "endpointslice written"),
                // The Service's namespace is going away.
                Err(e) if e.is_not_found() || e.code() == Some(403) => {}
                Err(e) => return Err(err(&name, e)),
            }
        }
        Ok(Action::AwaitChange)
    }
}
