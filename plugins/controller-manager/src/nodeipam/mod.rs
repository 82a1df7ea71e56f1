//! The node IPAM controller (`--allocate-node-cidrs`): gives every Node without one a
//! pod CIDR (`spec.podCIDR`, `spec.podCIDRs`) cut from the cluster CIDR, so each
//! kubelet assigns its pods addresses that no other node uses; a deleted Node's CIDR
//! is free again. CIDRs the Nodes already have (set by this controller before a
//! restart, or by a kubelet) are taken first.

mod cidrs;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kubernel_client::{Api, Cache, Change, Client, ClientError, Patch};
use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde_json::json;

pub use cidrs::{Cidr, CidrSet};

use crate::controller::{on_change, run_workers, Action};
use crate::informers::Informers;
use crate::manager::ControllerContext;

/// Why a Node could not get a pod CIDR. Retrying helps once a CIDR is free or the
/// apiserver answers.
#[derive(Debug, thiserror::Error)]
pub enum NodeIpamError {
    /// Every subnet of the cluster CIDR is taken.
    #[error("node {node}: no pod CIDR left in {cluster}")]
    Exhausted {
        /// The Node.
        node: String,
        /// The cluster CIDR.
        cluster: Cidr,
    },
    /// Writing the Node failed.
    #[error("node {node}: writing its pod CIDR: {source}")]
    Api {
        /// The Node.
        node: String,
        /// The failed request.
        #[source]
        source: ClientError,
    },
}

/// `node_ipam_controller_cidrset_*` (upstream names).
#[derive(Clone)]
pub struct IpamMetrics {
    allocations: IntCounterVec,
    releases: IntCounterVec,
    usage: IntGaugeVec,
}

impl IpamMetrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> prometheus::Result<IpamMetrics> {
        let m = IpamMetrics {
            allocations: IntCounterVec::new(
                Opts::new(
                    "node_ipam_controller_cidrset_cidrs_allocations_total",
                    "Counter measuring total number of CIDR allocations.",
                ),
                &["clusterCIDR"],
            )?,
            releases: IntCounterVec::new(
                Opts::new(
                    "node_ipam_controller_cidrset_cidrs_releases_total",
                    "Counter measuring total number of CIDR releases.",
                ),
                &["clusterCIDR"],
            )?,
            usage: IntGaugeVec::new(
                Opts::new(
                    "node_ipam_controller_cidrset_usage_cidrs",
                    "Gauge measuring the number of pod CIDRs in use.",
                ),
                &["clusterCIDR"],
            )?,
        };
        registry.register(Box::new(m.allocations.clone()))?;
        registry.register(Box::new(m.releases.clone()))?;
        registry.register(Box::new(m.usage.clone()))?;
        Ok(m)
    }
}

struct NodeIpam {
    client: Client,
    nodes: Cache<Node>,
    set: Arc<Mutex<CidrSet>>,
    metrics: Option<IpamMetrics>,
}

fn pod_cidr(node: &Node) -> Option<Cidr> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .and_then(|c| c.parse().ok())
}

/// Starts the controller when `allocate_node_cidrs` is on.
pub fn start(ctx: &ControllerContext, informers: &mut Informers) {
    let config = &ctx.config;
    if !config.allocate_node_cidrs {
        return;
    }
    let set = match config
        .cluster_cidr
        .parse::<Cidr>()
        .and_then(|c| CidrSet::new(c, config.node_cidr_mask_size))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "node IPAM: cluster_cidr; no pod CIDRs are allocated");
            return;
        }
    };
    let label = set.cluster().to_string();
    let set = Arc::new(Mutex::new(set));
    let (nodes, changes) = informers.subscribe::<Node>();
    let queue = ctx.queue("node_ipam");
    let (q, released, metrics) = (queue.clone(), set.clone(), ctx.metrics.ipam.clone());
    let release_label = label.clone();
    on_change(changes, ctx.shutdown.clone(), move |change| match change {
        Change::Added(n) | Change::Updated { new: n, .. } => {
            if pod_cidr(&n).is_none() {
                q.add(n.metadata.name.clone().unwrap_or_default());
            }
        }
        Change::Deleted(n) => {
            if let Some(c) = pod_cidr(&n) {
                let mut s = released.lock();
                s.release(c);
                if let Some(m) = &metrics {
                    m.releases.with_label_values(&[&release_label]).inc();
                    m.usage
                        .with_label_values(&[&release_label])
                        .set(i64::try_from(s.usage().0).unwrap_or(0));
                }
            }
        }
        Change::Synced => {}
    });
    let controller = Arc::new(NodeIpam {
        client: ctx.client.clone(),
        nodes,
        set,
        metrics: ctx.metrics.ipam.clone(),
    });
    let shutdown = ctx.shutdown.clone();
    let workers = ctx.config.concurrent_syncs;
    tokio::spawn(async move {
        controller.nodes.wait_synced().await;
        {
            let mut set = controller.set.lock();
            for node in controller.nodes.list() {
                if let Some(c) = pod_cidr(&node) {
                    if !set.occupy(c) {
                        tracing::info!(node = node.metadata.name.as_deref().unwrap_or_default(), cidr = %c, "node IPAM: a pod CIDR outside the cluster CIDR is left as it is");
                    }
                }
            }
            controller.observe(&set, &label, false);
        }
        run_workers(
            "node_ipam",
            queue,
            workers,
            shutdown,
            move |name: String| {
                let c = controller.clone();
                let label = label.clone();
                async move { c.sync(&name, &label).await }
            },
        );
    });
}

impl NodeIpam {
    fn observe(&self, set: &CidrSet, label: &str, allocated: bool) {
        if let Some(m) = &self.metrics {
            if allocated {
                m.allocations.with_label_values(&[label]).inc();
            }
            m.usage
                .with_label_values(&[label])
                .set(i64::try_from(set.usage().0).unwrap_or(0));
        }
    }

    async fn sync(&self, name: &str, label: &str) -> Result<Action, NodeIpamError> {
        let Some(node) = self.nodes.get(name) else {
            return Ok(Action::AwaitChange);
        };
        if pod_cidr(&node).is_some() {
            return Ok(Action::AwaitChange);
        }
        let cidr = {
            let mut set = self.set.lock();
            let cidr = set.allocate().ok_or_else(|| NodeIpamError::Exhausted {
                node: name.to_string(),
                cluster: set.cluster(),
            })?;
            self.observe(&set, label, true);
            cidr
        };
        let patch =
            json!({ "spec": { "podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()] } });
        match Api::<Node>::all(self.client.clone())
            .patch(name, &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = name, cidr = %cidr, "node IPAM: pod CIDR assigned");
                Ok(Action::AwaitChange)
            }
            Err(e) => {
                let mut set = self.set.lock();
                set.release(cidr);
                self.observe(&set, label, false);
                if e.is_not_found() {
                    return Ok(Action::AwaitChange);
                }
                Err(NodeIpamError::Api {
                    node: name.to_string(),
                    source: e,
                })
            }
        }
    }
}
