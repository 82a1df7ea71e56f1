//! The real-node agent: one node whose containers are host processes (process runtime)
//! or run in a CRI runtime such as containerd (CRI runtime). It registers the Node, keeps its Lease and status fresh from real readings, runs a
//! worker per pod bound to it (containers, probes, volumes, restarts, status), relists
//! the runtime every second for its metrics, and serves the kubelet API (logs).
//!
//! Network: with `network = "host"` pods share the host network and `podIP` is the
//! node's address; with `"bridge"` each pod that is not `hostNetwork` gets its own
//! network namespace and an address from the Node's `spec.podCIDR` (the runtime's
//! [`PodNetwork`]), and [`network`] routes the other nodes' pod CIDRs. The process
//! runtime records images and never pulls them; the CRI runtime pulls them through the
//! CRI as `imagePullPolicy` says, and its own CNI config networks bridge pods. The relist
//! also checks the runtime's health: while it does not answer the node is NotReady.

mod env;
mod heartbeat;
mod host_ports;
mod logs;
pub mod machine;
mod masquerade;
mod network;
mod pods;
mod probes;
mod server;
mod status;
mod volumes;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use kubernel_client::{CancellationToken, Client, EventRecorder};
use parking_lot::Mutex;

use crate::cidr::Ipv4Cidr;
use crate::config::KubeletConfig;
use crate::config::RuntimeKind;
use crate::metrics::Metrics;
use crate::runtime::cri::CriRuntime;
use crate::runtime::pod_network::PodNetwork;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::{ContainerState, NodeRuntime};

/// How often log growth is time-stamped (the precision of `timestamps=true`).
const LOG_MARK_PERIOD: std::time::Duration = std::time::Duration::from_millis(200);

/// What every task of the node agent shares.
pub(crate) struct Shared {
    config: KubeletConfig,
    client: Client,
    node_name: String,
    /// Where pod directories live.
    root: PathBuf,
    runtime: Arc<dyn NodeRuntime>,
    /// The runtime's version while it is healthy, or why it is not (the Ready condition).
    runtime_health: Mutex<Result<String, String>>,
    metrics: Metrics,
    recorder: EventRecorder,
    shutdown: CancellationToken,
    /// Port the kubelet API really listens on (known once bound).
    port: AtomicU16,
    /// Whether the Node is registered.
    registered: AtomicBool,
    /// Pod workers by `namespace/name`, for the kubelet API's `/pods`.
    pods: Mutex<HashMap<String, k8s_openapi::api::core::v1::Pod>>,
    /// Whether pods get their own network namespaces (bridge network).
    bridge: bool,
    /// The Node's `spec.podCIDR`, once the controller-manager assigned it.
    pod_cidr: Mutex<Option<Ipv4Cidr>>,
    /// Whether the Nodes were listed once (until then a missing podCIDR is not news).
    nodes_listed: AtomicBool,
    /// Node ports (protocol, port) held by pods sharing the node's network.
    host_ports: Mutex<HashMap<(String, i32), host_ports::Owner>>,
}

impl Shared {
    fn node_ref(&self) -> ObjectReference {
        ObjectReference {
            kind: Some("Node".into()),
            name: Some(self.node_name.clone()),
            uid: Some(self.node_name.clone()),
            ..ObjectReference::default()
        }
    }
}

/// A running real-node agent (process or CRI runtime); its tasks stop when the shutdown
/// token is cancelled. The process runtime's processes are killed when the last handle
/// to it drops; a CRI runtime's containers keep running in the runtime.
pub struct ProcessKubelet {
    shared: Arc<Shared>,
    process: Option<Arc<ProcessRuntime>>,
}

impl ProcessKubelet {
    /// Starts the agent on `handle`: pod directories under `root`.
    pub fn start(
        handle: &tokio::runtime::Handle,
        config: KubeletConfig,
        client: Client,
        root: PathBuf,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<ProcessKubelet, String> {
        std::fs::create_dir_all(&root).map_err(|e| {
            format!(
                "kubelet: creating the pod directory root {}: {e}",
                root.display()
            )
        })?;
        let node_name = config.node_name.clone().unwrap_or_else(machine::hostname);
        let bridge = config.bridge_network();
        if bridge && !rustix::process::geteuid().is_root() {
            return Err(
                "config: key network: \"bridge\" needs root (it creates network namespaces, veth pairs and a bridge); use \"host\", or \"auto\" to pick bridge only as root"
                    .into(),
            );
        }
        let network = if bridge && config.runtime != RuntimeKind::Cri {
            let data_dir = config
                .cni_data_dir
                .clone()
                .unwrap_or_else(|| root.with_file_name("cni"));
            Some(PodNetwork::new(
                config.cni_bin_dir.clone(),
                data_dir,
                config.bridge_name.clone(),
                &node_name,
            )?)
        } else {
            None
        };
        let (runtime, process): (Arc<dyn NodeRuntime>, _) = match config.runtime {
            RuntimeKind::Cri => {
                let _entered = handle.enter();
                let cri = CriRuntime::new(
                    &config.runtime_endpoint,
                    root.clone(),
                    config.pod_log_dir.clone(),
                    bridge,
                    metrics.clone(),
                )
                .map_err(|e| format!("config: {e}"))?;
                (Arc::new(cri), None)
            }
            _ => {
                let p = Arc::new(ProcessRuntime::recover_with_network(root.clone(), network));
                (p.clone(), Some(p))
            }
        };
        let runtime_health = Mutex::new(match process {
            Some(_) => Ok(runtime.version()),
            None => Err("container runtime status check may not have completed yet".to_string()),
        });
        let recorder = EventRecorder::new(client.clone(), "kubelet", &node_name);
        metrics.node_name.with_label_values(&[&node_name]).set(1);
        if !rustix::process::geteuid().is_root() {
            tracing::warn!("the kubelet does not run as root: volumes are not mounted at their mountPath and resource limits are not applied");
        }
        let shared = Arc::new(Shared {
            config,
            client,
            node_name,
            root,
            runtime,
            runtime_health,
            metrics,
            recorder,
            shutdown,
            port: AtomicU16::new(0),
            registered: AtomicBool::new(false),
            pods: Mutex::new(HashMap::new()),
            bridge,
            pod_cidr: Mutex::new(None),
            nodes_listed: AtomicBool::new(false),
            host_ports: Mutex::new(HashMap::new()),
        });
        let listener = handle
            .block_on(server::bind(&shared.config))
            .map_err(|e| format!("kubelet API: {e}"))?;
        shared.port.store(
            listener.local_addr().map_or(0, |a| a.port()),
            Ordering::Relaxed,
        );
        let s = shared.clone();
        handle.spawn(server::serve(s, listener));
        let s = shared.clone();
        handle.spawn(async move {
            check_runtime(&s).await;
            heartbeat::register(&s).await;
            if s.shutdown.is_cancelled() {
                return;
            }
            tokio::spawn(heartbeat::renew_lease(s.clone()));
            tokio::spawn(heartbeat::report_status(s.clone()));
            tokio::spawn(relist(s.clone()));
            if !s.runtime.cri_logs() {
                tokio::spawn(logs::watch(s.clone(), LOG_MARK_PERIOD));
            }
            if s.bridge {
                tokio::spawn(network::run(s.clone()));
            }
            pods::run(s).await;
        });
        Ok(ProcessKubelet { shared, process })
    }

    /// Whether the Node is registered.
    pub fn registered(&self) -> bool {
        self.shared.registered.load(Ordering::Relaxed)
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.node_name
    }

    /// The process runtime running the node's processes (none with a CRI runtime).
    pub fn process_runtime(&self) -> Option<Arc<ProcessRuntime>> {
        self.process.clone()
    }

    /// The port the kubelet API listens on.
    pub fn port(&self) -> u16 {
        self.shared.port.load(Ordering::Relaxed)
    }
}

/// Checks the runtime's health; logs and records a change.
async fn check_runtime(shared: &Shared) {
    let now = shared.runtime.health().await;
    let before = std::mem::replace(&mut *shared.runtime_health.lock(), now.clone());
    if before.is_ok() != now.is_ok() || (before.is_err() && now.is_err() && before != now) {
        match &now {
            Ok(version) => {
                tracing::info!(node = %shared.node_name, version = %version, "container runtime is up")
            }
            Err(e) => {
                tracing::error!(node = %shared.node_name, error = %e, "container runtime is down; retrying every second")
            }
        }
    }
}

/// Lists every container of the runtime once per resync interval (the PLEG relist),
/// checks the runtime's health, and sets `kubelet_running_pods` and
/// `kubelet_running_containers` from what it finds.
async fn relist(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(shared.config.pod_resync_interval);
    let mut previous: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        check_runtime(&shared).await;
        let started = Instant::now();
        if let Some(previous) = previous.replace(started) {
            shared
                .metrics
                .pleg_relist_interval
                .observe(started.duration_since(previous).as_secs_f64());
        }
        let sandboxes = shared.runtime.list_pod_sandboxes().await;
        let listed_sandboxes = started.elapsed();
        let containers = shared.runtime.list_containers(None).await;
        // The CRI runtime counts its own calls; the relist's two are counted here
        // for the process runtime.
        if shared.config.runtime != RuntimeKind::Cri {
            let listed_containers = started.elapsed().saturating_sub(listed_sandboxes);
            for (failed, operation, took) in [
                (sandboxes.is_err(), "list_podsandbox", listed_sandboxes),
                (containers.is_err(), "list_containers", listed_containers),
            ] {
                shared
                    .metrics
                    .runtime_operation(operation, took.as_secs_f64(), failed);
            }
        }
        let (Ok(sandboxes), Ok(containers)) = (sandboxes, containers) else {
            continue;
        };
        shared
            .metrics
            .pleg_relist_duration
            .observe(started.elapsed().as_secs_f64());
        let m = &shared.metrics;
        let running: std::collections::HashSet<_> = containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.sandbox.clone())
            .collect();
        m.running_pods
            .set(sandboxes.iter().filter(|s| running.contains(&s.id)).count() as i64);
        for state in [
            ContainerState::Created,
            ContainerState::Running,
            ContainerState::Exited,
        ] {
            let n = containers.iter().filter(|c| c.state == state).count();
            m.running_containers
                .with_label_values(&[state.label()])
                .set(n as i64);
        }
    }
}
