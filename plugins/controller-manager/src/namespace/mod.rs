//! The Namespace controller: a namespace being deleted is marked Terminating,
//! emptied of every namespaced resource the API serves, then finalized (the
//! `kubernetes` finalizer leaves `spec.finalizers` and the apiserver removes it).

mod discovery;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kubernel_client::{Api, Cache, Change, Client, ClientError};

use crate::controller::{on_change, run_workers, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;

/// The finalizer the Namespace controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

/// How soon a namespace whose content is still going away is checked again.
const RECHECK: Duration = Duration::from_secs(1);

/// Why emptying a namespace failed. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("namespace {namespace}: {source}")]
pub struct NamespaceError {
    /// The namespace.
    pub namespace: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct NamespaceController {
    client: Client,
    namespaces: Cache<Namespace>,
}

/// Whether namespace `name` exists in `namespaces` and is not being deleted:
/// controllers that fill namespaces (ServiceAccounts, the root CA ConfigMap) leave
/// the others alone.
pub fn is_active(namespaces: &Cache<Namespace>, name: &str) -> bool {
    namespaces.get(name).is_some_and(|n| {
        n.metadata.deletion_timestamp.is_none()
            && n.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
    })
}

/// Starts the controller.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (namespaces, changes) = informers.subscribe::<Namespace>();
    let queue = ctx.queue("namespace");
    let q = queue.clone();
    on_change(changes, ctx.shutdown.clone(), move |change| match change {
        Change::Added(ns) | Change::Updated { new: ns, .. }
            if ns.metadata.deletion_timestamp.is_some() =>
        {
            q.add(ns.metadata.name.clone().unwrap_or_default())
        }
        _ => {}
    });
    let controller = Arc::new(NamespaceController {
        client: ctx.client.clone(),
        namespaces,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.namespaces.wait_synced().await;
        run_workers(
            "namespace",
            queue,
            workers,
            shutdown,
            move |name: String| {
                let c = controller.clone();
                async move { c.sync(&name).await }
            },
        );
    });
}

impl NamespaceController {
    async fn sync(&self, name: &str) -> Result<Action, NamespaceError> {
        let err = |source| NamespaceError {
            namespace: name.to_string(),
            source,
        };
        let Some(ns) = self.namespaces.get(name) else {
            return Ok(Action::AwaitChange);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Action::AwaitChange);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Terminating") {
            let mut updated = (*ns).clone();
            updated.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
            api.replace_status(name, &updated).await.map_err(err)?;
        }
        let finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(Action::AwaitChange);
        }
        let resources = discovery::namespaced_resources(&self.client)
            .await
            .map_err(err)?;
        let mut remaining = 0;
        for path in &resources {
            remaining += discovery::delete_all(&self.client, path, name)
                .await
                .map_err(err)?;
        }
        if remaining > 0 {
            tracing::debug!(namespace = %name, remaining, "namespace content still being deleted");
            return Ok(Action::Requeue(RECHECK));
        }
        let mut finalized = (*ns).clone();
        if let Some(spec) = finalized.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        let body = serde_json::to_vec(&finalized).map_err(|source| {
            err(ClientError::Decode {
                what: format!("Namespace {name}"),
                source,
            })
        })?;
        match self
            .client
            .send(
                "PUT",
                &format!("/api/v1/namespaces/{name}/finalize"),
                Some(("application/json", body)),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
        tracing::info!(namespace = %name, "namespace emptied and finalized");
        Ok(Action::AwaitChange)
    }
}
