//! The disruption controller: keeps every PodDisruptionBudget's status — the pods it
//! covers, how many are healthy, how many must stay healthy, and so how many may be
//! disrupted now (`disruptionsAllowed`, which the apiserver's eviction and the
//! scheduler's preemption read) — as kube-controller-manager's does.
//!
//! Expected pods are the pods the budget selects (upstream asks their controllers'
//! scale for percentages and `maxUnavailable`; the two agree once a controller has
//! created its pods).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubernel_client::{Api, Cache, Change, Client, ClientError};

use crate::controller::{key_of, on_change, run_workers, split_key, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::pods::{is_active, is_ready};
use crate::selector::matches;

/// Why a budget's status could not be written. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("poddisruptionbudget {key}: {source}")]
pub struct DisruptionError {
    /// The budget's `namespace/name`.
    pub key: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct DisruptionController {
    client: Client,
    budgets: Cache<PodDisruptionBudget>,
    pods: Cache<Pod>,
}

/// Starts the controller.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (budgets, pdb_changes) = informers.subscribe::<PodDisruptionBudget>();
    let (pods, pod_changes) = informers.subscribe::<Pod>();
    let queue = ctx.queue("disruption");
    let q = queue.clone();
    on_change(pdb_changes, ctx.shutdown.clone(), move |change| {
        if let Change::Added(b) | Change::Updated { new: b, .. } = change {
            q.add(key_of(&*b));
        }
    });
    let (q, all) = (queue.clone(), budgets.clone());
    on_change(pod_changes, ctx.shutdown.clone(), move |change| {
        let pods: Vec<Arc<Pod>> = match change {
            Change::Added(p) | Change::Deleted(p) => vec![p],
            Change::Updated { old, new } => vec![old, new],
            Change::Synced => return,
        };
        for pod in pods {
            let ns = pod.metadata.namespace.as_deref();
            for b in all.filter(|b| b.metadata.namespace.as_deref() == ns) {
                let selects = b
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| matches(sel, pod.metadata.labels.as_ref()));
                if selects {
                    q.add(key_of(&*b));
                }
            }
        }
    });
    let controller = Arc::new(DisruptionController {
        client: ctx.client.clone(),
        budgets,
        pods,
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.budgets.wait_synced().await;
        controller.pods.wait_synced().await;
        run_workers(
            "disruption",
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

/// `value` of `total` (a count, or a percentage rounded up as upstream).
fn scaled(value: &IntOrString, total: i32) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            i32::try_from((pct * i64::from(total) + 99) / 100).unwrap_or(i32::MAX)
        }
    }
}

/// `(expected, current healthy, desired healthy, disruptions allowed)` of a budget.
pub fn counts(budget: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> (i32, i32, i32, i32) {
    let spec = budget.spec.clone().unwrap_or_default();
    let Some(selector) = spec.selector.as_ref() else {
        return (0, 0, 0, 0);
    };
    let ns = budget.metadata.namespace.as_deref();
    let selected: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| matches(selector, p.metadata.labels.as_ref()))
        .filter(|p| is_active(p))
        .collect();
    let expected = i32::try_from(selected.len()).unwrap_or(i32::MAX);
    let healthy = i32::try_from(
        selected
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .count(),
    )
    .unwrap_or(i32::MAX);
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => (expected - scaled(max, expected)).max(0),
        (None, None) => expected,
    };
    (expected, healthy, desired, (healthy - desired).max(0))
}

impl DisruptionController {
    async fn sync(&self, key: &str) -> Result<Action, DisruptionError> {
        let Some(budget) = self.budgets.get(key) else {
            return Ok(Action::AwaitChange);
        };
        let (expected, healthy, desired, allowed) = counts(&budget, &self.pods.list());
        let current = budget.status.clone().unwrap_or_default();
        let (status, reason, message) = if allowed > 0 {
            ("True", "SufficientPods", "")
        } else {
            ("False", "InsufficientPods", "")
        };
        let condition = Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: budget.metadata.generation,
            last_transition_time: current
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "DisruptionAllowed" && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| {
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(crate::pods::now())
                }),
        };
        let next = PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: desired,
            disruptions_allowed: allowed,
            expected_pods: expected,
            observed_generation: budget.metadata.generation,
            conditions: Some(vec![condition]),
            disrupted_pods: current.disrupted_pods.clone(),
        };
        if current == next {
            return Ok(Action::AwaitChange);
        }
        let mut updated = (*budget).clone();
        updated.status = Some(next);
        let (ns, name) = split_key(key);
        match Api::<PodDisruptionBudget>::namespaced(self.client.clone(), ns)
            .replace_status(name, &updated)
            .await
        {
            Ok(_) => Ok(Action::AwaitChange),
            Err(e) if e.is_not_found() => Ok(Action::AwaitChange),
            Err(source) => Err(DisruptionError {
                key: key.to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "ns", "labels": { "app": "web" } },
                "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] }
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn budget(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": { "name": "b", "namespace": "ns" },
            "spec": spec
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn counts_should_follow_min_available_and_max_unavailable() {
        let pods = vec![pod("a", true), pod("b", true), pod("c", false)];
        let selector = json!({ "matchLabels": { "app": "web" } });
        let min = budget(json!({ "selector": selector, "minAvailable": 1 }));
        assert_eq!(counts(&min, &pods), (3, 2, 1, 1));
        let pct = budget(json!({ "selector": selector, "minAvailable": "50%" }));
        assert_eq!(counts(&pct, &pods), (3, 2, 2, 0), "50% of 3 rounds up to 2");
        let max = budget(json!({ "selector": selector, "maxUnavailable": 1 }));
        assert_eq!(counts(&max, &pods), (3, 2, 2, 0));
        let none =
            budget(json!({ "selector": { "matchLabels": { "app": "other" } }, "minAvailable": 1 }));
        assert_eq!(counts(&none, &pods), (0, 0, 1, 0));
    }
}
