//! The node lifecycle controller: every NodeMonitorPeriod it checks each node's
//! heartbeats (its Lease and Ready condition); after NodeMonitorGracePeriod of
//! silence the node becomes Ready=Unknown. Not-ready and unreachable nodes get
//! the NoSchedule taints at once and the NoExecute taints at each zone's
//! eviction rate; taints leave when the node is Ready again.

mod taints;
mod zones;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubernel_client::{Api, Cache, Client, ClientError, Patch};
use serde_json::json;

use crate::config::ControllerManagerConfig;
use crate::informers::Informers;
use crate::manager::ControllerContext;
use crate::metrics::Metrics;
use crate::pods::now;

use taints::{current_key, ready_status, wanted_key, with_taint};
pub use taints::{NOT_READY, UNREACHABLE};
use zones::{zone_state, ZoneQueue, ZoneState};

/// Conditions set to Unknown when a node stops reporting.
const KUBELET_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Why updating a node failed. The next pass retries.
#[derive(Debug, thiserror::Error)]
#[error("node {node}: {source}")]
pub struct NodeError {
    /// The node.
    pub node: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

/// What the controller remembers of a node's heartbeats.
struct Health {
    /// When a heartbeat last changed, by this controller's clock.
    probed: Instant,
    lease_renewed: Option<String>,
    status_heartbeat: Option<String>,
}

struct NodeLifecycle {
    client: Client,
    config: std::sync::Arc<ControllerManagerConfig>,
    metrics: Metrics,
    nodes: Cache<Node>,
    leases: Cache<Lease>,
    health: HashMap<String, Health>,
    queues: HashMap<String, ZoneQueue>,
}

/// Starts the controller's monitor loop.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let mut controller = NodeLifecycle {
        client: ctx.client.clone(),
        config: ctx.config.clone(),
        metrics: ctx.metrics.clone(),
        nodes: informers.cache::<Node>(),
        leases: informers.cache::<Lease>(),
        health: HashMap::new(),
        queues: HashMap::new(),
    };
    let shutdown = ctx.shutdown.clone();
    let period = ctx.config.node_monitor_period;
    tokio::spawn(async move {
        controller.nodes.wait_synced().await;
        controller.leases.wait_synced().await;
        loop {
            controller.monitor().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    });
}

/// The zone of a node (upstream's zone key: region and zone labels).
fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    if region.is_empty() {
        zone
    } else {
        format!("{region}:\u{0}:{zone}")
    }
}

impl NodeLifecycle {
    /// One pass over every node.
    async fn monitor(&mut self) {
        let pass = std::time::Instant::now();
        let nodes = self.nodes.list();
        self.health.retain(|name, _| {
            nodes
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(name))
        });
        let mut per_zone: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut statuses = Vec::new();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let started = std::time::Instant::now();
            let checked = self.check_health(&node).await;
            self.metrics
                .node_health_duration
                .observe(started.elapsed().as_secs_f64());
            let status = match checked {
                Ok(s) => s,
                Err(e) => {
                    self.metrics
                        .node_lifecycle_errors
                        .with_label_values(&["health"])
                        .inc();
                    tracing::warn!(node = %name, error = %e, "node health update failed");
                    ready_status(&node).to_string()
                }
            };
            let counts = per_zone.entry(zone_of(&node)).or_default();
            if status == "True" {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            statuses.push((node, status));
        }
        let states = self.zone_states(&per_zone);
        for (node, status) in &statuses {
            if let Err(e) = self.sync_taints(node, status).await {
                self.metrics
                    .node_lifecycle_errors
                    .with_label_values(&["taints"])
                    .inc();
                tracing::warn!(error = %e, "node taint update failed");
            }
        }
        self.evict(&states).await;
        self.metrics
            .monitor_duration
            .observe(pass.elapsed().as_secs_f64());
    }

    /// Marks the node Unknown after the grace period without heartbeats; returns its Ready status.
    async fn check_health(&mut self, node: &Node) -> Result<String, NodeError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = self
            .leases
            .get(&format!("kube-node-lease/{name}"))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
            });
        let heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()));
        let health = self.health.entry(name.clone()).or_insert_with(|| Health {
            probed: Instant::now(),
            lease_renewed: lease.clone(),
            status_heartbeat: heartbeat.clone(),
        });
        if health.lease_renewed != lease || health.status_heartbeat != heartbeat {
            health.probed = Instant::now();
            health.lease_renewed = lease;
            health.status_heartbeat = heartbeat;
        }
        let status = ready_status(node).to_string();
        if health.probed.elapsed() <= self.config.node_monitor_grace_period
            || status == "Unknown" && all_unknown(node)
        {
            return Ok(status);
        }
        tracing::info!(node = %name, grace = ?self.config.node_monitor_grace_period, "node stopped posting status: Ready=Unknown");
        let t = Time(now());
        let mut conditions: Vec<NodeCondition> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for type_ in KUBELET_CONDITIONS {
            let unknown = NodeCondition {
                type_: type_.to_string(),
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                last_transition_time: Some(t.clone()),
                last_heartbeat_time: None,
            };
            match conditions.iter_mut().find(|c| c.type_ == *type_) {
                Some(c) if c.status == "Unknown" => {}
                Some(c) => {
                    *c = NodeCondition {
                        last_heartbeat_time: c.last_heartbeat_time.clone(),
                        ..unknown
                    };
                }
                None if *type_ == "Ready" => conditions.push(unknown),
                None => {}
            }
        }
        let mut updated = node.clone();
        updated
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(conditions);
        Api::<Node>::all(self.client.clone())
            .replace_status(&name, &updated)
            .await
            .map_err(|source| NodeError { node: name, source })?;
        Ok("Unknown".into())
    }

    /// Zone states from (ready, not ready) counts, exported as metrics.
    fn zone_states(
        &mut self,
        per_zone: &BTreeMap<String, (usize, usize)>,
    ) -> HashMap<String, ZoneState> {
        let mut states = HashMap::new();
        for (zone, (ready, not_ready)) in per_zone {
            let total = ready + not_ready;
            let health = if total == 0 {
                100.0
            } else {
                100.0 * *ready as f64 / total as f64
            };
            self.metrics
                .zone_health
                .with_label_values(&[zone])
                .set(health);
            self.metrics
                .zone_size
                .with_label_values(&[zone])
                .set(total as i64);
            self.metrics
                .unhealthy_nodes
                .with_label_values(&[zone])
                .set(*not_ready as i64);
            states.insert(
                zone.clone(),
                zone_state(*ready, *not_ready, self.config.unhealthy_zone_threshold),
            );
        }
        states
    }

    /// NoSchedule taints follow the Ready status at once; a NoExecute taint is
    /// swapped or removed at once, and a new one waits for its zone's turn.
    async fn sync_taints(&mut self, node: &Node, status: &str) -> Result<(), NodeError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let want = wanted_key(status);
        let zone = zone_of(node);
        let mut noexec = current_key(node, "NoExecute");
        match (want, noexec) {
            (w, c) if w == c => {}
            (None, Some(_)) | (Some(_), Some(_)) => noexec = want,
            (Some(_), None) => self.queues.entry(zone.clone()).or_default().push(&name),
            (None, None) => {}
        }
        if want.is_none() {
            if let Some(q) = self.queues.get_mut(&zone) {
                q.remove(&name);
            }
        }
        let mut taints = node.clone();
        if current_key(node, "NoSchedule") != want {
            let t = with_taint(node, "NoSchedule", want, now());
            taints.spec.get_or_insert_with(Default::default).taints = Some(t);
        }
        if current_key(node, "NoExecute") != noexec {
            let t = with_taint(&taints, "NoExecute", noexec, now());
            taints.spec.get_or_insert_with(Default::default).taints = Some(t);
        }
        if taints.spec != node.spec {
            tracing::info!(node = %name, ready = status, taint = ?want, "updating node lifecycle taints");
            self.write_taints(&name, &taints).await?;
        }
        Ok(())
    }

    async fn write_taints(&self, name: &str, node: &Node) -> Result<(), NodeError> {
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
        Api::<Node>::all(self.client.clone())
            .patch(name, &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|source| NodeError {
                node: name.to_string(),
                source,
            })
    }

    /// Taints the queued nodes NoExecute at each zone's rate.
    async fn evict(&mut self, states: &HashMap<String, ZoneState>) {
        let all_full =
            !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
        let cluster_size = self.nodes.len();
        let at = Instant::now();
        let zones: Vec<String> = self.queues.keys().cloned().collect();
        for zone in zones {
            let rate = match states.get(&zone).copied().unwrap_or(ZoneState::Normal) {
                _ if all_full => 0.0,
                ZoneState::PartialDisruption
                    if cluster_size <= self.config.large_cluster_size_threshold =>
                {
                    0.0
                }
                ZoneState::PartialDisruption => self.config.secondary_node_eviction_rate,
                ZoneState::Normal | ZoneState::FullDisruption => self.config.node_eviction_rate,
            };
            let due = self
                .queues
                .get_mut(&zone)
                .map(|q| q.take(rate, at))
                .unwrap_or_default();
            for name in due {
                let Some(node) = self.nodes.get(&name) else {
                    continue;
                };
                let Some(key) = wanted_key(ready_status(&node)) else {
                    continue;
                };
                if current_key(&node, "NoExecute").is_some() {
                    continue;
                }
                let mut tainted = (*node).clone();
                tainted.spec.get_or_insert_with(Default::default).taints =
                    Some(with_taint(&node, "NoExecute", Some(key), now()));
                match self.write_taints(&name, &tainted).await {
                    Ok(()) => {
                        tracing::info!(node = %name, zone = %zone, taint = key, "tainted node NoExecute: its pods will be evicted");
                        self.metrics.evictions.with_label_values(&[&zone]).inc();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NoExecute taint failed; retrying next pass");
                        self.queues.entry(zone.clone()).or_default().push(&name);
                    }
                }
            }
        }
    }
}

/// True when every kubelet condition the node has is already Unknown.
fn all_unknown(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_none_or(|cs| {
            cs.iter()
                .filter(|c| KUBELET_CONDITIONS.contains(&c.type_.as_str()))
                .all(|c| c.status == "Unknown")
        })
}
