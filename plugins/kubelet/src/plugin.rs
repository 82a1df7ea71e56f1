//! The kubelet as a kernel plugin: builds its async runtime and API client, starts the
//! configured runtime's node agent, and stops it on quiesce or shutdown.

use std::sync::Arc;
use std::time::Duration;

use kubernel_client::{BusLink, CancellationToken, Client, ClientMetrics, WorkQueueMetrics};
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply, SharedHandler};

use crate::config::{KubeletConfig, RuntimeKind};
use crate::metrics::Metrics;
use crate::node::ProcessKubelet;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::sim::SimRuntime;
use crate::sim::SimKubelet;

/// The kubelet plugin instance.
pub struct Kubelet {
    ctx: Context,
    config: KubeletConfig,
    metrics: Metrics,
    client_metrics: ClientMetrics,
    queue_metrics: WorkQueueMetrics,
    bus: Arc<BusLink>,
    running: Option<Running>,
    /// The process runtime of a stopped (quiesced) process agent: its processes still
    /// run until `shutdown` kills them, unless `snapshot` handed them to a successor.
    parked: Option<Arc<ProcessRuntime>>,
}

/// The node agent while it runs.
struct Running {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    agent: Agent,
}

/// The node agent of the configured runtime.
enum Agent {
    Sim(SimKubelet),
    Process(ProcessKubelet),
}

impl Kubelet {
    fn start(&mut self) -> Result<(), PluginError> {
        let kernel_dir = self.ctx.data_dir().parent();
        self.tls_bootstrap()?;
        let client = Client::for_plugin(
            &self.config.client,
            &self.bus,
            kernel_dir,
            Some(self.client_metrics.clone()),
        )
        .map_err(|e| PluginError::failed(format!("kubelet: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.config.worker_threads)
            .thread_name("kubelet")
            .enable_all()
            .build()
            .map_err(|e| PluginError::failed(format!("starting the kubelet runtime: {e}")))?;
        let shutdown = self.ctx.shutdown_signal().child_token();
        let agent = match self.config.runtime {
            RuntimeKind::Sim => {
                tracing::info!(
                    nodes = self.config.nodes,
                    prefix = %self.config.node_name_prefix,
                    "kubelet started (sim runtime)"
                );
                Agent::Sim(SimKubelet::start(
                    runtime.handle(),
                    self.config.clone(),
                    client,
                    Arc::new(SimRuntime::default()),
                    self.metrics.clone(),
                    Some(self.queue_metrics.clone()),
                    shutdown.clone(),
                ))
            }
            RuntimeKind::Process | RuntimeKind::Cri => {
                let root = self
                    .config
                    .root_dir
                    .clone()
                    .unwrap_or_else(|| self.ctx.data_dir().join("pods"));
                let agent = ProcessKubelet::start(
                    runtime.handle(),
                    self.config.clone(),
                    client,
                    root.clone(),
                    self.metrics.clone(),
                    shutdown.clone(),
                )
                .map_err(PluginError::failed)?;
                tracing::info!(
                    node = %agent.node_name(),
                    port = agent.port(),
                    root = %root.display(),
                    network = if self.config.bridge_network() { "bridge" } else { "host" },
                    runtime = if self.config.runtime == RuntimeKind::Cri { self.config.runtime_endpoint.as_str() } else { "process" },
                    "kubelet started"
                );
                Agent::Process(agent)
            }
        };
        self.running = Some(Running {
            runtime,
            shutdown,
            agent,
        });
        Ok(())
    }

    /// Runs the TLS bootstrap when a bootstrap kubeconfig is set and the kubeconfig
    /// does not exist yet (see [`crate::bootstrap`]); the plugin starts once the
    /// certificate is issued.
    fn tls_bootstrap(&self) -> Result<(), PluginError> {
        let Some(bootstrap) = &self.config.bootstrap_kubeconfig else {
            return Ok(());
        };
        let target = &self.config.client.kubeconfig;
        if target.as_os_str().is_empty() {
            return Err(PluginError::failed(
                "config: key bootstrap_kubeconfig needs client.kubeconfig: the path the kubelet's own kubeconfig is written to",
            ));
        }
        if target.exists() {
            return Ok(());
        }
        let node = self
            .config
            .node_name
            .clone()
            .unwrap_or_else(crate::node::machine::hostname);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PluginError::failed(format!("TLS bootstrap runtime: {e}")))?;
        runtime
            .block_on(crate::bootstrap::ensure(
                bootstrap,
                target,
                &node,
                self.config.tls_bootstrap_timeout,
            ))
            .map_err(|e| PluginError::failed(format!("kubelet TLS bootstrap: {e}")))
    }

    fn stop(&mut self, deadline: Duration) {
        if let Some(r) = self.running.take() {
            if let Agent::Process(p) = &r.agent {
                self.parked = p.process_runtime();
            }
            r.shutdown.cancel();
            r.runtime.shutdown_timeout(deadline);
        }
    }
}

impl Plugin for Kubelet {
    type Config = KubeletConfig;

    fn init(ctx: Context, config: KubeletConfig) -> Result<Self, PluginError> {
        config.validate().map_err(PluginError::failed)?;
        let metrics = Metrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let client_metrics = ClientMetrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let queue_metrics = WorkQueueMetrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let mut kubelet = Kubelet {
            bus: BusLink::new(ctx.clone()),
            ctx,
            config,
            metrics,
            client_metrics,
            queue_metrics,
            running: None,
            parked: None,
        };
        kubelet.start()?;
        Ok(kubelet)
    }

    /// The apiserver's answers and watch events, taken off the mailbox without the
    /// instance's exclusive lock.
    fn shared(&self) -> Option<Arc<dyn SharedHandler>> {
        Some(self.bus.clone())
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        if let Some(delivered) = self.bus.deliver(msg) {
            return delivered;
        }
        Err(PluginError::UnknownKind(msg.kind.to_string()))
    }

    fn quiesce(&mut self, deadline: Duration) -> Result<(), PluginError> {
        self.stop(deadline);
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PluginError> {
        // The new runtime re-adopts the parked one's processes.
        if let Some(rt) = self.parked.take() {
            rt.detach();
        }
        self.start()
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        // A successor takes over (hot swap): leave the processes to it.
        if let Some(rt) = &self.parked {
            rt.detach();
        }
        Ok(Vec::new())
    }

    fn refresh_metrics(&mut self) {
        if let Some(Running {
            agent: Agent::Sim(sim),
            ..
        }) = &self.running
        {
            sim.refresh_metrics();
        }
    }

    fn ready(&self) -> Result<(), String> {
        match &self.running {
            None => Err("not running".into()),
            Some(r) => match &r.agent {
                Agent::Sim(sim) => match sim.registered() {
                    (done, all) if done >= all => Ok(()),
                    (done, all) => Err(format!("{done} of {all} simulated nodes registered")),
                },
                Agent::Process(p) if p.registered() => Ok(()),
                Agent::Process(p) => Err(format!("node {} not registered yet", p.node_name())),
            },
        }
    }

    fn shutdown(mut self) {
        self.stop(Duration::from_secs(5));
        // Kills the processes unless a successor adopted them.
        self.parked = None;
    }
}
