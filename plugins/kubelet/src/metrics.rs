//! The kubelet's metrics, with upstream kubelet names where they exist.
//!
//! The process runtime exports `kubelet_node_name{node}`, `kubelet_pleg_relist_duration_seconds`,
//! `prober_probe_total{probe_type,result}` and its relist's two runtime calls in
//! `kubelet_runtime_operations_*{operation_type}` as well; the CRI runtime every CRI
//! call there and `kubelet_image_pull_duration_seconds`.
//!
//! The sim runtime does not export upstream's `kubelet_node_name{node}` (one series per
//! simulated node is too many); it exports `kubernel_kubelet_sim_nodes` instead.
//! `kubelet_evictions{eviction_signal}` stays empty: simulated nodes never come under
//! pressure.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Values of `kubelet_pod_worker_duration_seconds{operation_type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A pod seen for the first time was started.
    Create,
    /// A known pod was synced again (status rewritten or re-adopted).
    Sync,
    /// A pod was stopped and its deletion finished.
    Kill,
}

impl Operation {
    fn label(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Sync => "sync",
            Operation::Kill => "kill",
        }
    }
}

/// Every metric of one kubelet instance.
#[derive(Clone)]
pub struct Metrics {
    /// `kubelet_running_pods`: pods with a running sandbox.
    pub running_pods: IntGauge,
    /// `kubelet_running_containers{container_state}`.
    pub running_containers: IntGaugeVec,
    /// `kubelet_pod_start_duration_seconds`: first seen to reported running.
    pub pod_start_duration: Histogram,
    /// `kubelet_pod_worker_duration_seconds{operation_type}`.
    pub pod_worker_duration: HistogramVec,
    /// `kubelet_restarted_pods_total{static}`: pods whose sandbox was created again for
    /// the same uid (re-adopted after a kubelet restart or hot swap).
    pub restarted_pods: IntCounterVec,
    /// `kubelet_evictions{eviction_signal}`.
    pub evictions: IntCounterVec,
    /// `kubelet_node_name{node}`: 1, labelled with the (process runtime's) node name.
    pub node_name: IntGaugeVec,
    /// `kubelet_pleg_relist_duration_seconds`: one listing of every runtime container.
    pub pleg_relist_duration: Histogram,
    /// `kubelet_pleg_relist_interval_seconds`: time between the starts of two relists.
    pub pleg_relist_interval: Histogram,
    /// `kubelet_runtime_operations_errors_total{operation_type}`: runtime calls that
    /// failed (`list_podsandbox`, `list_containers` of the relist; every CRI call).
    pub runtime_errors: IntCounterVec,
    /// `kubelet_runtime_operations_total{operation_type}`: CRI calls made.
    pub runtime_operations: IntCounterVec,
    /// `kubelet_runtime_operations_duration_seconds{operation_type}`: how long CRI calls took.
    pub runtime_operations_duration: HistogramVec,
    /// `kubelet_image_pull_duration_seconds`: image pulls through the CRI.
    pub image_pull_duration: Histogram,
    /// `prober_probe_total{probe_type,result}`: probes run, by type and result.
    pub probes: IntCounterVec,
    /// `prober_probe_duration_seconds{probe_type}`: how long probes took (upstream also
    /// labels by pod and container; left out here to keep the series bounded).
    pub probe_duration: HistogramVec,
    /// `kubelet_http_requests_total{method,path,server_type,long_running}`: kubelet API requests.
    pub http_requests: IntCounterVec,
    /// `kubernel_kubelet_container_log_rotations_total`: container log files rotated.
    pub log_rotations: prometheus::IntCounter,
    /// `kubernel_kubelet_sim_nodes`: simulated nodes registered.
    pub sim_nodes: IntGauge,
    /// `kubernel_kubelet_sim_paused_nodes`: simulated nodes whose kubelet is paused.
    pub sim_paused_nodes: IntGauge,
    /// `kubernel_kubelet_node_lease_renewals_total{result}`: Lease renewals, `ok` or `error`.
    pub lease_renewals: IntCounterVec,
    /// `kubernel_kubelet_node_status_updates_total{result}`: NodeStatus posts, `ok` or `error`.
    pub node_status_updates: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            running_pods: IntGauge::new(
                "kubelet_running_pods",
                "Number of pods that have a running pod sandbox",
            )?,
            running_containers: IntGaugeVec::new(
                Opts::new(
                    "kubelet_running_containers",
                    "Number of containers currently running",
                ),
                &["container_state"],
            )?,
            pod_start_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pod_start_duration_seconds",
                    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
                    10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 300.0, 600.0,
                ]),
            )?,
            pod_worker_duration: HistogramVec::new(
                HistogramOpts::new(
                    "kubelet_pod_worker_duration_seconds",
                    "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0,
                ]),
                &["operation_type"],
            )?,
            restarted_pods: IntCounterVec::new(
                Opts::new(
                    "kubelet_restarted_pods_total",
                    "Number of pods that have been restarted because they were deleted and recreated with the same UID while the kubelet was watching them",
                ),
                &["static"],
            )?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "kubelet_evictions",
                    "Cumulative number of pod evictions by eviction signal",
                ),
                &["eviction_signal"],
            )?,
            node_name: IntGaugeVec::new(
                Opts::new("kubelet_node_name", "The node's name. The count is always 1."),
                &["node"],
            )?,
            pleg_relist_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pleg_relist_duration_seconds",
                    "Duration in seconds for relisting pods in PLEG.",
                )
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                ]),
            )?,
            pleg_relist_interval: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pleg_relist_interval_seconds",
                    "Interval in seconds between relisting in PLEG.",
                )
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )?,
            runtime_errors: IntCounterVec::new(
                Opts::new(
                    "kubelet_runtime_operations_errors_total",
                    "Cumulative number of runtime operation errors by operation type.",
                ),
                &["operation_type"],
            )?,
            runtime_operations: IntCounterVec::new(
                Opts::new(
                    "kubelet_runtime_operations_total",
                    "Cumulative number of runtime operations by operation type.",
                ),
                &["operation_type"],
            )?,
            runtime_operations_duration: HistogramVec::new(
                HistogramOpts::new(
                    "kubelet_runtime_operations_duration_seconds",
                    "Duration in seconds of runtime operations. Broken down by operation type.",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.5, 14)?),
                &["operation_type"],
            )?,
            image_pull_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_image_pull_duration_seconds",
                    "Duration in seconds to pull an image.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ]),
            )?,
            probes: IntCounterVec::new(
                Opts::new(
                    "prober_probe_total",
                    "Cumulative number of a liveness, readiness or startup probe for a container by result.",
                ),
                &["probe_type", "result"],
            )?,
            probe_duration: HistogramVec::new(
                HistogramOpts::new(
                    "prober_probe_duration_seconds",
                    "Duration in seconds for a probe response.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0,
                ]),
                &["probe_type"],
            )?,
            http_requests: IntCounterVec::new(
                Opts::new(
                    "kubelet_http_requests_total",
                    "Number of the http requests received since the server started",
                ),
                &["method", "path", "server_type", "long_running"],
            )?,
            log_rotations: prometheus::IntCounter::new(
                "kubernel_kubelet_container_log_rotations_total",
                "Container log files rotated because they outgrew container_log_max_size",
            )?,
            sim_nodes: IntGauge::new(
                "kubernel_kubelet_sim_nodes",
                "Number of simulated nodes this kubelet has registered",
            )?,
            sim_paused_nodes: IntGauge::new(
                "kubernel_kubelet_sim_paused_nodes",
                "Number of simulated nodes whose heartbeats and pod handling are paused",
            )?,
            lease_renewals: IntCounterVec::new(
                Opts::new(
                    "kubernel_kubelet_node_lease_renewals_total",
                    "Node Lease renewals, by result",
                ),
                &["result"],
            )?,
            node_status_updates: IntCounterVec::new(
                Opts::new(
                    "kubernel_kubelet_node_status_updates_total",
                    "NodeStatus updates posted, by result",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.running_pods.clone()))?;
        registry.register(Box::new(m.running_containers.clone()))?;
        registry.register(Box::new(m.pod_start_duration.clone()))?;
        registry.register(Box::new(m.pod_worker_duration.clone()))?;
        registry.register(Box::new(m.restarted_pods.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.node_name.clone()))?;
        registry.register(Box::new(m.pleg_relist_duration.clone()))?;
        registry.register(Box::new(m.probes.clone()))?;
        registry.register(Box::new(m.pleg_relist_interval.clone()))?;
        registry.register(Box::new(m.runtime_errors.clone()))?;
        registry.register(Box::new(m.runtime_operations.clone()))?;
        registry.register(Box::new(m.runtime_operations_duration.clone()))?;
        registry.register(Box::new(m.image_pull_duration.clone()))?;
        registry.register(Box::new(m.probe_duration.clone()))?;
        registry.register(Box::new(m.http_requests.clone()))?;
        registry.register(Box::new(m.log_rotations.clone()))?;
        registry.register(Box::new(m.sim_nodes.clone()))?;
        registry.register(Box::new(m.sim_paused_nodes.clone()))?;
        registry.register(Box::new(m.lease_renewals.clone()))?;
        registry.register(Box::new(m.node_status_updates.clone()))?;
        Ok(m)
    }

    /// Records how long one pod worker pass of `op` took.
    pub fn observe_worker(&self, op: Operation, seconds: f64) {
        self.pod_worker_duration
            .with_label_values(&[op.label()])
            .observe(seconds);
    }

    /// Counts a successful (`ok`) or failed Lease renewal.
    pub fn lease_renewed(&self, ok: bool) {
        self.lease_renewals
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Counts a successful (`ok`) or failed NodeStatus update.
    pub fn node_status_posted(&self, ok: bool) {
        self.node_status_updates
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Records one runtime call `operation` that took `seconds` and failed or not.
    pub fn runtime_operation(&self, operation: &str, seconds: f64, failed: bool) {
        self.runtime_operations
            .with_label_values(&[operation])
            .inc();
        self.runtime_operations_duration
            .with_label_values(&[operation])
            .observe(seconds);
        // The error series exists from the first call, so `increase()` sees the first error.
        let errors = self.runtime_errors.with_label_values(&[operation]);
        if failed {
            errors.inc();
        }
    }

    /// Adds `delta` to the containers in `state`.
    pub fn add_containers(&self, state: &str, delta: i64) {
        self.running_containers
            .with_label_values(&[state])
            .add(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_should_register_under_upstream_names() {
        let registry = Registry::new();
        let m = Metrics::new(&registry).expect("metrics");
        m.running_pods.set(3);
        m.add_containers("running", 2);
        m.observe_worker(Operation::Create, 0.01);
        m.lease_renewed(true);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for name in [
            "kubelet_running_pods",
            "kubelet_running_containers",
            "kubelet_pod_worker_duration_seconds",
            "kubelet_pod_start_duration_seconds",
            "kubernel_kubelet_sim_nodes",
            "kubernel_kubelet_node_lease_renewals_total",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
    }
}
