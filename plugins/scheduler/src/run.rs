//! The scheduler's I/O: informers feed the core, one thread runs scheduling
//! cycles one pod at a time, binding cycles write the `binding` subresource
//! concurrently, Events and the `PodScheduled` condition say why.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kubernel_client::{
    Api, CancellationToken, Change, Client, ClientError, ClientMetrics, DeleteParams,
    EventRecorder, Informer, LeaderElection, LeaderElectionConfig, ListParams, Patch,
};
use kubernel_sdk::Context;
use serde_json::json;

use crate::core::{BindOutcome, ScheduleOutcome, ScheduledPod, UnschedulablePod};
use crate::plugin::{Engine, PluginConfig};
use crate::pod_info::PodInfo;

/// How often a binding refused with 429 Too Many Requests is retried, and the first wait.
const BIND_RETRIES_ON_429: u32 = 10;
const BIND_RETRY_FIRST: Duration = Duration::from_millis(50);

/// How often backoff and unschedulable pods are flushed back to the active queue.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A running scheduler: its runtime, informers and scheduling thread.
pub struct Runner {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the scheduling thread, the informer pump and the binding tasks share.
struct Shared {
    engine: Arc<Engine>,
    client: Client,
    events: EventRecorder,
    recorders: parking_lot::Mutex<HashMap<String, EventRecorder>>,
    host: String,
    in_flight: AtomicUsize,
    synced: AtomicBool,
    stopping: AtomicBool,
    leader: Option<LeaderElection>,
    wake: (std::sync::Mutex<bool>, std::sync::Condvar),
}

impl Shared {
    fn wake(&self) {
        let (lock, cvar) = &self.wake;
        if let Ok(mut flag) = lock.lock() {
            *flag = true;
        }
        cvar.notify_one();
    }

    fn wait(&self, timeout: Duration) {
        let (lock, cvar) = &self.wake;
        let Ok(flag) = lock.lock() else { return };
        let flag = if *flag {
            flag
        } else {
            match cvar.wait_timeout(flag, timeout) {
                Ok((f, _)) => f,
                Err(_) => return,
            }
        };
        let mut flag = flag;
        *flag = false;
    }

    fn leading(&self) -> bool {
        self.leader.as_ref().is_none_or(LeaderElection::is_leader)
    }

    /// Records an Event as the profile's scheduler: upstream gives each profile its
    /// own recorder, so `source.component` is the pod's `schedulerName`.
    fn record(
        &self,
        profile: &str,
        object: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let recorder = {
            let mut by_profile = self.recorders.lock();
            by_profile
                .entry(profile.to_string())
                .or_insert_with(|| EventRecorder::new(self.client.clone(), profile, &self.host))
                .clone()
        };
        // The recorder retries an Event refused for load (429), as upstream's broadcaster.
        recorder.record(object, type_, reason, message);
    }
}

impl Runner {
    /// Builds the runtime and client, starts informers and the scheduling thread.
    pub fn start(
        ctx: &Context,
        config: &PluginConfig,
        engine: Arc<Engine>,
        client_metrics: ClientMetrics,
        bus: &Arc<kubernel_client::BusLink>,
    ) -> Result<Runner, String> {
        let client = Client::for_plugin(
            &config.client,
            bus,
            ctx.data_dir().parent(),
            Some(client_metrics),
        )
        .map_err(|e| format!("scheduler: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scheduler")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the scheduler runtime: {e}"))?;
        let shutdown = ctx.shutdown_signal().child_token();
        let host = hostname();
        let leader = if config.leader_election.leader_elect {
            let _guard = runtime.enter();
            let le = &config.leader_election;
            Some(
                LeaderElection::start(
                    client.clone(),
                    LeaderElectionConfig {
                        namespace: le.resource_namespace.clone(),
                        name: le.resource_name.clone(),
                        identity: format!("{host}_{}_{}", std::process::id(), ctx.name()),
                        lease_duration: le.lease_duration.max(Duration::from_secs(1)),
                        retry_period: le.retry_period.max(Duration::from_millis(100)),
                    },
                    Some(ctx.registry()),
                    shutdown.clone(),
                )
                .map_err(|e| format!("leader election: {e}"))?,
            )
        } else {
            None
        };
        let shared = Arc::new(Shared {
            engine,
            events: EventRecorder::new(client.clone(), "default-scheduler", &host),
            recorders: parking_lot::Mutex::new(HashMap::new()),
            host: host.clone(),
            client: client.clone(),
            in_flight: AtomicUsize::new(0),
            synced: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            leader,
            wake: (std::sync::Mutex::new(false), std::sync::Condvar::new()),
        });
        {
            let _guard = runtime.enter();
            spawn_informers(&shared, &client, &shutdown);
        }
        let thread_shared = shared.clone();
        let handle = runtime.handle().clone();
        let thread = std::thread::Builder::new()
            .name("scheduling-cycle".into())
            .spawn(move || scheduling_loop(&thread_shared, &handle))
            .map_err(|e| format!("starting the scheduling thread: {e}"))?;
        Ok(Runner {
            runtime,
            shutdown,
            shared,
            thread: Some(thread),
        })
    }

    /// Stops scheduling, waits for bindings in flight (up to `deadline`), then stops.
    pub fn stop(mut self, deadline: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Pods waiting on Permit would hold their binding cycles until their timeouts.
        let waiting = self.shared.engine.core.lock().waiting_pods().all();
        for wp in waiting {
            wp.reject("", "scheduler stopping");
        }
        let until = Instant::now() + deadline;
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shutdown.cancel();
        self.runtime.shutdown_timeout(deadline);
    }

    /// Wakes the scheduling thread (profiles changed).
    pub fn wake(&self) {
        self.shared.wake();
    }

    /// Records a plugin swap as a Kubernetes Event in `kube-system`.
    pub fn record_swap(&self, profile: &str, plugin: &str, message: &str) {
        let _guard = self.runtime.enter();
        let object = ObjectReference {
            api_version: Some("kubernel.io/v1".into()),
            kind: Some("SchedulerPlugin".into()),
            name: Some(plugin.to_string()),
            namespace: Some("kube-system".into()),
            field_path: Some(format!("profiles[{profile}]")),
            ..ObjectReference::default()
        };
        self.shared
            .events
            .record(object, "Normal", "PluginSwapped", message);
    }

    /// Ready once the informers have listed nodes and pods.
    pub fn ready(&self) -> Result<(), String> {
        if self.shared.synced.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("node and pod caches not synced yet".into())
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "kubernel".into())
}

/// Starts the node, pod and PodDisruptionBudget informers and the task that feeds
/// their changes to the core.
fn spawn_informers(shared: &Arc<Shared>, client: &Client, shutdown: &CancellationToken) {
    let (_nodes, mut node_changes) = Informer::start(
        Api::<Node>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    let (_pods, mut pod_changes) = Informer::start(
        Api::<Pod>::all(client.clone()),
        ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
        shutdown.clone(),
    );
    let (_pdbs, mut pdb_changes) = Informer::start(
        Api::<PodDisruptionBudget>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    let shared = shared.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let (mut nodes_synced, mut pods_synced, mut pdbs_synced) = (false, false, false);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                change = pdb_changes.recv() => {
                    let Some(change) = change else { return };
                    let mut core = shared.engine.core.lock();
                    match change {
                        Change::Added(p) | Change::Updated { new: p, .. } => core.on_pdb_upsert(&p),
                        Change::Deleted(p) => core.on_pdb_delete(
                            p.metadata.namespace.as_deref().unwrap_or("default"),
                            p.metadata.name.as_deref().unwrap_or_default(),
                        ),
                        Change::Synced => pdbs_synced = true,
                    }
                }
                change = node_changes.recv() => {
                    let Some(change) = change else { return };
                    let now = Instant::now();
                    let mut core = shared.engine.core.lock();
                    let result = match change {
                        Change::Added(n) => core.on_node_add(n, now),
                        Change::Updated { new, .. } => core.on_node_update(new, now),
                        Change::Deleted(n) => core.on_node_delete(n.metadata.name.as_deref().unwrap_or_default(), now),
                        Change::Synced => { nodes_synced = true; Ok(()) }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "node event not applied");
                    }
                }
                change = pod_changes.recv() => {
                    let Some(change) = change else { return };
                    let now = Instant::now();
                    let mut core = shared.engine.core.lock();
                    let result = match change {
                        Change::Added(p) => core.on_pod_add(p, now),
                        Change::Updated { new, .. } => core.on_pod_update(new, now),
                        Change::Deleted(p) => {
                            core.on_pod_delete(p.metadata.uid.as_deref().unwrap_or_default(), now);
                            Ok(())
                        }
                        Change::Synced => { pods_synced = true; Ok(()) }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "pod event not applied");
                    }
                }
            }
            if nodes_synced
                && pods_synced
                && pdbs_synced
                && !shared.synced.swap(true, Ordering::SeqCst)
            {
                tracing::info!("scheduler caches synced");
            }
            shared.wake();
        }
    });
}

/// Runs scheduling cycles one at a time until the runner stops.
fn scheduling_loop(shared: &Arc<Shared>, runtime: &tokio::runtime::Handle) {
    let mut last_flush = Instant::now();
    while !shared.stopping.load(Ordering::SeqCst) {
        if !shared.synced.load(Ordering::SeqCst) || !shared.leading() {
            shared.wait(Duration::from_millis(100));
            continue;
        }
        let now = Instant::now();
        let outcome = {
            let mut core = shared.engine.core.lock();
            if now.duration_since(last_flush) >= FLUSH_EVERY {
                core.flush(now);
                last_flush = now;
            }
            core.schedule_one(now)
        };
        let _guard = runtime.enter();
        match outcome {
            None => {
                let next = shared.engine.core.lock().next_wakeup();
                let wait = next
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(FLUSH_EVERY)
                    .clamp(Duration::from_millis(1), FLUSH_EVERY);
                shared.wait(wait);
            }
            Some(ScheduleOutcome::Scheduled(sp)) => start_binding(shared, runtime, sp),
            Some(ScheduleOutcome::Unschedulable(u)) => report_unschedulable(shared, runtime, u),
            Some(ScheduleOutcome::Error {
                pod,
                message,
                profile,
            }) => {
                shared.record(
                    &profile,
                    reference(&pod),
                    "Warning",
                    "FailedScheduling",
                    &message,
                );
            }
        }
    }
}

fn reference(pod: &PodInfo) -> ObjectReference {
    EventRecorder::reference(pod.pod.as_ref())
}

/// The binding cycle: PreBind, Bind (the `binding` subresource), then finish.
fn start_binding(shared: &Arc<Shared>, runtime: &tokio::runtime::Handle, sp: Box<ScheduledPod>) {
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    runtime.spawn(async move {
        let mut sp = *sp;
        let pod = sp.pod.clone();
        let node = sp.node.clone();
        let profile = sp.profile.clone();
        // Upstream `WaitOnPermit`: the pod stays assumed until every waiting Permit
        // plugin allows it; a rejection or a timeout forgets it and parks it.
        if let Some(wp) = sp.waiting.clone() {
            let waiting_since = Instant::now();
            let s = wp.wait().await;
            shared
                .engine
                .core
                .lock()
                .observe_permit_wait(&s, waiting_since.elapsed());
            if !s.is_success() {
                let parked = shared.engine.core.lock().reject(sp, &s, Instant::now());
                let u = UnschedulablePod {
                    pod: pod.clone(),
                    profile: profile.clone(),
                    message: s.message(),
                    reasons: Default::default(),
                    nominated_node: None,
                    victims: Vec::new(),
                    rejected_victims: Vec::new(),
                    cleared_nominations: Vec::new(),
                };
                if parked {
                    report_unschedulable(&shared, &tokio::runtime::Handle::current(), u);
                }
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                shared.wake();
                return;
            }
        }
        let (pre_bind, bind) = {
            let core = shared.engine.core.lock();
            let pre = core.pre_bind(&mut sp);
            let bind = if pre.is_success() {
                core.bind(&mut sp)
            } else {
                BindOutcome::Failed(pre.clone())
            };
            (pre, bind)
        };
        let result = match bind {
            BindOutcome::Bound => Ok(()),
            BindOutcome::Failed(s) => Err(format!(
                "{} failed: {s}",
                if pre_bind.is_success() {
                    "Bind"
                } else {
                    "PreBind"
                }
            )),
            BindOutcome::Delegated => write_binding(&shared.client, &pod, &node).await,
        };
        let message = match &result {
            Ok(()) => format!(
                "Successfully assigned {}/{} to {node}",
                pod.namespace, pod.name
            ),
            Err(e) => format!("Binding rejected: {e}"),
        };
        let ok = result.is_ok();
        if let (true, Some(scores)) = (ok, sp.scores.clone()) {
            annotate_scores(&shared.client, &pod, &scores).await;
        }
        shared
            .engine
            .core
            .lock()
            .finish_binding(sp, result, Instant::now());
        if ok {
            shared.record(&profile, reference(&pod), "Normal", "Scheduled", &message);
        } else {
            shared.record(
                &profile,
                reference(&pod),
                "Warning",
                "FailedScheduling",
                &message,
            );
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.wake();
    });
}

/// POSTs the pod's `binding` subresource.
async fn write_binding(client: &Client, pod: &PodInfo, node: &str) -> Result<(), String> {
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    // A 429 (the apiserver's in-flight limit) did nothing: retry it as client-go
    // does, sooner than its Retry-After so the pod keeps its place. Other errors
    // may have bound the pod and go back to the core.
    let mut delay = BIND_RETRY_FIRST;
    let mut attempt = 0;
    loop {
        match api.create_subresource(&pod.name, "binding", &binding).await {
            Ok(_) => return Ok(()),
            Err(ClientError::Api { code: 429, .. }) if attempt < BIND_RETRIES_ON_429 => {
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Records per-plugin scores in an annotation (profiles with `record_scores`).
async fn annotate_scores(client: &Client, pod: &PodInfo, scores: &crate::core::ScoreRecord) {
    let value = json!({"normalized": scores.normalized, "weighted": scores.weighted, "total": scores.total});
    let patch =
        json!({"metadata": {"annotations": {"scheduler.kubernel.io/scores": value.to_string()}}});
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    if let Err(e) = api.patch(&pod.name, &Patch::Merge(patch)).await {
        tracing::debug!(pod = %pod.key(), error = %e, "scores annotation not written");
    }
}

/// `FailedScheduling` Event and `PodScheduled=False`; preemption deletes the victims
/// and nominates the node.
fn report_unschedulable(
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
    u: UnschedulablePod,
) {
    shared.record(
        &u.profile,
        reference(&u.pod),
        "Warning",
        "FailedScheduling",
        &u.message,
    );
    let shared = shared.clone();
    runtime.spawn(async move {
        let pod = &u.pod;
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &pod.namespace);
        for victim in &u.victims {
            let victims: Api<Pod> = Api::namespaced(shared.client.clone(), &victim.namespace);
            let params = DeleteParams {
                precondition_uid: victim.pod.metadata.uid.clone(),
                ..DeleteParams::default()
            };
            match victims.delete(&victim.name, &params).await {
                Ok(_) => shared.record(
                    &u.profile,
                    reference(victim),
                    "Normal",
                    "Preempted",
                    &format!("Preempted by pod {} on node {}", pod.uid, u.nominated_node.as_deref().unwrap_or("")),
                ),
                Err(e) => tracing::warn!(victim = %victim.key(), error = %e, "preemption: victim not deleted"),
            }
        }
        for victim in &u.rejected_victims {
            shared.record(
                &u.profile,
                reference(victim),
                "Normal",
                "Preempted",
                &format!("Preempted by pod {} on node {}", pod.uid, u.nominated_node.as_deref().unwrap_or("")),
            );
        }
        for other in &u.cleared_nominations {
            let api: Api<Pod> = Api::namespaced(shared.client.clone(), &other.namespace);
            let patch = json!({"status": {"nominatedNodeName": null}});
            if let Err(e) = api.patch_status_discarding(&other.name, &Patch::Merge(patch)).await {
                tracing::debug!(pod = %other.key(), error = %e, "nominatedNodeName not cleared");
            }
        }
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut status = json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": u.message, "lastTransitionTime": now, "lastProbeTime": null,
        }]});
        if let Some(node) = &u.nominated_node {
            status["nominatedNodeName"] = json!(node);
        }
        let already = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(u.message.as_str()));
        if already && u.nominated_node.is_none() {
            return;
        }
        if let Err(e) = api
            .patch_status_discarding(&pod.name, &Patch::Strategic(json!({ "status": status })))
            .await
        {
            tracing::debug!(pod = %pod.key(), error = %e, "PodScheduled condition not written");
        }
    });
}
