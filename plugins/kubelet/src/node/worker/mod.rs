//! The pod worker: one task per pod bound to the node. Every change of the pod, every
//! probe finding and every `pod_resync_interval` it syncs the pod: sandbox (created or
//! re-adopted after a restart), volumes, init containers in order, containers with their
//! restart policy and CrashLoopBackOff, liveness restarts, then the status through the
//! `status` subresource when it changed. On deletion it stops the containers gracefully
//! (SIGTERM, `terminationGracePeriodSeconds`, SIGKILL), removes the sandbox and finishes
//! the delete.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use kubernel_client::{Api, EventRecorder, Patch};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tracing::Instrument as _;

mod containers;
mod terminate;

use super::probes::{self, ExecIn, ProbeContext, Prober};
use super::status::{self, ContainerView, Phase, PodView};
use super::{env, host_ports, volumes, Shared};
use crate::metrics::Operation;
use crate::runtime::{
    ContainerId, ContainerState, ContainerStatus, PodSandboxConfig, SandboxId, SandboxState,
};

/// The latest word on a pod, from the watch.
#[derive(Clone)]
pub(super) enum Desired {
    /// The pod exists in this state.
    Present(Arc<Pod>),
    /// The pod is gone (this was its last state): stop everything.
    Gone(Arc<Pod>),
}

/// What the worker knows of one container (init or not) of its pod.
#[derive(Default)]
struct Slot {
    /// The current instance as the runtime last reported it.
    current: Option<ContainerStatus>,
    /// The instance before it (`lastState`, `previous` logs).
    previous: Option<ContainerStatus>,
    restarts: i32,
    /// Delay before the next restart (zero: restart at once).
    delay: Duration,
    /// When the current instance was first seen exited.
    exited_seen: Option<Instant>,
    /// A waiting reason and message (CrashLoopBackOff, CreateContainerConfigError).
    waiting: Option<(String, String)>,
    /// Whether the BackOff Event of the current wait was written.
    backoff_reported: bool,
    /// When the image may be pulled again, and the delay that was (ImagePullBackOff).
    pull_backoff: Option<(Instant, Duration)>,
    prober: Option<Prober>,
    /// The environment the current instance was started with (for hooks).
    env: Vec<(String, String)>,
}

impl Slot {
    fn state(&self) -> Option<ContainerState> {
        self.current.as_ref().map(|c| c.state)
    }

    fn exit_code(&self) -> Option<i32> {
        self.current.as_ref().and_then(|c| c.exit_code)
    }
}

/// One pod's worker.
pub(super) struct Worker {
    shared: Arc<Shared>,
    key: String,
    uid: String,
    rx: watch::Receiver<Desired>,
    wake: Arc<Notify>,
    sandbox: Option<SandboxId>,
    volumes: Option<HashMap<String, PathBuf>>,
    slots: HashMap<String, Slot>,
    start_time: Option<Timestamp>,
    first_seen: Instant,
    reported_running: bool,
    last_status: Option<Value>,
    terminal: Option<Phase>,
    /// The next time a sync is due earlier than the resync (a backoff ending).
    due: Option<Instant>,
    /// The pod's own address (bridge network); `None`: the node's.
    pod_ip: Option<String>,
    /// Whether the NetworkNotReady Event of the current wait was written.
    network_wait_reported: bool,
    /// Why the pod was rejected at admission (its node ports were taken).
    rejected: Option<String>,
}

fn grace_of(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

fn spec_grace(pod: &Pod) -> Duration {
    let seconds = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

impl Worker {
    /// A worker for the pod `key` with uid `uid`, fed by `rx`.
    pub(super) fn new(
        shared: Arc<Shared>,
        key: String,
        uid: String,
        rx: watch::Receiver<Desired>,
    ) -> Worker {
        Worker {
            shared,
            key,
            uid,
            rx,
            wake: Arc::new(Notify::new()),
            sandbox: None,
            volumes: None,
            slots: HashMap::new(),
            start_time: None,
            first_seen: Instant::now(),
            reported_running: false,
            last_status: None,
            terminal: None,
            due: None,
            pod_ip: None,
            network_wait_reported: false,
            rejected: None,
        }
    }

    /// Whether the pod shares the node's network (host network, or `hostNetwork`).
    fn shares_node_network(&self, pod: &Pod) -> bool {
        !self.shared.bridge
            || pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false)
    }

    /// The node's and the pod's addresses for the downward API.
    fn ips(&self) -> env::Ips {
        env::Ips {
            host: self.shared.config.node_ip.to_string(),
            pod: self.ip(),
        }
    }

    /// Where exec handlers of container instance `id` run: in the container (CRI) or on
    /// the host, in the pod's network namespace if it has its own (process runtime).
    fn exec_in(&self, id: Option<&ContainerId>) -> ExecIn {
        let rt = &self.shared.runtime;
        match id {
            Some(id) if rt.execs_in_containers() => ExecIn::Container(rt.clone(), id.clone()),
            _ => ExecIn::Host(self.sandbox.as_ref().and_then(|s| rt.sandbox_netns(s))),
        }
    }

    /// The pod's address: its own (bridge network) or the node's.
    fn ip(&self) -> String {
        self.pod_ip
            .clone()
            .unwrap_or_else(|| self.shared.config.node_ip.to_string())
    }

    fn recorder(&self) -> &EventRecorder {
        &self.shared.recorder
    }

    fn reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
        let mut r = EventRecorder::reference(pod);
        r.field_path = container.map(|c| format!("spec.containers{{{c}}}"));
        r
    }

    fn event(&self, pod: &Pod, container: Option<&str>, type_: &str, reason: &str, message: &str) {
        self.recorder()
            .record(Self::reference(pod, container), type_, reason, message);
    }

    /// Syncs the pod until it is deleted or the kubelet stops.
    pub(super) async fn run(mut self) {
        loop {
            let desired = self.rx.borrow_and_update().clone();
            let started = Instant::now();
            match desired {
                Desired::Gone(pod) => {
                    self.terminate(&pod, grace_of(&pod)).await;
                    self.shared
                        .metrics
                        .observe_worker(Operation::Kill, started.elapsed().as_secs_f64());
                    return;
                }
                Desired::Present(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    self.terminate(&pod, grace_of(&pod)).await;
                    self.finish_deletion().await;
                    self.shared
                        .metrics
                        .observe_worker(Operation::Kill, started.elapsed().as_secs_f64());
                    return;
                }
                Desired::Present(pod) => {
                    let op = if self.sandbox.is_none() {
                        Operation::Create
                    } else {
                        Operation::Sync
                    };
                    self.due = None;
                    let span = tracing::info_span!(
                        "pod_sync",
                        pod = self.key.as_str(),
                        node = self.shared.node_name.as_str(),
                        create = op == Operation::Create,
                    );
                    self.sync(&pod).instrument(span).await;
                    self.shared
                        .metrics
                        .observe_worker(op, started.elapsed().as_secs_f64());
                }
            }
            let resync = self.shared.config.pod_resync_interval;
            let wait = self.due.map_or(resync, |d| {
                d.saturating_duration_since(Instant::now()).min(resync)
            });
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                changed = self.rx.changed() => if changed.is_err() { return },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Finds the pod's sandbox after a kubelet restart, or creates one.
    async fn ensure_sandbox(&mut self, pod: &Pod) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        let rt = &self.shared.runtime;
        let existing = rt
            .list_pod_sandboxes()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.pod_uid == self.uid && s.state == SandboxState::Ready)
            .max_by_key(|s| s.created_at);
        if let Some(s) = existing {
            let ip = match s.ip {
                Some(ip) => Some(ip),
                // Listing does not say it with every runtime (CRI).
                None => rt.pod_sandbox_status(&s.id).await.ok().and_then(|s| s.ip),
            };
            self.pod_ip = ip.map(|ip| ip.to_string());
            self.adopt(pod, s.id, s.created_at).await;
            return true;
        }
        let host_network = self.shares_node_network(pod);
        if host_network {
            match host_ports::admit(&self.shared, &self.key, pod) {
                Ok(true) => {}
                // The previous pod of this name still stops: the next sync tries again.
                Ok(false) => return false,
                Err(message) => {
                    tracing::warn!(pod = %self.key, "{message}");
                    self.event(pod, None, "Warning", host_ports::REASON, &message);
                    self.rejected = Some(message);
                    self.terminal = Some(Phase::Failed);
                    return false;
                }
            }
        }
        let pod_cidr = *self.shared.pod_cidr.lock();
        if !host_network && pod_cidr.is_none() {
            // As upstream's kubelet while the network plugin is not ready: the pod waits.
            let listed = self.shared.nodes_listed.load(Ordering::Relaxed);
            if listed && !self.network_wait_reported {
                self.network_wait_reported = true;
                let message = format!(
                    "network is not ready: node {} has no spec.podCIDR yet (the controller-manager assigns one when allocate_node_cidrs is on)",
                    self.shared.node_name
                );
                tracing::warn!(pod = %self.key, "{message}");
                self.event(pod, None, "Warning", "NetworkNotReady", &message);
            }
            return false;
        }
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let config = PodSandboxConfig {
            name,
            namespace: ns,
            uid: &self.uid,
            host_network,
            pod_cidr,
            previous_ip: None,
        };
        match rt.run_pod_sandbox(&config).await {
            Ok(id) => {
                self.pod_ip = rt
                    .pod_sandbox_status(&id)
                    .await
                    .ok()
                    .and_then(|s| s.ip)
                    .map(|ip| ip.to_string());
                self.sandbox = Some(id);
                self.start_time = Some(
                    pod.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map_or_else(Timestamp::now, |t| t.0),
                );
                true
            }
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "creating the pod sandbox failed");
                self.event(
                    pod,
                    None,
                    "Warning",
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                );
                false
            }
        }
    }

    /// Takes over a sandbox a previous kubelet left running: its newest instance of each
    /// container becomes current, the one before it previous; older ones are removed.
    async fn adopt(&mut self, pod: &Pod, id: SandboxId, created: Timestamp) {
        // Known before the probes start: exec probes run in its network namespace.
        self.sandbox = Some(id.clone());
        if self.shares_node_network(pod) {
            host_ports::claim(&self.shared, &self.key, pod);
        }
        let rt = self.shared.runtime.clone();
        let mut containers = rt.list_containers(Some(&id)).await.unwrap_or_default();
        containers.sort_by_key(|c| c.created_at);
        let restarts: HashMap<String, i32> = pod
            .status
            .iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .map(|c| (c.name.clone(), c.restart_count))
            .collect();
        for c in containers.into_iter().rev() {
            let slot = self.slots.entry(c.name.clone()).or_default();
            if slot.current.is_none() {
                slot.restarts = restarts.get(&c.name).copied().unwrap_or(0);
                slot.current = Some(c);
            } else if slot.previous.is_none() {
                slot.previous = Some(c);
            } else if let Err(e) = rt.remove_container(&c.id).await {
                tracing::debug!(pod = %self.key, error = %e, "removing an old container failed");
            }
        }
        // Running containers get their probes again.
        let specs: Vec<Container> = all_containers(pod).cloned().collect();
        for c in &specs {
            let running = self
                .slots
                .get(&c.name)
                .is_some_and(|s| s.state() == Some(ContainerState::Running));
            if running {
                let env = env::resolve(&self.shared.client, pod, c, &self.ips())
                    .await
                    .unwrap_or_default();
                let id = self
                    .slots
                    .get(&c.name)
                    .and_then(|s| s.current.as_ref())
                    .map(|s| s.id.clone());
                let prober = probes::start(self.probe_context(pod, id.as_ref()), c, env.clone());
                // What the previous kubelet found: the container started and was ready.
                let was = |f: fn(&k8s_openapi::api::core::v1::ContainerStatus) -> bool| {
                    pod.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .and_then(|l| l.iter().find(|s| s.name == c.name))
                        .is_some_and(f)
                };
                if was(|s| s.started == Some(true)) {
                    prober.state.started.store(true, Ordering::Relaxed);
                }
                if was(|s| s.ready) {
                    prober.state.ready.store(true, Ordering::Relaxed);
                }
                if let Some(slot) = self.slots.get_mut(&c.name) {
                    slot.prober = Some(prober);
                    slot.env = env;
                }
            }
        }
        self.sandbox = Some(id);
        self.start_time = Some(
            pod.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map_or(created, |t| t.0),
        );
        self.reported_running = true;
        self.shared
            .metrics
            .restarted_pods
            .with_label_values(&["false"])
            .inc();
        tracing::info!(pod = %self.key, "re-adopted the pod's sandbox after a kubelet restart");
    }

    fn probe_context(&self, pod: &Pod, container: Option<&ContainerId>) -> ProbeContext {
        ProbeContext {
            metrics: self.shared.metrics.clone(),
            recorder: self.shared.recorder.clone(),
            pod: EventRecorder::reference(pod),
            wake: self.wake.clone(),
            host: self.ip(),
            exec: self.exec_in(container),
        }
    }

    /// One sync of a pod that is not being deleted.
    async fn sync(&mut self, pod: &Pod) {
        let api_phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if self.sandbox.is_none() && matches!(api_phase, "Succeeded" | "Failed") {
            // Finished before this kubelet (re)started: nothing runs again.
            return;
        }
        if self.rejected.is_some() {
            self.report(pod, Phase::Failed).await;
            return;
        }
        if self.shared.runtime_health.lock().is_err() {
            // The runtime is down (the node is NotReady): nothing can be done or known
            // until it is back.
            return;
        }
        if !self.ensure_sandbox(pod).await {
            if self.rejected.is_some() {
                self.report(pod, Phase::Failed).await;
            }
            return;
        }
        self.refresh().await;
        if self.volumes.is_none() {
            let dir = self.pod_dir();
            match volumes::prepare(&self.shared.client, pod, &dir, &self.ips()).await {
                Ok(v) => self.volumes = Some(v),
                Err(e) => {
                    self.event(pod, None, "Warning", "FailedMount", &e.to_string());
                    self.report(pod, Phase::Pending).await;
                    return;
                }
            }
        }
        let phase = match self.terminal {
            Some(p) => p,
            None => self.run_containers(pod).await,
        };
        if matches!(phase, Phase::Succeeded | Phase::Failed) && self.terminal.is_none() {
            self.terminal = Some(phase);
            host_ports::release(&self.shared, &self.uid);
            for slot in self.slots.values_mut() {
                slot.prober = None;
            }
        }
        self.report(pod, phase).await;
    }

    fn pod_dir(&self) -> PathBuf {
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        self.shared.runtime.pod_dir(ns, name, &self.uid)
    }

    /// Re-reads every current instance from the runtime.
    async fn refresh(&mut self) {
        for slot in self.slots.values_mut() {
            if let Some(c) = &slot.current {
                if let Ok(s) = self.shared.runtime.container_status(&c.id).await {
                    if s.state == ContainerState::Exited && slot.exited_seen.is_none() {
                        slot.exited_seen = Some(Instant::now());
                        slot.prober = None;
                    }
                    slot.current = Some(s);
                }
            }
        }
    }

    /// Posts the pod's status when it differs from the last one posted.
    async fn report(&mut self, pod: &Pod, phase: Phase) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let host_ip = self.shared.config.node_ip.to_string();
        let pod_ip = self.ip();
        let pod_view = PodView {
            pod,
            phase,
            sandbox_ready: self.sandbox.is_some(),
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| container_view(c, &self.slots))
                .collect(),
            main: spec
                .containers
                .iter()
                .map(|c| container_view(c, &self.slots))
                .collect(),
            host_ip: &host_ip,
            pod_ip: &pod_ip,
            rejected: self
                .rejected
                .as_deref()
                .map(|message| (host_ports::REASON, message)),
            start_time: self.start_time.unwrap_or_else(Timestamp::now),
        };
        let status = status::build(&pod_view, self.shared.runtime.name(), Timestamp::now());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let patch = Patch::Strategic(json!({ "status": status }));
        match api.patch_status_discarding(name, &patch).await {
            Ok(_) => {
                if phase == Phase::Running && !self.reported_running {
                    self.reported_running = true;
                    self.shared
                        .metrics
                        .pod_start_duration
                        .observe(self.first_seen.elapsed().as_secs_f64());
                }
                self.last_status = Some(status);
            }
            Err(e) => tracing::warn!(pod = %self.key, error = %e, "posting the pod status failed"),
        }
    }
}

/// What the status of container `c` is built from.
fn container_view<'a>(c: &'a Container, slots: &'a HashMap<String, Slot>) -> ContainerView<'a> {
    let slot = slots.get(&c.name);
    let (started, ready) = slot
        .and_then(|s| s.prober.as_ref())
        .map_or((true, true), |p| {
            (
                p.state.started.load(Ordering::Relaxed),
                p.state.ready.load(Ordering::Relaxed),
            )
        });
    ContainerView {
        name: &c.name,
        image: c.image.as_deref().unwrap_or_default(),
        current: slot.and_then(|s| s.current.as_ref()),
        previous: slot.and_then(|s| s.previous.as_ref()),
        restarts: slot.map_or(0, |s| s.restarts),
        waiting: slot
            .and_then(|s| s.waiting.as_ref())
            .map(|(r, m)| (r.as_str(), m.as_str())),
        started,
        ready,
    }
}

/// Init containers then containers of `pod`.
fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .chain(spec.map(|s| s.containers.as_slice()).unwrap_or_default())
}
