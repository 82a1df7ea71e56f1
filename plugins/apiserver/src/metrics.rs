//! The apiserver's metrics, with kube-apiserver's names and labels.

use kubernel_sdk::prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every apiserver metric (cheap to clone: handles to the registered collectors).
#[derive(Clone)]
pub struct Metrics {
    /// The embedded store's commit loop: `kubernel_store_commit_duration_seconds`,
    /// `kubernel_store_commit_batch_writes`, `kubernel_store_commit_failures_total`.
    pub commit: crate::store::embedded::CommitMetrics,
    /// The watch cache's events in and out, dropped watchers and apply duration.
    pub watch_cache: crate::store::CacheMetrics,
    /// `apiserver_request_total{verb,group,version,resource,subresource,scope,component,code}`.
    pub requests: IntCounterVec,
    /// `apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope,component}`.
    pub request_duration: HistogramVec,
    /// `apiserver_current_inflight_requests{request_kind}` (`readOnly`, `mutating`).
    pub inflight: IntGaugeVec,
    /// API Priority and Fairness: `apiserver_flowcontrol_*`.
    pub flow_control: crate::flowcontrol::FlowMetrics,
    /// `apiserver_longrunning_requests{verb,group,version,resource,subresource,scope,component}`.
    pub longrunning: IntGaugeVec,
    /// `apiserver_watch_events_total{kind}`.
    pub watch_events: IntCounterVec,
    /// `apiserver_storage_objects{resource}`.
    pub storage_objects: IntGaugeVec,
    /// `apiserver_storage_db_total_size_in_bytes{storage_cluster_id}`.
    pub db_size: IntGaugeVec,
    /// `etcd_request_duration_seconds{operation,type}` (kept for the embedded store so dashboards work).
    pub storage_duration: HistogramVec,
    /// `apiserver_admission_controller_admission_duration_seconds{name,operation,rejected,type}`.
    pub admission_duration: HistogramVec,
    /// `apiserver_storage_revision` (kubernel): the store's current revision.
    pub revision: IntGauge,
    /// `apiserver_request_body_size_bytes` (kubernel): request body sizes.
    pub body_size: Histogram,
    /// `apiserver_authentication_attempts{result}` (`success`, `failure`, `error`).
    pub authentication_attempts: IntCounterVec,
    /// `authenticated_user_requests{username}`: requests by user, the name compressed
    /// as upstream does to keep the label bounded.
    pub authenticated_user_requests: IntCounterVec,
    /// `apiserver_authorization_decisions_total{decision}` (`allowed`, `denied`).
    pub authorization_decisions: IntCounterVec,
    /// `apiserver_tls_handshake_errors_total`.
    pub tls_handshake_errors: IntCounter,
    /// `apiserver_audit_event_total`: audit events generated and sent to the log.
    pub audit_events: IntCounter,
    /// `apiserver_audit_error_total{plugin}`: audit events dropped or not written.
    pub audit_errors: IntCounterVec,
}

const REQUEST_LABELS: &[&str] = &[
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];

impl Metrics {
    /// Creates the metrics and registers them in the plugin's registry.
    pub fn new(registry: &Registry) -> Result<Metrics, kubernel_sdk::prometheus::Error> {
        let mut code_labels = REQUEST_LABELS.to_vec();
        code_labels.push("code");
        let latency = vec![
            0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0,
            8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
        ];
        let m = Metrics {
            commit: crate::store::embedded::CommitMetrics::registered(registry)?,
            watch_cache: crate::store::CacheMetrics::registered(registry)?,
            requests: IntCounterVec::new(
                Opts::new("apiserver_request_total", "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code."),
                &code_labels,
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new("apiserver_request_duration_seconds", "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.").buckets(latency),
                REQUEST_LABELS,
            )?,
            flow_control: crate::flowcontrol::FlowMetrics::new(registry)?,
            inflight: IntGaugeVec::new(
                Opts::new("apiserver_current_inflight_requests", "Maximal number of currently used inflight request limit of this apiserver per request kind in last second."),
                &["request_kind"],
            )?,
            longrunning: IntGaugeVec::new(
                Opts::new("apiserver_longrunning_requests", "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component."),
                REQUEST_LABELS,
            )?,
            watch_events: IntCounterVec::new(
                Opts::new("apiserver_watch_events_total", "Number of events sent in watch clients"),
                &["kind"],
            )?,
            storage_objects: IntGaugeVec::new(
                Opts::new("apiserver_storage_objects", "Number of stored objects at the time of last check split by kind."),
                &["resource"],
            )?,
            db_size: IntGaugeVec::new(
                Opts::new("apiserver_storage_db_total_size_in_bytes", "Total size of the storage database file physically allocated in bytes."),
                &["storage_cluster_id"],
            )?,
            storage_duration: HistogramVec::new(
                HistogramOpts::new("etcd_request_duration_seconds", "Etcd request latency in seconds for each operation and object type.")
                    .buckets(exponential_buckets(0.0001, 2.0, 18)?),
                &["operation", "type"],
            )?,
            admission_duration: HistogramVec::new(
                HistogramOpts::new("apiserver_admission_controller_admission_duration_seconds", "Admission controller latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit).")
                    .buckets(vec![0.005, 0.025, 0.1, 0.5, 1.0, 2.5]),
                &["name", "operation", "rejected", "type"],
            )?,
            revision: IntGauge::new("apiserver_storage_revision", "Current revision of the apiserver's store.")?,
            body_size: Histogram::with_opts(
                HistogramOpts::new("apiserver_request_body_size_bytes", "Size of request bodies.").buckets(exponential_buckets(64.0, 4.0, 10)?),
            )?,
            authenticated_user_requests: IntCounterVec::new(
                Opts::new("authenticated_user_requests", "Counter of authenticated requests broken out by username."),
                &["username"],
            )?,
            authentication_attempts: IntCounterVec::new(
                Opts::new("apiserver_authentication_attempts", "Counter of authenticated attempts."),
                &["result"],
            )?,
            authorization_decisions: IntCounterVec::new(
                Opts::new("apiserver_authorization_decisions_total", "Total number of terminal decisions made by an authorizer split by decision."),
                &["decision"],
            )?,
            tls_handshake_errors: IntCounter::new("apiserver_tls_handshake_errors_total", "Number of requests dropped with 'TLS handshake error from' error")?,
            audit_events: IntCounter::new("apiserver_audit_event_total", "Counter of audit events generated and sent to the audit backend.")?,
            audit_errors: IntCounterVec::new(
                Opts::new("apiserver_audit_error_total", "Counter of audit events that failed to be audited properly. Plugin identifies the plugin affected by the error."),
                &["plugin"],
            )?,
        };
        registry.register(Box::new(m.audit_events.clone()))?;
        registry.register(Box::new(m.audit_errors.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.authentication_attempts.clone()))?;
        registry.register(Box::new(m.authenticated_user_requests.clone()))?;
        registry.register(Box::new(m.authorization_decisions.clone()))?;
        registry.register(Box::new(m.tls_handshake_errors.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.inflight.clone()))?;
        registry.register(Box::new(m.longrunning.clone()))?;
        registry.register(Box::new(m.watch_events.clone()))?;
        registry.register(Box::new(m.storage_objects.clone()))?;
        registry.register(Box::new(m.db_size.clone()))?;
        registry.register(Box::new(m.storage_duration.clone()))?;
        registry.register(Box::new(m.admission_duration.clone()))?;
        registry.register(Box::new(m.revision.clone()))?;
        registry.register(Box::new(m.body_size.clone()))?;
        Ok(m)
    }
}

/// The `username` label of `authenticated_user_requests`, as upstream compresses it:
/// a few known internal names as they are, e-mail addresses as `email_id`, the rest
/// as `other`.
pub fn compress_username(name: &str) -> &str {
    match name {
        "admin"
        | "client"
        | "kube_proxy"
        | "kubelet"
        | "system:serviceaccount:kube-system:default" => name,
        n if n.contains('@') => "email_id",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn usernames_should_be_compressed_as_upstream() {
        assert_eq!(super::compress_username("admin"), "admin");
        assert_eq!(super::compress_username("alice@example.com"), "email_id");
        assert_eq!(
            super::compress_username("system:serviceaccount:default:robot"),
            "other"
        );
    }
}
