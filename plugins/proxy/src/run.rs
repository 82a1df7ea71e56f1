//! The proxy's loop: informers on Services and EndpointSlices; after every batch of
//! changes (and every `sync_period`) the desired state is recomputed and applied.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubernel_client::{
    Api, CancellationToken, Change, Client, ClientMetrics, Informer, ListParams,
};
use tracing::{error, info, warn};

use crate::cluster_ips::ClusterIpDevice;
use crate::config::{ClusterIps, Mode, ProxyConfig};
use crate::metrics::Metrics;
use crate::model;
use crate::nftables::NftProxier;
use crate::userspace::{Changes, Proxier};

/// Where the proxy programs Service traffic.
enum Backend {
    Userspace(Proxier),
    Nft(NftProxier),
}

impl Backend {
    /// Applies `desired`; `full` rewrites everything (on start and every `sync_period`).
    fn sync(
        &mut self,
        desired: &std::collections::BTreeMap<model::ServicePortName, model::ServicePort>,
        full: bool,
    ) -> Result<Changes, String> {
        match self {
            Backend::Userspace(p) => Ok(p.sync(desired)),
            Backend::Nft(p) if full => p.sync_full(desired),
            Backend::Nft(p) => p.sync(desired),
        }
    }

    fn close(&mut self) {
        match self {
            Backend::Userspace(p) => p.close(),
            Backend::Nft(p) => p.close(),
        }
    }
}

/// The annotation the EndpointSlice controller sets to the time of the pod or
/// Service change a slice reflects (the start of network programming latency).
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Everything the loop needs.
pub struct Proxy {
    /// The plugin config.
    pub config: Arc<ProxyConfig>,
    /// Metrics.
    pub metrics: Metrics,
    /// REST client metrics.
    pub client_metrics: ClientMetrics,
    /// The plugin's link to an apiserver in the process.
    pub bus: Arc<kubernel_client::BusLink>,
    /// The kernel's data dir, where the apiserver writes `admin.kubeconfig`.
    pub kernel_data_dir: Option<PathBuf>,
    /// Unix time of the last successful sync (for `/healthz`).
    pub last_sync: Arc<AtomicI64>,
}

impl Proxy {
    /// Connects, syncs until `stop`, then closes every listener.
    pub async fn run(self, stop: CancellationToken) {
        let Some(client) = self.connect(&stop).await else {
            return;
        };
        let (services, mut svc_changes) = Informer::start(
            Api::<Service>::all(client.clone()),
            ListParams::default(),
            stop.clone(),
        );
        let (slices, mut slice_changes) = Informer::start(
            Api::<EndpointSlice>::all(client),
            ListParams::default(),
            stop.clone(),
        );
        services.wait_synced().await;
        slices.wait_synced().await;
        let mut proxier = match self.config.mode {
            Mode::Nftables => {
                let mut nft = NftProxier::in_process(self.config.scheduler).unwrap_or_else(|e| {
                    warn!(error = %e, "libnftables cannot be used; running the nft command per change");
                    NftProxier::new(vec!["nft".into()], self.config.scheduler)
                });
                if let Err(e) = nft.check() {
                    error!(error = %e, "mode nftables: nft cannot run here; nothing is proxied");
                    return;
                }
                Backend::Nft(nft)
            }
            _ => Backend::Userspace(Proxier::new(
                self.config.clone(),
                self.metrics.clone(),
                tokio::runtime::Handle::current(),
                stop.clone(),
                self.cluster_ip_device(),
            )),
        };
        let mut triggers: Vec<jiff::Timestamp> = Vec::new();
        let mut full = true;
        loop {
            let started = Instant::now();
            let desired = model::build(&services.list(), &slices.list());
            let changes = match proxier.sync(&desired, full) {
                Ok(c) => c,
                Err(e) => {
                    // The next sync rewrites everything.
                    warn!(error = %e, "sync failed; retrying with a full sync");
                    self.metrics.sync_failures.inc();
                    full = true;
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            full = false;
            self.metrics
                .sync_duration
                .observe(started.elapsed().as_secs_f64());
            self.metrics.service_changes.inc_by(changes.services);
            self.metrics.endpoint_changes.inc_by(changes.endpoints);
            let now = jiff::Timestamp::now();
            self.metrics
                .last_sync
                .set(now.as_millisecond() as f64 / 1000.0);
            self.last_sync.store(now.as_second(), Ordering::Relaxed);
            for t in triggers.drain(..) {
                let latency = now.duration_since(t).as_secs_f64();
                if latency >= 0.0 {
                    self.metrics.programming.observe(latency);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.config.sync_period) => full = true,
                c = svc_changes.recv() => if c.is_none() { break },
                c = slice_changes.recv() => match c {
                    Some(change) => note_trigger(&change, &mut triggers),
                    None => break,
                },
            }
            // Take every change that arrived meanwhile: one sync applies them all.
            tokio::time::sleep(Duration::from_millis(5)).await;
            while svc_changes.try_recv().is_ok() {}
            while let Ok(change) = slice_changes.try_recv() {
                note_trigger(&change, &mut triggers);
            }
        }
        proxier.close();
        info!("proxy stopped: listeners closed");
    }

    fn cluster_ip_device(&self) -> Option<ClusterIpDevice> {
        if self.config.cluster_ips == ClusterIps::False {
            return None;
        }
        if !is_root() {
            info!("not running as root: ClusterIPs are not bound locally, only NodePorts are served (cluster_ips = \"auto\")");
            return None;
        }
        match ClusterIpDevice::create() {
            Ok(d) => Some(d),
            Err(e) => {
                warn!(error = %e, "cannot create the kube-ipvs0 dummy interface; only NodePorts are served");
                None
            }
        }
    }

    /// Builds the client, retrying until the apiserver's kubeconfig exists.
    async fn connect(&self, stop: &CancellationToken) -> Option<Client> {
        Client::connect_plugin(
            &self.config.client,
            &self.bus,
            self.kernel_data_dir.as_deref(),
            Some(self.client_metrics.clone()),
            stop,
        )
        .await
    }
}

fn note_trigger(change: &Change<EndpointSlice>, triggers: &mut Vec<jiff::Timestamp>) {
    let slice = match change {
        Change::Added(s) | Change::Updated { new: s, .. } => s,
        _ => return,
    };
    let at = slice
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRIGGER_TIME))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    if let Some(at) = at {
        triggers.push(at);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
