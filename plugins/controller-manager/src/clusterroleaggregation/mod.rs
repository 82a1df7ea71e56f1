//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule`
//! gets the rules of every ClusterRole its `clusterRoleSelectors` match (in name
//! order, each rule once), and keeps them as those roles come, change and go.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kubernel_client::{Api, Cache, Change, Client, ClientError};

use crate::controller::{on_change, run_workers, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::selector;

/// Why an aggregated ClusterRole could not be written. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("clusterrole {name}: {source}")]
pub struct AggregationError {
    /// The aggregated role.
    pub name: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct Aggregator {
    client: Client,
    roles: Cache<ClusterRole>,
}

/// Starts the controller.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (roles, changes) = informers.subscribe::<ClusterRole>();
    let queue = ctx.queue("clusterrole_aggregation");
    let q = queue.clone();
    let cache = roles.clone();
    // Any change may touch any aggregated role: queue every one of them.
    on_change(changes, ctx.shutdown.clone(), move |change| {
        if matches!(change, Change::Synced) {
            return;
        }
        for role in cache.list() {
            if role.aggregation_rule.is_some() {
                q.add(role.metadata.name.clone().unwrap_or_default());
            }
        }
    });
    let controller = Arc::new(Aggregator {
        client: ctx.client.clone(),
        roles,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.roles.wait_synced().await;
        run_workers(
            "clusterrole_aggregation",
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

impl Aggregator {
    async fn sync(&self, name: &str) -> Result<Action, AggregationError> {
        let Some(role) = self.roles.get(name) else {
            return Ok(Action::AwaitChange);
        };
        let Some(rule) = &role.aggregation_rule else {
            return Ok(Action::AwaitChange);
        };
        let selectors = rule.cluster_role_selectors.as_deref().unwrap_or_default();
        let mut sources: Vec<Arc<ClusterRole>> = self.roles.filter(|r| {
            r.metadata.name.as_deref() != Some(name)
                && selectors.iter().any(|s| {
                    !selector::is_empty(s) && selector::matches(s, r.metadata.labels.as_ref())
                })
        });
        sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut rules: Vec<PolicyRule> = Vec::new();
        for source in &sources {
            for r in source.rules.as_deref().unwrap_or_default() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
            return Ok(Action::AwaitChange);
        }
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        match Api::<ClusterRole>::all(self.client.clone())
            .replace(name, &updated)
            .await
        {
            Ok(_) => {
                tracing::info!(clusterrole = %name, sources = sources.len(), "aggregated rules");
                Ok(Action::AwaitChange)
            }
            Err(e) if e.is_conflict() || e.is_not_found() => {
                Ok(Action::Requeue(std::time::Duration::from_millis(100)))
            }
            Err(source) => Err(AggregationError {
                name: name.to_string(),
                source,
            }),
        }
    }
}
