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
use kubernel_client::{Api, ClientError, DeleteParams, ListParams, WorkQueue, WorkQueueMetrics};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::pod_view::{key_of, Phase, PodView};
use super::Shared;
use crate::metrics::Operation;
use crate::pod_status::{pod_status, Placement, PodStatusReport};
use crate::runtime::{ContainerConfig, ContainerState, PodSandboxConfig, RuntimeError, SandboxId};
use crate::watched_pod::WatchedPod;
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
    Present(Box<PodView>),
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
    let api: Api<WatchedPod> = Api::all(shared.client.clone());
    let params = ListParams {
        limit: 500,
        ..ListParams::default().fields("spec.nodeName!=")
    };
    let p = pods.clone();
    let mut listed = HashSet::new();
    watcher::run(
        api,
        params,
        shared.shutdown.clone(),
        move |seen| match seen {
            Seen::Page(page) => {
                for pod in page {
                    if let Some(key) = p.applied(&pod) {
                        listed.insert(key);
                    }
                }
            }
            Seen::Listed => p.listed(std::mem::take(&mut listed), None),
            Seen::Applied(pod) => {
                p.applied(&pod);
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

    /// A watched pod: hands it to the workers if it is on one of our nodes and is not
    /// just our own status coming back; returns its key if it is ours.
    fn applied(&self, pod: &WatchedPod) -> Option<Arc<str>> {
        let view = PodView::of(pod, &self.shared.fleet)?;
        let key = key_of(pod);
        let echo = !view.deleting
            && self
                .running
                .lock()
                .get(&key)
                .is_some_and(|r| r.uid == view.uid && view.reported_as(r.ip));
        if !echo {
            self.offer(key.clone(), Observed::Present(Box::new(view)));
        }
        Some(key)
    }

    /// A full list ended: stop the pods we run (on every node, or on node `only`) that
    /// it did not hold.
    fn listed(&self, present: HashSet<Arc<str>>, only: Option<u32>) {
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
        let api: Api<WatchedPod> = Api::all(self.shared.client.clone());
        let params =
            ListParams::default().fields(&format!("spec.nodeName={}", self.shared.fleet.name(i)));
        match self.shared.limited(api.list(&params)).await {
            Ok(list) => {
                let present = list
                    .items
                    .iter()
                    .filter_map(|pod| self.applied(pod))
                    .collect();
                self.listed(present, Some(i));
            }
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
                let span = tracing::info_span!(
                    "pod_sync",
                    pod = &*key,
                    node = tracing::field::Empty,
                    deleted = matches!(p.observed, Observed::Gone { .. }),
                    error = tracing::field::Empty,
                );
                if let (false, Observed::Present(pod)) = (span.is_disabled(), &p.observed) {
                    span.record("node", self.shared.fleet.name(pod.node));
                }
                let result = self.sync(&key, &p).instrument(span.clone()).await;
                if let Err(e) = &result {
                    span.record("error", tracing::field::display(e));
                }
                drop(span);
                match result {
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
        if self.shared.fleet.is_paused(pod.node) {
            return Ok(());
        }
        let started = Instant::now();
        let metrics = &self.shared.metrics;
        let known = self
            .running
            .lock()
            .get(key)
            .map(|r| (r.uid == pod.uid, r.ip));
        if pod.deleting {
            if known.is_some() {
                self.kill(key).await?;
            }
            self.finish_deletion(key, &pod.uid).await?;
            metrics.observe_worker(Operation::Kill, started.elapsed().as_secs_f64());
            return Ok(());
        }
        if pod.phase == Phase::Finished {
            if known.is_some() {
                self.kill(key).await?;
            }
            return Ok(());
        }
        match known {
            Some((true, ip)) => {
                if pod.reported_as(ip) {
                    return Ok(());
                }
                self.report(key, pod).await?;
                metrics.observe_worker(Operation::Sync, started.elapsed().as_secs_f64());
            }
            Some((false, _)) | None => {
                if known.is_some() {
                    self.kill(key).await?;
                }
                // Reported running but unknown to us: this kubelet restarted; adopt the
                // pod, keeping its address.
                let adopting =
                    pod.phase == Phase::Running && (pod.facts.host_network || pod.pod_ip.is_some());
                let ip = self
                    .start(key, pod, pod.pod_ip.filter(|_| adopting))
                    .await?;
                if adopting && pod.reported_as(ip) {
                    metrics.restarted_pods.with_label_values(&["false"]).inc();
                    metrics.observe_worker(Operation::Sync, started.elapsed().as_secs_f64());
                    return Ok(());
                }
                self.report(key, pod).await?;
                metrics.observe_worker(Operation::Create, started.elapsed().as_secs_f64());
                metrics
                    .pod_start_duration
                    .observe(p.first_seen.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// Starts `pod`'s sandbox, runs its init containers to completion and starts its
    /// containers (with no command: nothing is executed); returns the pod's address.
    async fn start(
        &self,
        key: &Arc<str>,
        pod: &PodView,
        previous_ip: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, SyncError> {
        let rt = &self.shared.runtime;
        let err = |source| SyncError::Runtime {
            pod: key.clone(),
            source,
        };
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let config = PodSandboxConfig {
            name,
            namespace,
            uid: &pod.uid,
            host_network: pod.facts.host_network,
            pod_cidr: self.shared.fleet.pod_cidr(pod.node),
            previous_ip,
        };
        let sandbox = rt.run_pod_sandbox(&config).await.map_err(err)?;
        let init = pod.facts.init_containers.iter().map(|c| (true, c));
        let main = pod.facts.containers.iter().map(|c| (false, c));
        for (init, c) in init.chain(main) {
            let config = ContainerConfig {
                name: &c.name,
                image: &c.image,
                command: &[],
                args: &[],
                env: &[],
                working_dir: None,
                mounts: &[],
                limits: Default::default(),
            };
            let id = rt.create_container(&sandbox, &config).await.map_err(err)?;
            rt.start_container(&id).await.map_err(err)?;
            if init {
                // A simulated init container completes as soon as it starts.
                rt.stop_container(&id, Duration::ZERO).await.map_err(err)?;
            }
        }
        let status = rt.pod_sandbox_status(&sandbox).await.map_err(err)?;
        let m = &self.shared.metrics;
        m.running_pods.inc();
        let count = |list: &[_]| i64::try_from(list.len()).unwrap_or(i64::MAX);
        m.add_containers(
            ContainerState::Running.label(),
            count(&pod.facts.containers),
        );
        m.add_containers(
            ContainerState::Exited.label(),
            count(&pod.facts.init_containers),
        );
        self.running.lock().insert(
            key.clone(),
            Running {
                uid: pod.uid.clone(),
                node: pod.node,
                sandbox,
                ip: status.ip,
            },
        );
        Ok(status.ip)
    }

    /// Posts the status of `pod` (which we run) from what the runtime reports.
    async fn report(&self, key: &Arc<str>, pod: &PodView) -> Result<(), SyncError> {
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
            host_ip: self.shared.fleet.host_ip(pod.node),
            runtime: rt.name(),
        };
        let status = pod_status(&pod.facts, at, &sandbox, &containers, Timestamp::now());
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        #[derive(serde::Serialize)]
        struct StatusPatch<'a> {
            status: &'a PodStatusReport,
        }
        let patch = StatusPatch { status: &status };
        match self
            .shared
            .limited(api.strategic_patch_status_discarding(name, &patch))
            .await
        {
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
    async fn finish_deletion(&self, key: &Arc<str>, uid: &str) -> Result<(), SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or_default();
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
