//! The controller-manager's metrics, with kube-controller-manager's names.

use kubernel_client::WorkQueueMetrics;
use prometheus::{
    exponential_buckets, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry,
};

/// Every metric of the controller-manager; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// `workqueue_*{name}` of every controller's queue.
    pub workqueue: WorkQueueMetrics,
    /// `node_collector_evictions_total{zone}`: nodes tainted NoExecute (pods evicted from them).
    pub evictions: IntCounterVec,
    /// `node_collector_zone_health{zone}`: percentage of Ready nodes in a zone.
    pub zone_health: GaugeVec,
    /// `node_collector_zone_size{zone}`: nodes in a zone.
    pub zone_size: IntGaugeVec,
    /// `node_collector_unhealthy_nodes_in_zone{zone}`: not-Ready nodes in a zone.
    pub unhealthy_nodes: IntGaugeVec,
    /// `node_collector_update_all_nodes_health_duration_seconds`: one monitor pass over every node.
    pub monitor_duration: Histogram,
    /// `node_collector_update_node_health_duration_seconds`: one node's health update.
    pub node_health_duration: Histogram,
    /// `kubernel_node_lifecycle_errors_total{operation}`: failed node health (`health`)
    /// and taint (`taints`) updates of the monitor loop.
    pub node_lifecycle_errors: IntCounterVec,
    /// `taint_eviction_controller_pod_deletions_total`: pods deleted for a NoExecute taint.
    pub pod_deletions: IntCounter,
    /// `garbagecollector_controller_resources_sync_error_total`: failed lists and watches of the GC's informers.
    pub gc_sync_errors: IntCounter,
    /// `node_ipam_controller_cidrset_*`, when pod CIDRs are allocated.
    pub ipam: Option<crate::nodeipam::IpamMetrics>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            workqueue: WorkQueueMetrics::new(registry)?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "node_collector_evictions_total",
                    "Number of Node evictions that happened since current instance of NodeController started.",
                ),
                &["zone"],
            )?,
            zone_health: GaugeVec::new(
                Opts::new(
                    "node_collector_zone_health",
                    "Gauge measuring percentage of healthy nodes per zone.",
                ),
                &["zone"],
            )?,
            zone_size: IntGaugeVec::new(
                Opts::new(
                    "node_collector_zone_size",
                    "Gauge measuring number of registered Nodes per zones.",
                ),
                &["zone"],
            )?,
            unhealthy_nodes: IntGaugeVec::new(
                Opts::new(
                    "node_collector_unhealthy_nodes_in_zone",
                    "Gauge measuring number of not Ready Nodes per zones.",
                ),
                &["zone"],
            )?,
            monitor_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "node_collector_update_all_nodes_health_duration_seconds",
                    "Duration in seconds for NodeController to update the health of all nodes.",
                )
                .buckets(exponential_buckets(0.01, 4.0, 8)?),
            )?,
            node_health_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "node_collector_update_node_health_duration_seconds",
                    "Duration in seconds for NodeController to update the health of a single node.",
                )
                .buckets(exponential_buckets(0.001, 4.0, 8)?),
            )?,
            node_lifecycle_errors: IntCounterVec::new(
                Opts::new(
                    "kubernel_node_lifecycle_errors_total",
                    "Failed node health and taint updates of the node lifecycle controller, by operation.",
                ),
                &["operation"],
            )?,
            pod_deletions: IntCounter::new(
                "taint_eviction_controller_pod_deletions_total",
                "Total number of Pods deleted by TaintEvictionController since its start.",
            )?,
            gc_sync_errors: IntCounter::new(
                "garbagecollector_controller_resources_sync_error_total",
                "Number of garbage collector resources sync errors",
            )?,
            ipam: Some(crate::nodeipam::IpamMetrics::new(registry)?),
        };
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.zone_health.clone()))?;
        registry.register(Box::new(m.zone_size.clone()))?;
        registry.register(Box::new(m.unhealthy_nodes.clone()))?;
        registry.register(Box::new(m.monitor_duration.clone()))?;
        registry.register(Box::new(m.node_health_duration.clone()))?;
        registry.register(Box::new(m.node_lifecycle_errors.clone()))?;
        for operation in ["health", "taints"] {
            m.node_lifecycle_errors.with_label_values(&[operation]);
        }
        registry.register(Box::new(m.pod_deletions.clone()))?;
        registry.register(Box::new(m.gc_sync_errors.clone()))?;
        Ok(m)
    }
}
