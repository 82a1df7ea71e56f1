//! The proxy's metrics: kube-proxy's sync metrics and the userspace proxy's connections.

use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry,
};

/// Every metric of the proxy; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// `kubeproxy_sync_proxy_rules_duration_seconds`.
    pub sync_duration: Histogram,
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`.
    pub last_sync: Gauge,
    /// `kubeproxy_network_programming_duration_seconds`: from an EndpointSlice's
    /// `endpoints.kubernetes.io/last-change-trigger-time` to the change being served.
    pub programming: Histogram,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_total`.
    pub endpoint_changes: IntCounter,
    /// `kubeproxy_sync_proxy_rules_service_changes_total`.
    pub service_changes: IntCounter,
    /// `kubernel_proxy_connections_total{service,endpoint}`.
    pub connections: IntCounterVec,
    /// `kubernel_proxy_active_connections{service,endpoint}`.
    pub active: IntGaugeVec,
    /// `kubernel_proxy_connect_errors_total{service}`: connects to an endpoint that failed.
    pub connect_errors: IntCounterVec,
    /// `kubernel_proxy_sync_failures_total`: syncs that failed (in nftables mode
    /// upstream's `kubeproxy_sync_proxy_rules_nftables_sync_failures_total`); each is
    /// followed by a full sync.
    pub sync_failures: IntCounter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            sync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubeproxy_sync_proxy_rules_duration_seconds",
                    "SyncProxyRules latency in seconds",
                )
                .buckets(exponential_buckets(0.001, 2.0, 15)?),
            )?,
            last_sync: Gauge::new(
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                "The last time proxy rules were successfully synced",
            )?,
            programming: Histogram::with_opts(
                HistogramOpts::new(
                    "kubeproxy_network_programming_duration_seconds",
                    "In Cluster Network Programming Latency in seconds",
                )
                .buckets(exponential_buckets(0.001, 2.0, 20)?),
            )?,
            endpoint_changes: IntCounter::new(
                "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                "Cumulative proxy rules Endpoint changes",
            )?,
            service_changes: IntCounter::new(
                "kubeproxy_sync_proxy_rules_service_changes_total",
                "Cumulative proxy rules Service changes",
            )?,
            connections: IntCounterVec::new(
                Opts::new(
                    "kubernel_proxy_connections_total",
                    "Connections the userspace proxy forwarded, by Service port and endpoint",
                ),
                &["service", "endpoint"],
            )?,
            active: IntGaugeVec::new(
                Opts::new(
                    "kubernel_proxy_active_connections",
                    "Connections open through the userspace proxy, by Service port and endpoint",
                ),
                &["service", "endpoint"],
            )?,
            connect_errors: IntCounterVec::new(
                Opts::new(
                    "kubernel_proxy_connect_errors_total",
                    "Connections to an endpoint that could not be opened, by Service port",
                ),
                &["service"],
            )?,
            sync_failures: IntCounter::new(
                "kubernel_proxy_sync_failures_total",
                "Proxy rule syncs that failed (the next sync is a full one)",
            )?,
        };
        registry.register(Box::new(m.sync_duration.clone()))?;
        registry.register(Box::new(m.last_sync.clone()))?;
        registry.register(Box::new(m.programming.clone()))?;
        registry.register(Box::new(m.endpoint_changes.clone()))?;
        registry.register(Box::new(m.service_changes.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.connect_errors.clone()))?;
        registry.register(Box::new(m.sync_failures.clone()))?;
        Ok(m)
    }
}
