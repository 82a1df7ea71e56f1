//! Client-side metrics with upstream client-go names: REST requests and work queues;
//! and kubernel's informer lists and watch restarts (client-go exports none).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// REST client metrics (`rest_client_*`), registered once per component registry.
#[derive(Clone)]
pub struct ClientMetrics {
    /// `rest_client_requests_total{code,method,host}`.
    pub requests: IntCounterVec,
    /// `rest_client_request_duration_seconds{verb,host}`.
    pub duration: HistogramVec,
    /// `kubernel_informer_lists_total{resource,result}`: informer lists (the first
    /// one and every relist), `success` or `error`.
    pub informer_lists: IntCounterVec,
    /// `kubernel_informer_list_duration_seconds{resource}`: one informer list.
    pub informer_list_duration: HistogramVec,
    /// `kubernel_informer_watch_restarts_total{resource,reason}`: watches begun again
    /// after the server closed one (`closed`), its revision expired (`expired`, a
    /// relist follows) or it failed (`failed`).
    pub informer_watch_restarts: IntCounterVec,
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
        let informer_lists = IntCounterVec::new(
            Opts::new(
                "kubernel_informer_lists_total",
                "Lists made by informers (the first and every relist), by resource and result.",
            ),
            &["resource", "result"],
        )?;
        let informer_list_duration = HistogramVec::new(
            HistogramOpts::new(
                "kubernel_informer_list_duration_seconds",
                "Duration of one informer list, by resource.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["resource"],
        )?;
        let informer_watch_restarts = IntCounterVec::new(
            Opts::new(
                "kubernel_informer_watch_restarts_total",
                "Informer watches begun again, by resource and reason (closed, expired, failed).",
            ),
            &["resource", "reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(informer_lists.clone()))?;
        registry.register(Box::new(informer_list_duration.clone()))?;
        registry.register(Box::new(informer_watch_restarts.clone()))?;
        Ok(ClientMetrics {
            requests,
            duration,
            informer_lists,
            informer_list_duration,
            informer_watch_restarts,
        })
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
