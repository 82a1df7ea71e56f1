//! Pod handling for the simulated nodes: watches every bound pod, and for pods on our
//! nodes starts a sandbox and its containers on the runtime, reports them Running and
//! Ready through the `status` subresource, and finishes deletions as a kubelet does.
//!
//! Only a small entry per running pod is kept; watched objects wait in `pending` just
//! until a worker takes them. A work queue keyed by pod guarantees no two workers sync
//! the same pod at once.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kubernel_client::{
    Api, ClientError, DeleteParams, ListParams, Patch, WorkQueue, WorkQueueMetrics,
};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;

use super::Shared;
use crate::metrics::Operation;
use crate::pod_status::{pod_status, Placement};
use crate::runtime::{ContainerConfig, ContainerState, PodSandboxConfig, RuntimeError, SandboxId};
use crate::watcher::{self, Seen};

/// Why syncing a pod failed.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// An API request failed; retrying helps when the client error is retryable.
    #[error("pod {pod}: {source}")]
    Api {
        /// `namespace/name`.
        pod: Arc<str>,
        /// What the client reported.
        #[source]
        source: ClientError,
    },
    /// The runtime failed; retrying helps unless the sandbox or container is gone.
    #[error("pod {pod}: {source}")]
    Runtime {
        /// `namespace/name`.
        pod: Arc<str>,
        /// What the runtime reported.
        #[source]
        source: RuntimeError,
    },
}

impl SyncError {
    fn is_retryable(&self) -> bool {
        match self {
            SyncError::Api { source, .. } => source.is_retryable(),
            SyncError::Runtime { source, .. } => !matches!(source, RuntimeError::NotFound { .. }),
        }
    }
}

/// The latest state of a pod, waiting for a worker.
enum Observed {
    /// The pod exists in this state.
    Present(Box<Pod>),
    /// The pod with this uid is gone.
    Gone { uid: String },
}

struct Pending {
    observed: Observed,
    first_seen: Instant,
}

/// What the kubelet remembers of a pod it started.
struct Running {
    uid: Box<str>,
    node: u32,
    sandbox: SandboxId,
    ip: Option<Ipv4Addr>,
}

struct Pods {
    shared: Arc<Shared>,
    queue: WorkQueue<Arc<str>>,
    pending: Mutex<HashMap<Arc<str>, Pending>>,
    running: Mutex<HashMap<Arc<str>, Running>>,
}

fn key_of(pod: &Pod) -> Arc<str> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    format!("{ns}/{name}").into()
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Watches bound pods and syncs those on our nodes with `max_in_flight` workers, until
/// shutdown; node indexes arriving on `resync` have their pods listed and synced again.
pub(super) async fn run(
    shared: Arc<Shared>,
    queue_metrics: Option<WorkQueueMetrics>,
    mut resync: mpsc::UnboundedReceiver<u32>,
) {
    let pods = Arc::new(Pods {
        queue: WorkQueue::with_delays(
            "kubelet_pods",
            queue_metrics,
            Duration::from_millis(50),
            Duration::from_secs(30),
        ),
        pending: Mutex::new(HashMap::new()),
        running: Mutex::new(HashMap::new()),
        shared: shared.clone(),
    });
    for _ in 0..shared.config.max_in_flight {
        tokio::spawn(pods.clone().work());
    }
    let p = pods.clone();
    tokio::spawn(async move {
        while let Some(i) = resync.recv().await {
            p.resync_node(i).await;
        }
    });
    let api: Api<Pod> = Api::all(shared.client.clone());
    let params = ListParams {
        limit: 500,
        ..ListParams::default().fields("spec.nodeName!=")
    };
    let p = pods.clone();
    watcher::run(
        api,
        params,
        shared.shutdown.clone(),
        move |seen| match seen {
            Seen::Listed(list) => p.listed(list, None),
            Seen::Applied(pod) => {
                if p.shared.fleet.index_of(node_of(&pod)).is_some() {
                    p.offer(key_of(&pod), Observed::Present(Box::new(pod)));
                }
            }
            Seen::Deleted(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                p.offer(key_of(&pod), Observed::Gone { uid });
            }
        },
    )
    .await;
    pods.queue.shut_down();
}

impl Pods {
    /// Hands the latest state of pod `key` to the workers.
    fn offer(&self, key: Arc<str>, observed: Observed) {
        let mut pending = self.pending.lock();
        match pending.get_mut(&key) {
            Some(p) => p.observed = observed,
            None => {
                let irrelevant = matches!(observed, Observed::Gone { .. })
                    && !self.running.lock().contains_key(&key);
                if irrelevant {
                    return;
                }
                pending.insert(
                    key.clone(),
                    Pending {
                        observed,
                        first_seen: Instant::now(),
                    },
                );
            }
        }
        drop(pending);
        self.queue.add(key);
    }

    /// A full list of the pods (of every node, or of `only` one): sync each, and stop
    /// those we run that are no longer listed.
    fn listed(&self, list: Vec<Pod>, only: Option<u32>) {
        let mut present = HashSet::new();
        for pod in list {
            if self.shared.fleet.index_of(node_of(&pod)).is_none() {
                continue;
            }
            let key = key_of(&pod);
            present.insert(key.clone());
            self.offer(key, Observed::Present(Box::new(pod)));
        }
        let gone: Vec<(Arc<str>, String)> = self
            .running
            .lock()
            .iter()
            .filter(|(k, r)| !present.contains(*k) && only.is_none_or(|n| r.node == n))
            .map(|(k, r)| (k.clone(), r.uid.to_string()))
            .collect();
        for (key, uid) in gone {
            self.offer(key, Observed::Gone { uid });
        }
    }

    /// Lists node `i`'s pods and syncs them (the node resumed).
    async fn resync_node(&self, i: u32) {
        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let params =
            ListParams::default().fields(&format!("spec.nodeName={}", self.shared.fleet.name(i)));
        match self.shared.limited(api.list(&params)).await {
            Ok(list) => self.listed(list.items, Some(i)),
            Err(e) => {
                tracing::warn!(node = %self.shared.fleet.name(i), error = %e, "listing the pods of a resumed node failed")
            }
        }
    }

    /// One worker: takes pods off the queue until it shuts down.
    async fn work(self: Arc<Self>) {
        while let Some(key) = self.queue.get().await {
            let pending = self.pending.lock().remove(&key);
            if let Some(p) = pending {
                match self.sync(&key, &p).await {
                    Ok(()) => self.queue.forget(&key),
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(error = %e, "pod sync failed; retrying");
                        self.pending.lock().entry(key.clone()).or_insert(p);
                        self.queue.add_rate_limited(key.clone());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pod sync failed");
                        self.queue.forget(&key);
                    }
                }
            }
            self.queue.done(&key);
        }
    }

    async fn sync(&self, key: &Arc<str>, p: &Pending) -> Result<(), SyncError> {
        let pod = match &p.observed {
            Observed::Gone { uid } => {
                let ours = self
                    .running
                    .lock()
                    .get(key)
                    .is_some_and(|r| *r.uid == **uid);
                if ours {
                    self.kill(key).await?;
                }
                return Ok(());
            }
            Observed::Present(pod) => pod,
        };
        let Some(node) = self.shared.fleet.index_of(node_of(pod)) else {
            return Ok(());
        };
        if self.shared.fleet.is_paused(node) {
            return Ok(());
        }
        let started = Instant::now();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
        let known = self.running.lock().get(key).map(|r| (*r.uid == *uid, r.ip));
        if pod.metadata.deletion_timestamp.is_some() {
            if known.is_some() {
                self.kill(key).await?;
            }
            self.finish_deletion(key, pod, uid).await?;
            self.shared
                .metrics
                .observe_worker(Operation::Kill, started.elapsed().as_secs_f64());
            return Ok(());
        }
        if matches!(phase, "Succeeded" | "Failed") {
            if known.is_some() {
                self.kill(key).await?;
            }
            return Ok(());
        }
        let reported_ip: Option<Ipv4Addr> = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        match known {
            Some((true, ip)) => {
                if phase == "Running" && (host_network || (ip.is_some() && ip == reported_ip)) {
                    return Ok(());
                }
                self.report(key, pod, node).await?;
                self.shared
                    .metrics
                    .observe_worker(Operation::Sync, started.elapsed().as_secs_f64());
            }
            Some((false, _)) | None => {
                if known.is_some() {
                    self.kill(key).await?;
                }
                let adopting = phase == "Running" && (host_network || reported_ip.is_some());
                let ip = self
                    .start(key, pod, node, reported_ip.filter(|_| adopting))
                    .await?;
                if adopting && (host_network || ip == reported_ip) {
                    self.shared
                        .metrics
                        .restarted_pods
                        .with_label_values(&["false"])
                        .inc();
                    self.shared
                        .metrics
                        .observe_worker(Operation::Sync, started.elapsed().as_secs_f64());
                    return Ok(());
                }
                self.report(key, pod, node).await?;
                self.shared
                    .metrics
                    .observe_worker(Operation::Create, started.elapsed().as_secs_f64());
                self.shared
                    .metrics
                    .pod_start_duration
                    .observe(p.first_seen.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// Starts `pod`'s sandbox, runs its init containers to completion and starts its
    /// containers; returns the pod's address.
    async fn start(
        &self,
        key: &Arc<str>,
        pod: &Pod,
        node: u32,
        previous_ip: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, SyncError> {
        let rt = &self.shared.runtime;
        let err = |source| SyncError::Runtime {
            pod: key.clone(),
            source,
        };
        let spec = pod.spec.as_ref();
        let config = PodSandboxConfig {
            name: pod.metadata.name.as_deref().unwrap_or_default(),
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
            uid: pod.metadata.uid.as_deref().unwrap_or_default(),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            pod_cidr: self.shared.fleet.pod_cidr(node),
            previous_ip,
        };
        let sandbox = rt.run_pod_sandbox(&config).await.map_err(err)?;
        let containers = |init: bool| {
            spec.and_then(|s| {
                if init {
                    s.init_containers.as_deref()
                } else {
                    Some(s.containers.as_slice())
                }
            })
            .unwrap_or_default()
        };
        for (init, c) in containers(true)
            .iter()
            .map(|c| (true, c))
            .chain(containers(false).iter().map(|c| (false, c)))
        {
            let id = rt
                .create_container(
                    &sandbox,
                    &ContainerConfig {
                        name: &c.name,
                        image: c.image.as_deref().unwrap_or_default(),
                        command: c.command.as_deref().unwrap_or_default(),
                        args: c.args.as_deref().unwrap_or_default(),
                    },
                )
                .await
                .map_err(err)?;
            rt.start_container(&id).await.map_err(err)?;
            if init {
                // A simulated init container completes as soon as it starts.
                rt.stop_container(&id, Duration::ZERO).await.map_err(err)?;
            }
        }
        let status = rt.pod_sandbox_status(&sandbox).await.map_err(err)?;
        let m = &self.shared.metrics;
        m.running_pods.inc();
        m.add_containers(
            ContainerState::Running.label(),
            containers(false).len() as i64,
        );
        m.add_containers(
            ContainerState::Exited.label(),
            containers(true).len() as i64,
        );
        self.running.lock().insert(
            key.clone(),
            Running {
                uid: config.uid.into(),
                node,
                sandbox,
                ip: status.ip,
            },
        );
        Ok(status.ip)
    }

    /// Posts the status of `pod` (which we run) from what the runtime reports.
    async fn report(&self, key: &Arc<str>, pod: &Pod, node: u32) -> Result<(), SyncError> {
        let Some(sandbox) = self.running.lock().get(key).map(|r| r.sandbox.clone()) else {
            return Ok(());
        };
        let rt = &self.shared.runtime;
        let err = |source| SyncError::Runtime {
            pod: key.clone(),
            source,
        };
        let sandbox = rt.pod_sandbox_status(&sandbox).await.map_err(err)?;
        let containers = rt.list_containers(Some(&sandbox.id)).await.map_err(err)?;
        let at = Placement {
            host_ip: self.shared.fleet.host_ip(node),
            runtime: rt.name(),
        };
        let status = pod_status(pod, at, &sandbox, &containers, Timestamp::now());
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let patch = Patch::Strategic(json!({ "status": status }));
        match self.shared.limited(api.patch_status(name, &patch)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => self.kill(key).await,
            Err(source) => Err(SyncError::Api {
                pod: key.clone(),
                source,
            }),
        }
    }

    /// Stops and removes pod `key`'s containers and sandbox and forgets the pod.
    async fn kill(&self, key: &Arc<str>) -> Result<(), SyncError> {
        let Some(r) = self.running.lock().remove(key) else {
            return Ok(());
        };
        let rt = &self.shared.runtime;
        let err = |source| SyncError::Runtime {
            pod: key.clone(),
            source,
        };
        let containers = rt.list_containers(Some(&r.sandbox)).await.map_err(err)?;
        for c in &containers {
            rt.stop_container(&c.id, Duration::ZERO)
                .await
                .map_err(err)?;
            rt.remove_container(&c.id).await.map_err(err)?;
            self.shared.metrics.add_containers(c.state.label(), -1);
        }
        rt.stop_pod_sandbox(&r.sandbox).await.map_err(err)?;
        rt.remove_pod_sandbox(&r.sandbox).await.map_err(err)?;
        self.shared.metrics.running_pods.dec();
        Ok(())
    }

    /// Finishes a graceful deletion: the pod's containers are stopped, so delete it at once
    /// (grace period 0), only if it is still the same pod (uid precondition).
    async fn finish_deletion(&self, key: &Arc<str>, pod: &Pod, uid: &str) -> Result<(), SyncError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_uid: Some(uid.to_string()),
            ..DeleteParams::default()
        };
        match self.shared.limited(api.delete(name, &params)).await {
            Ok(_) => Ok(()),
            // Another pod took the name: ours is gone already.
            Err(e) if e.code() == Some(409) => Ok(()),
            Err(source) => Err(SyncError::Api {
                pod: key.clone(),
                source,
            }),
        }
    }
}
