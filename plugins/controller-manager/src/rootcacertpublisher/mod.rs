//! The root CA publisher: every active namespace has a `kube-root-ca.crt` ConfigMap
//! holding the CA bundle that verifies the apiserver (`ca.crt`), which the
//! ServiceAccount volume of every pod projects. The bundle is the one the
//! controller-manager's own client trusts (its kubeconfig's certificate authority),
//! as upstream's `--root-ca-file` defaults to the cluster CA.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubernel_client::{Api, Cache, Change, Client, ClientError};

use crate::controller::{on_change, run_workers, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;

/// The ConfigMap's name.
pub const NAME: &str = "kube-root-ca.crt";

/// Its key.
const KEY: &str = "ca.crt";

/// Upstream's description annotation.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Why a namespace's ConfigMap could not be written. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("configmap {namespace}/kube-root-ca.crt: {source}")]
pub struct PublishError {
    /// The namespace.
    pub namespace: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct Publisher {
    client: Client,
    ca: String,
    namespaces: Cache<Namespace>,
    configmaps: Cache<ConfigMap>,
}

/// Starts the controller (when the client trusts a CA: over plain HTTP there is none
/// to publish).
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let Some(ca) = ctx
        .client
        .ca_pem()
        .map(|pem| String::from_utf8_lossy(pem).into_owned())
    else {
        tracing::warn!("root-ca-cert-publisher: the client trusts no CA (plain HTTP); kube-root-ca.crt is not published");
        return;
    };
    let (namespaces, ns_changes) = informers.subscribe::<Namespace>();
    let (configmaps, cm_changes) = informers.subscribe::<ConfigMap>();
    let queue = ctx.queue("root_ca_cert_publisher");
    let q = queue.clone();
    on_change(ns_changes, ctx.shutdown.clone(), move |change| {
        if let Change::Added(ns) | Change::Updated { new: ns, .. } = change {
            q.add(ns.metadata.name.clone().unwrap_or_default());
        }
    });
    let q = queue.clone();
    on_change(cm_changes, ctx.shutdown.clone(), move |change| {
        let cm = match change {
            Change::Updated { new, .. } => new,
            Change::Deleted(cm) => cm,
            _ => return,
        };
        if cm.metadata.name.as_deref() == Some(NAME) {
            q.add(cm.metadata.namespace.clone().unwrap_or_default());
        }
    });
    let controller = Arc::new(Publisher {
        client: ctx.client.clone(),
        ca,
        namespaces,
        configmaps,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.namespaces.wait_synced().await;
        controller.configmaps.wait_synced().await;
        run_workers(
            "root_ca_cert_publisher",
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

impl Publisher {
    async fn sync(&self, ns: &str) -> Result<Action, PublishError> {
        let active = crate::namespace::is_active(&self.namespaces, ns);
        if !active {
            return Ok(Action::AwaitChange);
        }
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), ns);
        let fail = |source| PublishError {
            namespace: ns.to_string(),
            source,
        };
        let data = BTreeMap::from([(KEY.to_string(), self.ca.clone())]);
        match self.configmaps.get(&format!("{ns}/{NAME}")) {
            Some(cm) if cm.data.as_ref() == Some(&data) => {}
            Some(cm) => {
                let mut fixed = (*cm).clone();
                fixed.data = Some(data);
                match api.replace(NAME, &fixed).await {
                    Ok(_) => tracing::info!(namespace = %ns, "updated kube-root-ca.crt"),
                    Err(e) if e.is_not_found() || e.is_conflict() => {
                        return Ok(Action::Requeue(std::time::Duration::from_millis(100)))
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        namespace: Some(ns.into()),
                        annotations: Some(BTreeMap::from([(
                            "kubernetes.io/description".to_string(),
                            DESCRIPTION.to_string(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                match api.create(&cm).await {
                    Ok(_) => tracing::debug!(namespace = %ns, "published kube-root-ca.crt"),
                    Err(e)
                        if e.is_already_exists() || e.code() == Some(403) || e.is_not_found() => {}
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        Ok(Action::AwaitChange)
    }
}
