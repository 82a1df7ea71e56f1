//! Starts the enabled controllers over shared informers once this instance leads,
//! and stops them when it loses the lease.

use std::path::PathBuf;
use std::sync::Arc;

use kubernel_client::{
    CancellationToken, Client, ClientMetrics, EventRecorder, LeaderElection, LeaderElectionConfig,
    WorkQueue,
};
use parking_lot::Mutex;
use prometheus::Registry;

use crate::config::ControllerManagerConfig;
use crate::informers::Informers;
use crate::metrics::Metrics;
use crate::objectmetrics::ObjectMetrics;
use crate::{
    certificates, clusterroleaggregation, deployment, disruption, endpoints, endpointslice,
    garbagecollector, namespace, nodeipam, nodelifecycle, replicaset, resourcequota,
    rootcacertpublisher, serviceaccount, tainteviction,
};

/// Starts one controller: subscribes to informers and spawns its workers.
type Starter = fn(&ControllerContext, &mut Informers);

/// What every controller gets: the API client, config, metrics and its stop signal.
#[derive(Clone)]
pub struct ControllerContext {
    /// The API client.
    pub client: Client,
    /// The kernel's data dir (its `pki/` holds the cluster CA), when known.
    pub kernel_data_dir: Option<PathBuf>,
    /// The plugin config.
    pub config: Arc<ControllerManagerConfig>,
    /// Metrics.
    pub metrics: Metrics,
    /// Writes Events as `controller-manager`.
    pub recorder: EventRecorder,
    /// Cancelled when the controllers must stop.
    pub shutdown: CancellationToken,
    queues: Arc<Mutex<Vec<WorkQueue<String>>>>,
}

impl ControllerContext {
    /// A work queue named `name` (the `name` label of the `workqueue_*` metrics).
    pub fn queue(&self, name: &str) -> WorkQueue<String> {
        let q = WorkQueue::new(name, Some(self.metrics.workqueue.clone()));
        self.queues.lock().push(q.clone());
        q
    }
}

/// Everything the manager task needs.
pub struct Manager {
    /// The plugin config.
    pub config: Arc<ControllerManagerConfig>,
    /// Metrics.
    pub metrics: Metrics,
    /// REST client metrics.
    pub client_metrics: ClientMetrics,
    /// The plugin's registry (for `leader_election_master_status`).
    pub registry: Registry,
    /// The kernel's data dir, where the apiserver writes `admin.kubeconfig`.
    pub kernel_data_dir: Option<PathBuf>,
    /// The queues of the running controllers (for `refresh_metrics`).
    pub queues: Arc<Mutex<Vec<WorkQueue<String>>>>,
    /// True once the leader-election gauge is registered (it survives restarts).
    pub election_registered: Arc<std::sync::atomic::AtomicBool>,
    /// The `kube_*` object metrics, read from the leader's informers.
    pub objects: ObjectMetrics,
}

impl Manager {
    /// Connects, campaigns when leader election is on, and runs the controllers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(client) = self.connect(&shutdown).await else {
            return;
        };
        let le = &self.config.leader_election;
        if !le.leader_elect {
            self.start_controllers(&client, shutdown);
            return;
        }
        let registered = self
            .election_registered
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        let election = LeaderElection::start(
            client.clone(),
            LeaderElectionConfig {
                namespace: le.resource_namespace.clone(),
                name: le.resource_name.clone(),
                identity: identity(),
                lease_duration: le.lease_duration,
                retry_period: le.retry_period,
            },
            (!registered).then_some(&self.registry),
            shutdown.clone(),
        );
        let election = match election {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "leader election could not start");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = election.wait_leading() => {}
            }
            tracing::info!(lease = %le.resource_name, "leading: starting controllers");
            let term = shutdown.child_token();
            self.start_controllers(&client, term.clone());
            while election.is_leader() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(le.retry_period) => {}
                }
            }
            tracing::warn!(lease = %le.resource_name, "lost the lease: stopping controllers");
            self.objects.forget();
            term.cancel();
        }
    }

    /// Builds the client, retrying until the apiserver's kubeconfig exists.
    async fn connect(&self, shutdown: &CancellationToken) -> Option<Client> {
        Client::connect(
            &self.config.client,
            self.kernel_data_dir.as_deref(),
            Some(self.client_metrics.clone()),
            shutdown,
        )
        .await
    }

    fn start_controllers(&self, client: &Client, shutdown: CancellationToken) {
        self.queues.lock().clear();
        let ctx = ControllerContext {
            client: client.clone(),
            kernel_data_dir: self.kernel_data_dir.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            recorder: EventRecorder::new(client.clone(), "controller-manager", ""),
            shutdown: shutdown.clone(),
            queues: self.queues.clone(),
        };
        let mut informers = Informers::new(client.clone(), shutdown);
        let starters: [(&str, Starter); 16] = [
            ("replicaset-controller", replicaset::start),
            ("deployment-controller", deployment::start),
            ("garbage-collector-controller", garbagecollector::start),
            ("namespace-controller", namespace::start),
            ("serviceaccount-controller", serviceaccount::start),
            (
                "root-ca-certificate-publisher-controller",
                rootcacertpublisher::start,
            ),
            ("node-lifecycle-controller", nodelifecycle::start),
            ("taint-eviction-controller", tainteviction::start),
            ("endpoints-controller", endpoints::start),
            ("endpointslice-controller", endpointslice::start),
            ("resourcequota-controller", resourcequota::start),
            ("node-ipam-controller", nodeipam::start),
            ("disruption-controller", disruption::start),
            (
                "clusterrole-aggregation-controller",
                clusterroleaggregation::start,
            ),
            (
                "certificatesigningrequest-approving-controller",
                certificates::start_approver,
            ),
            (
                "certificatesigningrequest-signing-controller",
                certificates::start_signer,
            ),
        ];
        for (name, start) in starters {
            if self.config.enabled(name) {
                start(&ctx, &mut informers);
                tracing::info!(controller = name, "controller started");
            }
        }
        self.objects.watch(&mut informers);
        informers.start();
    }
}

/// This candidate's `holderIdentity`: host name, process id and start time.
fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kubernel".into());
    format!(
        "{host}_{}_{:x}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    )
}
