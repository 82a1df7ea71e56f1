//! The taint eviction controller: deletes pods from nodes with NoExecute taints
//! they do not tolerate — at once, after their toleration's `tolerationSeconds`,
//! or, for the node lifecycle taints without a toleration, after PodEvictionTimeout.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kubernel_client::{
    Api, Cache, Change, Client, ClientError, DeleteParams, EventRecorder, WorkQueue,
};

use crate::controller::{key_of, on_change, run_workers, split_key, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::metrics::Metrics;
use crate::nodelifecycle::{NOT_READY, UNREACHABLE};
use crate::pods::now;

/// Why a pod could not be evicted. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("evicting pod {pod}: {source}")]
pub struct EvictionError {
    /// The pod.
    pub pod: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

struct TaintEviction {
    client: Client,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    queue: WorkQueue<String>,
    recorder: EventRecorder,
    metrics: Metrics,
    pod_eviction_timeout: Duration,
}

/// Starts the controller.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let (nodes, node_changes) = informers.subscribe::<Node>();
    let (pods, pod_changes) = informers.subscribe::<Pod>();
    let controller = Arc::new(TaintEviction {
        client: ctx.client.clone(),
        nodes,
        pods,
        queue: ctx.queue("taint_eviction_controller"),
        recorder: ctx.recorder.clone(),
        metrics: ctx.metrics.clone(),
        pod_eviction_timeout: ctx.config.pod_eviction_timeout,
    });
    let c = controller.clone();
    on_change(node_changes, ctx.shutdown.clone(), move |change| {
        let node = match change {
            Change::Added(n) if !noexec(&n).is_empty() => n,
            Change::Updated { old, new } if noexec(&old) != noexec(&new) => new,
            _ => return,
        };
        let name = node.metadata.name.clone();
        for pod in c
            .pods
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()) == name)
        {
            c.queue.add(key_of(&*pod));
        }
    });
    let c = controller.clone();
    on_change(pod_changes, ctx.shutdown.clone(), move |change| {
        if let Change::Added(p) | Change::Updated { new: p, .. } = change {
            if p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
            {
                c.queue.add(key_of(&*p));
            }
        }
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.nodes.wait_synced().await;
        controller.pods.wait_synced().await;
        let queue = controller.queue.clone();
        run_workers(
            "taint-eviction",
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

fn noexec(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect()
}

/// True when `toleration` tolerates `taint` (upstream `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
    }
}

/// How long after it was added a pod may stay with `taint`: `Some(0)` evicts at
/// once, `None` never; the lifecycle taints default to `default_timeout`.
pub fn allowed_for(
    tolerations: &[Toleration],
    taint: &Taint,
    default_timeout: Duration,
) -> Option<Duration> {
    let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
    if matching.is_empty() {
        return Some(if taint.key == NOT_READY || taint.key == UNREACHABLE {
            default_timeout
        } else {
            Duration::ZERO
        });
    }
    if matching.iter().any(|t| t.toleration_seconds.is_none()) {
        return None;
    }
    matching
        .iter()
        .filter_map(|t| t.toleration_seconds)
        .min()
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

impl TaintEviction {
    async fn sync(&self, key: &str) -> Result<Action, EvictionError> {
        let Some(pod) = self.pods.get(key) else {
            return Ok(Action::AwaitChange);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(Action::AwaitChange);
        }
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .and_then(|n| self.nodes.get(&n))
        else {
            return Ok(Action::AwaitChange);
        };
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let t = now();
        let mut earliest: Option<jiff::Timestamp> = None;
        for taint in noexec(&node) {
            let Some(allowed) = allowed_for(&tolerations, &taint, self.pod_eviction_timeout) else {
                continue;
            };
            let added = taint.time_added.as_ref().map_or(t, |a| a.0);
            let deadline = added
                + jiff::SignedDuration::try_from(allowed).unwrap_or(jiff::SignedDuration::ZERO);
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        }
        let Some(deadline) = earliest else {
            return Ok(Action::AwaitChange);
        };
        if deadline > t {
            let wait = t.duration_until(deadline).unsigned_abs() + Duration::from_millis(50);
            return Ok(Action::Requeue(wait));
        }
        let (ns, name) = split_key(key);
        tracing::info!(pod = %key, node = ?node.metadata.name, "evicting pod from a NoExecute-tainted node");
        self.recorder.record(
            EventRecorder::reference(&*pod),
            "Normal",
            "TaintManagerEviction",
            &format!("Marking for deletion Pod {key}"),
        );
        Api::<Pod>::namespaced(self.client.clone(), ns)
            .delete(
                name,
                &DeleteParams {
                    precondition_uid: pod.metadata.uid.clone(),
                    ..DeleteParams::default()
                },
            )
            .await
            .map_err(|source| EvictionError {
                pod: key.to_string(),
                source,
            })?;
        self.metrics.pod_deletions.inc();
        Ok(Action::AwaitChange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: None,
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn allowed_time_should_follow_toleration_seconds_and_the_default_timeout() {
        let default = Duration::from_secs(6);
        assert_eq!(
            allowed_for(&[], &taint(UNREACHABLE), default),
            Some(default)
        );
        assert_eq!(
            allowed_for(&[], &taint("dedicated"), default),
            Some(Duration::ZERO)
        );
        assert_eq!(
            allowed_for(
                &[toleration(UNREACHABLE, Some(30))],
                &taint(UNREACHABLE),
                default
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            allowed_for(
                &[toleration(UNREACHABLE, None)],
                &taint(UNREACHABLE),
                default
            ),
            None
        );
        assert_eq!(
            allowed_for(
                &[toleration(NOT_READY, Some(1))],
                &taint(UNREACHABLE),
                default
            ),
            Some(default)
        );
    }
}
