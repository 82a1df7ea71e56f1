//! The ResourceQuota controller: keeps every quota's `status.hard` equal to `spec.hard` and
//! `status.used` equal to what the objects in its namespace use, so the apiserver's
//! ResourceQuota admission charges new objects against the truth.
//!
//! The apiserver charges a create to `status.used` itself; this controller recomputes
//! usage when a quota changes, when an object it counts changes its usage or goes away
//! (upstream's replenishment), and every `resource_quota_sync_period`. Usage is
//! counted with the same evaluators as admission (`kubernel_api::quota`). Counts of the
//! kinds it does not watch (`count/jobs.batch`, ...) are read with one list request.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubernel_api::quota::{self, Usage};
use kubernel_client::{Api, Cache, Change, Client, ClientError, ObjectResource, WorkQueue};
use serde::Serialize;
use serde_json::Value;

use crate::controller::{key_of, on_change, run_workers, split_key, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;

/// Why a quota's status could not be written. Retrying helps.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The status write or a count request failed.
    #[error("resourcequota {key}: {source}")]
    Api {
        /// The quota's `namespace/name`.
        key: String,
        /// The failed request.
        #[source]
        source: ClientError,
    },
}

/// The caches usage is counted from.
struct Counted {
    pods: Cache<Pod>,
    services: Cache<Service>,
    configmaps: Cache<ConfigMap>,
    secrets: Cache<Secret>,
    deployments: Cache<Deployment>,
    replicasets: Cache<ReplicaSet>,
}

struct QuotaController {
    client: Client,
    quotas: Cache<ResourceQuota>,
    counted: Counted,
}

/// Starts the controller.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (quotas, quota_changes) = informers.subscribe::<ResourceQuota>();
    let queue = ctx.queue("resourcequota_primary");
    let q = queue.clone();
    on_change(
        quota_changes,
        ctx.shutdown.clone(),
        move |change| match change {
            Change::Added(rq) => q.add(key_of(&*rq)),
            Change::Updated { old, new } => {
                let status_hard = new.status.as_ref().and_then(|s| s.hard.as_ref());
                if old.spec != new.spec
                    || status_hard != new.spec.as_ref().and_then(|s| s.hard.as_ref())
                {
                    q.add(key_of(&*new));
                }
            }
            _ => {}
        },
    );
    let counted = Counted {
        pods: replenish::<Pod>(ctx, informers, &queue, &quotas, ("", "pods")),
        services: replenish::<Service>(ctx, informers, &queue, &quotas, ("", "services")),
        configmaps: replenish::<ConfigMap>(ctx, informers, &queue, &quotas, ("", "configmaps")),
        secrets: replenish::<Secret>(ctx, informers, &queue, &quotas, ("", "secrets")),
        deployments: replenish::<Deployment>(
            ctx,
            informers,
            &queue,
            &quotas,
            ("apps", "deployments"),
        ),
        replicasets: replenish::<ReplicaSet>(
            ctx,
            informers,
            &queue,
            &quotas,
            ("apps", "replicasets"),
        ),
    };
    let controller = Arc::new(QuotaController {
        client: ctx.client.clone(),
        quotas,
        counted,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    let period = ctx.config.resource_quota_sync_period;
    tokio::spawn(async move {
        let c = &controller.counted;
        controller.quotas.wait_synced().await;
        c.pods.wait_synced().await;
        c.services.wait_synced().await;
        c.configmaps.wait_synced().await;
        c.secrets.wait_synced().await;
        c.deployments.wait_synced().await;
        c.replicasets.wait_synced().await;
        let resync = (queue.clone(), controller.quotas.clone(), shutdown.clone());
        tokio::spawn(async move {
            let (queue, quotas, shutdown) = resync;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                for rq in quotas.list() {
                    queue.add(key_of(&*rq));
                }
            }
        });
        run_workers(
            "resourcequota_primary",
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

/// Subscribes to `K` and queues the quotas of an object's namespace whenever what it
/// uses goes down or changes: deleted, or updated with a different usage (a pod
/// finishing), as upstream's replenishment does.
fn replenish<K: ObjectResource + Serialize>(
    ctx: &ControllerContext,
    informers: &mut Informers,
    queue: &WorkQueue<String>,
    quotas: &Cache<ResourceQuota>,
    (group, plural): (&'static str, &'static str),
) -> Cache<K> {
    let (cache, changes) = informers.subscribe::<K>();
    let (q, quotas) = (queue.clone(), quotas.clone());
    on_change(changes, ctx.shutdown.clone(), move |change| {
        let object = match &change {
            // Adds are charged by the apiserver's admission; recounting on them could
            // write back a count from a cache that has not seen the newest objects yet.
            Change::Added(_) | Change::Synced => return,
            Change::Deleted(o) => o.clone(),
            Change::Updated { old, new } => {
                let now = jiff::Timestamp::now().as_second();
                let before = quota::usage(group, plural, &to_value(&**old), now);
                let after = quota::usage(group, plural, &to_value(&**new), now);
                if before == after {
                    return;
                }
                new.clone()
            }
        };
        let ns = object.metadata().namespace.clone().unwrap_or_default();
        for rq in quotas.filter(|rq| rq.metadata.namespace.as_deref() == Some(ns.as_str())) {
            q.add(key_of(&*rq));
        }
    });
    cache
}

fn to_value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Adds what every object of `cache` in `ns` (selected by the quota's scopes) uses.
fn add_usage<K: ObjectResource + Serialize>(
    total: &mut Usage,
    cache: &Cache<K>,
    ns: &str,
    quota: &Value,
    (group, plural): (&str, &str),
    now: i64,
) {
    for object in cache.filter(|o| o.metadata().namespace.as_deref() == Some(ns)) {
        let value = to_value(&*object);
        if !quota::scopes_match(quota, group, plural, &value) {
            continue;
        }
        for (name, amount) in quota::usage(group, plural, &value, now) {
            *total.entry(name).or_default() += amount;
        }
    }
}

impl QuotaController {
    async fn sync(&self, key: &str) -> Result<Action, QuotaError> {
        let Some(rq) = self.quotas.get(key) else {
            return Ok(Action::AwaitChange);
        };
        let (ns, name) = split_key(key);
        let hard: BTreeMap<String, Quantity> = rq
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let quota_value = to_value(&*rq);
        let now = jiff::Timestamp::now().as_second();
        let c = &self.counted;
        let mut total = Usage::new();
        add_usage(&mut total, &c.pods, ns, &quota_value, ("", "pods"), now);
        add_usage(
            &mut total,
            &c.services,
            ns,
            &quota_value,
            ("", "services"),
            now,
        );
        add_usage(
            &mut total,
            &c.configmaps,
            ns,
            &quota_value,
            ("", "configmaps"),
            now,
        );
        add_usage(
            &mut total,
            &c.secrets,
            ns,
            &quota_value,
            ("", "secrets"),
            now,
        );
        add_usage(
            &mut total,
            &self.quotas,
            ns,
            &quota_value,
            ("", "resourcequotas"),
            now,
        );
        let apps = ("apps", "deployments");
        add_usage(&mut total, &c.deployments, ns, &quota_value, apps, now);
        let apps = ("apps", "replicasets");
        add_usage(&mut total, &c.replicasets, ns, &quota_value, apps, now);
        let mut used = BTreeMap::new();
        for resource in hard.keys() {
            let amount = match total.get(resource) {
                Some(a) => *a,
                None => self.count_elsewhere(key, ns, resource).await?,
            };
            used.insert(
                resource.clone(),
                Quantity(quota::format_quantity(resource, amount)),
            );
        }
        let status = ResourceQuotaStatus {
            hard: Some(hard),
            used: Some(used),
        };
        if rq.status.as_ref() == Some(&status) {
            return Ok(Action::AwaitChange);
        }
        let mut updated = (*rq).clone();
        updated.status = Some(status);
        match Api::<ResourceQuota>::namespaced(self.client.clone(), ns)
            .replace_status(name, &updated)
            .await
        {
            Ok(_) => Ok(Action::AwaitChange),
            Err(e) if e.is_not_found() => Ok(Action::AwaitChange),
            Err(source) => Err(QuotaError::Api {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// The count of a `count/<plural>[.<group>]` resource not watched here, by listing it;
    /// 0 for anything else (a resource nothing here uses, or a kind not served).
    async fn count_elsewhere(
        &self,
        key: &str,
        ns: &str,
        resource: &str,
    ) -> Result<i128, QuotaError> {
        let Some(target) = resource.strip_prefix("count/") else {
            return Ok(0);
        };
        let (plural, group) = target.split_once('.').unwrap_or((target, ""));
        let served = kubernel_api::resources::group_versions()
            .into_iter()
            .filter(|(g, _)| *g == group)
            .find_map(|(g, v)| kubernel_api::resources::find(g, v, plural));
        let Some(r) = served else {
            return Ok(0);
        };
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let path = format!("{base}/namespaces/{ns}/{}", r.plural);
        let body = self
            .client
            .send("GET", &path, None)
            .await
            .map_err(|source| QuotaError::Api {
                key: key.to_string(),
                source,
            })?;
        let items = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("items").and_then(Value::as_array).map(Vec::len))
            .unwrap_or(0);
        Ok(i128::try_from(items).unwrap_or(0) * 1000)
    }
}
