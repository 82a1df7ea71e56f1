//! The sim kubelet: one instance plays the kubelets of many simulated nodes, as KWOK
//! does — it registers them, keeps their Leases and status fresh, and runs their pods on
//! the in-memory [`SimRuntime`](crate::runtime::sim::SimRuntime).
//!
//! With `run_pods = false` the nodes are objects only: registered, Leases and status
//! kept fresh, their pods left alone (the scheduler measured by itself).
//!
//! Pausing: a node listed in `paused_nodes`, or annotated `kubernel.io/sim-paused=true`,
//! behaves as if its kubelet were down — its Lease and status go stale and its pods are
//! neither started nor finalized (a deleted pod stays `Terminating`) until it resumes.

pub mod fleet;
mod heartbeat;
mod node_watch;
mod pod_view;
mod pods;
mod register;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use kubernel_client::{CancellationToken, Client, WorkQueueMetrics};
use tokio::sync::{mpsc, Semaphore};

use crate::config::KubeletConfig;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use fleet::Fleet;

/// What every task of the sim kubelet shares.
struct Shared {
    config: KubeletConfig,
    client: Client,
    fleet: Fleet,
    runtime: Arc<dyn Runtime>,
    metrics: Metrics,
    /// Bounds the API requests in flight across all tasks (`max_in_flight`).
    limiter: Semaphore,
    shutdown: CancellationToken,
    /// Nodes registered so far.
    registered: AtomicU32,
    /// Node indexes whose status must be posted now (it changed).
    status_now: mpsc::UnboundedSender<u32>,
    /// Node indexes whose pods must be synced again (the node resumed).
    resync: mpsc::UnboundedSender<u32>,
}

impl Shared {
    /// Runs one API request once a slot among `max_in_flight` is free.
    async fn limited<T>(&self, request: impl Future<Output = T>) -> T {
        let _permit = self.limiter.acquire().await.ok();
        request.await
    }
}

/// A running sim kubelet; its tasks stop when the shutdown token is cancelled.
pub struct SimKubelet {
    shared: Arc<Shared>,
}

impl SimKubelet {
    /// Starts registering the nodes on `handle`, then heartbeats and pod handling.
    pub fn start(
        handle: &tokio::runtime::Handle,
        config: KubeletConfig,
        client: Client,
        runtime: Arc<dyn Runtime>,
        metrics: Metrics,
        queue_metrics: Option<WorkQueueMetrics>,
        shutdown: CancellationToken,
    ) -> SimKubelet {
        let fleet = Fleet::new(&config, runtime.version());
        let (status_tx, status_rx) = mpsc::unbounded_channel();
        let (resync_tx, resync_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            limiter: Semaphore::new(config.max_in_flight),
            config,
            client,
            fleet,
            runtime,
            metrics,
            shutdown,
            registered: AtomicU32::new(0),
            status_now: status_tx,
            resync: resync_tx,
        });
        let s = shared.clone();
        handle.spawn(async move {
            register::register_all(&s).await;
            if s.shutdown.is_cancelled() {
                return;
            }
            tracing::info!(nodes = s.fleet.count(), "simulated nodes registered");
            tokio::spawn(heartbeat::renew_leases(s.clone()));
            tokio::spawn(heartbeat::report_status(s.clone(), status_rx));
            tokio::spawn(node_watch::run(s.clone()));
            if s.config.run_pods {
                pods::run(s, queue_metrics, resync_rx).await;
            } else {
                tracing::info!("run_pods = false: the simulated nodes leave their pods alone");
            }
        });
        SimKubelet { shared }
    }

    /// Nodes registered so far and nodes simulated.
    pub fn registered(&self) -> (u32, u32) {
        (
            self.shared.registered.load(Ordering::Relaxed),
            self.shared.fleet.count(),
        )
    }

    /// Updates the gauges read rather than counted.
    pub fn refresh_metrics(&self) {
        let m = &self.shared.metrics;
        m.sim_nodes
            .set(i64::from(self.shared.registered.load(Ordering::Relaxed)));
        m.sim_paused_nodes
            .set(i64::try_from(self.shared.fleet.paused_count()).unwrap_or(i64::MAX));
    }
}
