//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubernel_client::{Api, Cache, Change, Client, ClientError};

use crate::controller::{on_change, run_workers, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Why a ServiceAccount could not be created. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("serviceaccount {namespace}/default: {source}")]
pub struct ServiceAccountError {
    /// The namespace.
    pub namespace: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct ServiceAccountController {
    client: Client,
    namespaces: Cache<Namespace>,
    accounts: Cache<ServiceAccount>,
}

/// Starts the controller.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (namespaces, ns_changes) = informers.subscribe::<Namespace>();
    let (accounts, sa_changes) = informers.subscribe::<ServiceAccount>();
    let queue = ctx.queue("serviceaccount");
    let q = queue.clone();
    on_change(ns_changes, ctx.shutdown.clone(), move |change| {
        if let Change::Added(ns) | Change::Updated { new: ns, .. } = change {
            q.add(ns.metadata.name.clone().unwrap_or_default());
        }
    });
    let q = queue.clone();
    on_change(sa_changes, ctx.shutdown.clone(), move |change| {
        if let Change::Deleted(sa) = change {
            if sa.metadata.name.as_deref() == Some(DEFAULT) {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        }
    });
    let controller = Arc::new(ServiceAccountController {
        client: ctx.client.clone(),
        namespaces,
        accounts,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.namespaces.wait_synced().await;
        controller.accounts.wait_synced().await;
        run_workers(
            "serviceaccount",
            queue,
            workers,
            shutdown,
            move |ns: String| {
                let c = controller.clone();
                async move { c.sync(&ns).await }
            },
        );
    });
}

impl ServiceAccountController {
    async fn sync(&self, ns: &str) -> Result<Action, ServiceAccountError> {
        let active = crate::namespace::is_active(&self.namespaces, ns);
        if !active || self.accounts.get(&format!("{ns}/{DEFAULT}")).is_some() {
            return Ok(Action::AwaitChange);
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create(&sa)
            .await
        {
            Ok(_) => tracing::info!(namespace = %ns, "created the default ServiceAccount"),
            Err(e) if e.is_already_exists() || e.code() == Some(403) || e.is_not_found() => {}
            Err(source) => {
                return Err(ServiceAccountError {
                    namespace: ns.to_string(),
                    source,
                })
            }
        }
        Ok(Action::AwaitChange)
    }
}
