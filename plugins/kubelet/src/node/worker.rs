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
use kubernel_client::{Api, DeleteParams, EventRecorder, Patch};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::probes::{self, ProbeContext, Prober};
use super::status::{self, ContainerView, Phase, PodView};
use super::{env, volumes, Shared};
use crate::metrics::Operation;
use crate::runtime::cgroups::{self, Limits};
use crate::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, PodSandboxConfig, Runtime, SandboxId,
    SandboxState,
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
        }
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
                    self.sync(&pod).await;
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
            self.adopt(pod, s.id, s.created_at).await;
            return true;
        }
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let config = PodSandboxConfig {
            name,
            namespace: ns,
            uid: &self.uid,
            host_network: true,
            pod_cidr: None,
            previous_ip: None,
        };
        match rt.run_pod_sandbox(&config).await {
            Ok(id) => {
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
                let node_ip = self.shared.config.node_ip.to_string();
                let env = env::resolve(&self.shared.client, pod, c, &node_ip)
                    .await
                    .unwrap_or_default();
                let prober = probes::start(self.probe_context(pod), c, env.clone());
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

    fn probe_context(&self, pod: &Pod) -> ProbeContext {
        ProbeContext {
            metrics: self.shared.metrics.clone(),
            recorder: self.shared.recorder.clone(),
            pod: EventRecorder::reference(pod),
            wake: self.wake.clone(),
            host: self.shared.config.node_ip.to_string(),
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
        if !self.ensure_sandbox(pod).await {
            return;
        }
        self.refresh().await;
        if self.volumes.is_none() {
            let dir = self.pod_dir();
            let node_ip = self.shared.config.node_ip.to_string();
            match volumes::prepare(&self.shared.client, pod, &dir, &node_ip).await {
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

    /// Runs init containers in order, then the containers; returns the phase.
    async fn run_containers(&mut self, pod: &Pod) -> Phase {
        let Some(spec) = pod.spec.as_ref() else {
            return Phase::Pending;
        };
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        for c in spec.init_containers.as_deref().unwrap_or_default() {
            let slot = self.slots.entry(c.name.clone()).or_default();
            match (slot.state(), slot.exit_code()) {
                (Some(ContainerState::Exited), Some(0)) => continue,
                (Some(ContainerState::Exited), _) if policy == "Never" => return Phase::Failed,
                (Some(ContainerState::Exited), _) => {
                    self.restart_when_due(pod, c).await;
                    return Phase::Pending;
                }
                (None, _) => {
                    self.start(pod, c).await;
                    return Phase::Pending;
                }
                _ => return Phase::Pending,
            }
        }
        let mut running = false;
        let mut all_done = true;
        let mut any_failed = false;
        for c in &spec.containers {
            let slot = self.slots.entry(c.name.clone()).or_default();
            let failed_probe = slot
                .prober
                .as_ref()
                .and_then(|p| p.state.failed.lock().take());
            match slot.state() {
                None => {
                    all_done = false;
                    self.start(pod, c).await;
                    running |= self
                        .slots
                        .get(&c.name)
                        .is_some_and(|s| s.state() == Some(ContainerState::Running));
                }
                Some(ContainerState::Running) if failed_probe.is_some() => {
                    let message = failed_probe.unwrap_or_default();
                    self.event(pod, Some(&c.name), "Normal", "Killing", &message);
                    self.stop_one(&c.name, spec_grace(pod)).await;
                    self.refresh().await;
                    all_done = false;
                    running = true;
                    if policy != "Never" {
                        self.restart_when_due(pod, c).await;
                    }
                }
                Some(ContainerState::Running | ContainerState::Created) => {
                    running = true;
                    all_done = false;
                }
                Some(ContainerState::Exited) => {
                    let code = slot.exit_code().unwrap_or(0);
                    let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                    if restart {
                        all_done = false;
                        running = true;
                        self.restart_when_due(pod, c).await;
                    } else if code != 0 {
                        any_failed = true;
                    }
                }
            }
        }
        if all_done && !spec.containers.is_empty() {
            return if any_failed {
                Phase::Failed
            } else {
                Phase::Succeeded
            };
        }
        let started_any = self.slots.values().any(|s| s.current.is_some());
        if running && started_any {
            Phase::Running
        } else {
            Phase::Pending
        }
    }

    /// Restarts container `c` once its backoff passed; until then it waits in
    /// CrashLoopBackOff (restart at once the first time, then after `crash_loop_backoff`,
    /// doubling up to `crash_loop_backoff_max`).
    async fn restart_when_due(&mut self, pod: &Pod, c: &Container) {
        let base = self.shared.config.crash_loop_backoff;
        let max = self.shared.config.crash_loop_backoff_max;
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let Some(slot) = self.slots.get_mut(&c.name) else {
            return;
        };
        let seen = *slot.exited_seen.get_or_insert_with(Instant::now);
        // A container that ran long enough starts its backoff over (upstream: 2x max).
        let ran = slot
            .current
            .as_ref()
            .and_then(|s| Some(s.finished_at?.duration_since(s.started_at?)))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        if ran >= max * 2 {
            slot.delay = Duration::ZERO;
        }
        let until = seen + slot.delay;
        if Instant::now() < until {
            let message = format!(
                "back-off {} restarting failed container={} pod={name}_{ns}({})",
                humanize(slot.delay),
                c.name,
                self.uid
            );
            slot.waiting = Some(("CrashLoopBackOff".into(), message));
            let first = !slot.backoff_reported;
            slot.backoff_reported = true;
            self.due = Some(self.due.map_or(until, |d| d.min(until)));
            if first {
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container {} in pod {name}_{ns}({})",
                        c.name, self.uid
                    ),
                );
            }
            return;
        }
        slot.delay = if slot.delay.is_zero() {
            base
        } else {
            (slot.delay * 2).min(max)
        };
        slot.restarts += 1;
        self.start(pod, c).await;
    }

    /// Creates and starts a new instance of container `c`, keeping the one before it as
    /// previous.
    async fn start(&mut self, pod: &Pod, c: &Container) {
        let rt = self.shared.runtime.clone();
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let node_ip = self.shared.config.node_ip.to_string();
        let env = match env::resolve(&self.shared.client, pod, c, &node_ip).await {
            Ok(env) => env,
            Err(e) => {
                self.wait_config_error(pod, &c.name, &e.0);
                return;
            }
        };
        let mounts = match volumes::mounts(c, self.volumes.as_ref().unwrap_or(&HashMap::new())) {
            Ok(m) => m,
            Err(e) => {
                self.wait_config_error(pod, &c.name, &e);
                return;
            }
        };
        let command: Vec<String> = c
            .command
            .iter()
            .flatten()
            .map(|s| env::expand(s, &env))
            .collect();
        let args: Vec<String> = c
            .args
            .iter()
            .flatten()
            .map(|s| env::expand(s, &env))
            .collect();
        let image = c.image.as_deref().unwrap_or_default();
        self.event(
            pod,
            Some(&c.name),
            "Normal",
            "Pulled",
            &format!("Container image {image:?} not pulled: image not pulled by the process runtime (it runs the container's command on the host)"),
        );
        let config = ContainerConfig {
            name: &c.name,
            image,
            command: &command,
            args: &args,
            env: &env,
            working_dir: c.working_dir.as_deref(),
            mounts: &mounts,
            limits: limits_of(c),
        };
        let id = match rt.create_container(&sandbox, &config).await {
            Ok(id) => id,
            Err(e) => {
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Failed",
                    &format!("Error: {e}"),
                );
                return;
            }
        };
        let slot = self.slots.entry(c.name.clone()).or_default();
        if let Some(old) = slot.previous.take() {
            if let Err(e) = rt.remove_container(&old.id).await {
                tracing::debug!(pod = %self.key, error = %e, "removing an old container failed");
            }
        }
        slot.previous = slot.current.take();
        slot.waiting = None;
        slot.exited_seen = None;
        slot.backoff_reported = false;
        self.event(
            pod,
            Some(&c.name),
            "Normal",
            "Created",
            &format!("Created container: {}", c.name),
        );
        let started = rt.start_container(&id).await;
        let status = rt.container_status(&id).await.ok();
        let ctx = self.probe_context(pod);
        let slot = self.slots.entry(c.name.clone()).or_default();
        slot.current = status;
        match started {
            Ok(()) => {
                slot.prober = Some(probes::start(ctx, c, env.clone()));
                slot.env = env;
                self.event(
                    pod,
                    Some(&c.name),
                    "Normal",
                    "Started",
                    &format!("Started container {}", c.name),
                );
            }
            Err(e) => {
                slot.exited_seen = Some(Instant::now());
                let message = slot
                    .current
                    .as_ref()
                    .map_or_else(|| e.to_string(), |s| s.message.clone());
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Failed",
                    &format!("Error: failed to start container {:?}: {message}", c.name),
                );
            }
        }
    }

    fn wait_config_error(&mut self, pod: &Pod, container: &str, message: &str) {
        let slot = self.slots.entry(container.to_string()).or_default();
        slot.waiting = Some(("CreateContainerConfigError".into(), message.to_string()));
        self.event(
            pod,
            Some(container),
            "Warning",
            "Failed",
            &format!("Error: {message}"),
        );
    }

    async fn stop_one(&mut self, name: &str, grace: Duration) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.prober = None;
        if let Some(c) = &slot.current {
            if let Err(e) = self.shared.runtime.stop_container(&c.id, grace).await {
                tracing::warn!(pod = %self.key, container = %name, error = %e, "stopping a container failed");
            }
        }
    }

    /// Stops every container (SIGTERM, `grace`, SIGKILL) and removes the sandbox.
    async fn terminate(&mut self, pod: &Pod, grace: Duration) {
        let rt = self.shared.runtime.clone();
        let mut stops = Vec::new();
        for (name, slot) in &mut self.slots {
            slot.prober = None;
            if let Some(c) = slot
                .current
                .as_ref()
                .filter(|c| c.state == ContainerState::Running)
            {
                self.shared.recorder.record(
                    Self::reference(pod, Some(name)),
                    "Normal",
                    "Killing",
                    &format!("Stopping container {name}"),
                );
                let rt = rt.clone();
                let id = c.id.clone();
                let spec = all_containers(pod).find(|c| c.name == *name).cloned();
                let hook = spec
                    .as_ref()
                    .and_then(|c| c.lifecycle.as_ref())
                    .and_then(|l| l.pre_stop.clone());
                let env = slot.env.clone();
                let host = self.shared.config.node_ip.to_string();
                let recorder = self.shared.recorder.clone();
                let reference = Self::reference(pod, Some(name));
                stops.push(async move {
                    let started = Instant::now();
                    // The preStop hook runs first, within the grace period.
                    if let (Some(hook), Some(spec)) = (hook, spec) {
                        let ran = tokio::time::timeout(
                            grace,
                            probes::run_hook(&host, &spec, &env, &hook),
                        )
                        .await;
                        let failed = match ran {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e),
                            Err(_) => Some(format!("did not finish within {grace:?}")),
                        };
                        if let Some(e) = failed {
                            recorder.record(
                                reference,
                                "Warning",
                                "FailedPreStopHook",
                                &format!("PreStopHook failed: {e}"),
                            );
                        }
                    }
                    rt.stop_container(&id, grace.saturating_sub(started.elapsed()))
                        .await
                });
            }
        }
        for result in futures::future::join_all(stops).await {
            if let Err(e) = result {
                tracing::warn!(pod = %self.key, error = %e, "stopping a container failed");
            }
        }
        // Also a sandbox this worker never adopted (the pod was deleted while the
        // kubelet was down).
        let mut ids: Vec<SandboxId> = rt
            .list_pod_sandboxes()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.pod_uid == self.uid)
            .map(|s| s.id)
            .collect();
        ids.extend(self.sandbox.take());
        ids.dedup();
        for id in ids {
            if let Err(e) = rt.remove_pod_sandbox(&id).await {
                tracing::warn!(pod = %self.key, error = %e, "removing the pod sandbox failed");
            }
        }
        tracing::info!(pod = %self.key, "pod stopped");
    }

    /// Deletes the pod for good (grace period 0, only if it still has our uid).
    async fn finish_deletion(&self) {
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_uid: Some(self.uid.clone()),
            ..DeleteParams::default()
        };
        let mut backoff =
            kubernel_client::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        while !self.shared.shutdown.is_cancelled() {
            match api.delete(name, &params).await {
                Ok(_) => return,
                Err(e) if e.is_not_found() || e.code() == Some(409) => return,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(pod = %self.key, error = %e, retry_in = ?delay, "finishing the pod deletion failed");
                    tokio::time::sleep(delay).await;
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
            start_time: self.start_time.unwrap_or_else(Timestamp::now),
        };
        let status = status::build(&pod_view, "process", Timestamp::now());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let patch = Patch::Strategic(json!({ "status": status }));
        match api.patch_status(name, &patch).await {
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

/// The container's `resources.limits` for cpu and memory.
fn limits_of(c: &Container) -> Limits {
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let get = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.as_str());
    Limits {
        memory_bytes: get("memory").and_then(cgroups::memory_bytes),
        cpu_millis: get("cpu").and_then(cgroups::cpu_millis),
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

/// A backoff delay as Go prints durations (`10s`, `1m20s`, `5m0s`, `200ms`).
fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 60 {
        return format!("{s}s");
    }
    format!("{}m{}s", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_should_print_go_durations() {
        assert_eq!(humanize(Duration::from_millis(200)), "200ms");
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
        assert_eq!(humanize(Duration::from_secs(80)), "1m20s");
        assert_eq!(humanize(Duration::from_secs(300)), "5m0s");
    }
}
