//! Client-side metrics with upstream client-go names: REST requests and work queues.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// REST client metrics (`rest_client_*`), registered once per component registry.
#[derive(Clone)]
pub struct ClientMetrics {
    /// `rest_client_requests_total{code,method,host}`.
    pub requests: IntCounterVec,
    /// `rest_client_request_duration_seconds{verb,host}`.
    pub duration: HistogramVec,
}

impl ClientMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "rest_client_requests_total",
                "Number of HTTP requests, partitioned by status code, method, and host.",
            ),
            &["code", "method", "host"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "rest_client_request_duration_seconds",
                "Request latency in seconds. Broken down by verb, and host.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["verb", "host"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(ClientMetrics { requests, duration })
    }
}

/// Work queue metrics (`workqueue_*{name}`), shared by every queue of a component.
#[derive(Clone)]
pub struct WorkQueueMetrics {
    /// `workqueue_depth{name}`.
    pub depth: IntGaugeVec,
    /// `workqueue_adds_total{name}`.
    pub adds: IntCounterVec,
    /// `workqueue_retries_total{name}`.
    pub retries: IntCounterVec,
    /// `workqueue_queue_duration_seconds{name}`.
    pub queue_duration: HistogramVec,
    /// `workqueue_work_duration_seconds{name}`.
    pub work_duration: HistogramVec,
    /// `workqueue_unfinished_work_seconds{name}`.
    pub unfinished_work: prometheus::GaugeVec,
    /// `workqueue_longest_running_processor_seconds{name}`.
    pub longest_running: prometheus::GaugeVec,
}

impl WorkQueueMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = prometheus::exponential_buckets(1e-8, 10.0, 10)?;
        let m = WorkQueueMetrics {
            depth: IntGaugeVec::new(
                Opts::new("workqueue_depth", "Current depth of workqueue"),
                &["name"],
            )?,
            adds: IntCounterVec::new(
                Opts::new("workqueue_adds_total", "Total number of adds handled by workqueue"),
                &["name"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "workqueue_retries_total",
                    "Total number of retries handled by workqueue",
                ),
                &["name"],
            )?,
            queue_duration: HistogramVec::new(
                HistogramOpts::new(
                    "workqueue_queue_duration_seconds",
                    "How long in seconds an item stays in workqueue before being requested.",
                )
                .buckets(buckets.clone()),
                &["name"],
            )?,
            work_duration: HistogramVec::new(
                HistogramOpts::new(
                    "workqueue_work_duration_seconds",
                    "How long in seconds processing an item from workqueue takes.",
                )
                .buckets(buckets),
                &["name"],
            )?,
            unfinished_work: prometheus::GaugeVec::new(
                Opts::new(
                    "workqueue_unfinished_work_seconds",
                    "How many seconds of work has been done that is in progress and hasn't been observed by work_duration.",
                ),
                &["name"],
            )?,
            longest_running: prometheus::GaugeVec::new(
                Opts::new(
                    "workqueue_longest_running_processor_seconds",
                    "How many seconds has the longest running processor for workqueue been running.",
                ),
                &["name"],
            )?,
        };
        registry.register(Box::new(m.depth.clone()))?;
        registry.register(Box::new(m.adds.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.queue_duration.clone()))?;
        registry.register(Box::new(m.work_duration.clone()))?;
        registry.register(Box::new(m.unfinished_work.clone()))?;
        registry.register(Box::new(m.longest_running.clone()))?;
        Ok(m)
    }
}
