//! Scheduler metrics, with the upstream kube-scheduler names and labels.
//!
//! Declared once here and registered into the `prometheus::Registry` the caller
//! passes. Hot-path handles (per profile and extension point, status Success) are
//! resolved once so that a cycle does not hash label values.

use std::time::Duration;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::framework::Code;

/// Extension points in the order of [`PointTimers`].
pub const EXTENSION_POINTS: [&str; 10] = [
    "PreFilter",
    "Filter",
    "PostFilter",
    "PreScore",
    "Score",
    "Reserve",
    "Permit",
    "PreBind",
    "Bind",
    "PostBind",
];

/// Index of an extension point in [`EXTENSION_POINTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Point {
    PreFilter,
    Filter,
    PostFilter,
    PreScore,
    Score,
    Reserve,
    Permit,
    PreBind,
    Bind,
    PostBind,
}

impl Point {
    /// The upstream label value.
    pub fn label(self) -> &'static str {
        EXTENSION_POINTS[self as usize]
    }

    /// The field of the `scheduling_cycle` span that gets this point's duration.
    pub fn span_field(self) -> &'static str {
        [
            "pre_filter_seconds",
            "filter_seconds",
            "post_filter_seconds",
            "pre_score_seconds",
            "score_seconds",
            "reserve_seconds",
            "permit_seconds",
            "pre_bind_seconds",
            "bind_seconds",
            "post_bind_seconds",
        ][self as usize]
    }
}

/// All scheduler metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `scheduler_schedule_attempts_total{result,profile}`.
    pub schedule_attempts: IntCounterVec,
    /// `scheduler_scheduling_attempt_duration_seconds{result,profile}`.
    pub attempt_duration: HistogramVec,
    /// `scheduler_pod_scheduling_sli_duration_seconds{attempts}`.
    pub sli_duration: HistogramVec,
    /// `scheduler_pending_pods{queue}`.
    pub pending_pods: IntGaugeVec,
    /// `scheduler_queue_incoming_pods_total{queue,event}`.
    pub incoming_pods: IntCounterVec,
    /// `scheduler_framework_extension_point_duration_seconds{extension_point,status,profile}`.
    pub extension_point_duration: HistogramVec,
    /// `scheduler_plugin_execution_duration_seconds{plugin,extension_point,status}`.
    pub plugin_duration: HistogramVec,
    /// `scheduler_preemption_attempts_total`.
    pub preemption_attempts: IntCounter,
    /// `scheduler_preemption_victims`.
    pub preemption_victims: Histogram,
    /// `scheduler_permit_wait_duration_seconds{result}`.
    pub permit_wait_duration: HistogramVec,
    /// `scheduler_scheduler_cache_size{type}`: `nodes`, `pods`, `assumed_pods`.
    pub cache_size: IntGaugeVec,
    /// `kubernel_scheduler_plugin_swaps_total{profile,plugin,result}`.
    pub plugin_swaps: IntCounterVec,
}

fn histogram(
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Metrics {
            schedule_attempts: IntCounterVec::new(
                Opts::new("scheduler_schedule_attempts_total", "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem."),
                &["result", "profile"],
            )?,
            attempt_duration: histogram(
                "scheduler_scheduling_attempt_duration_seconds",
                "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
                exponential_buckets(0.0001, 2.0, 18)?,
                &["result", "profile"],
            )?,
            sli_duration: histogram(
                "scheduler_pod_scheduling_sli_duration_seconds",
                "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
                exponential_buckets(0.01, 2.0, 20)?,
                &["attempts"],
            )?,
            pending_pods: IntGaugeVec::new(
                Opts::new("scheduler_pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods; 'gated' is the number of pods with scheduling gates."),
                &["queue"],
            )?,
            incoming_pods: IntCounterVec::new(
                Opts::new("scheduler_queue_incoming_pods_total", "Number of pods added to scheduling queues by event and queue type."),
                &["queue", "event"],
            )?,
            extension_point_duration: histogram(
                "scheduler_framework_extension_point_duration_seconds",
                "Latency for running all plugins of a specific extension point.",
                exponential_buckets(0.00001, 2.0, 16)?,
                &["extension_point", "status", "profile"],
            )?,
            plugin_duration: histogram(
                "scheduler_plugin_execution_duration_seconds",
                "Duration for running a plugin at a specific extension point (sampled cycles).",
                exponential_buckets(0.000001, 2.0, 20)?,
                &["plugin", "extension_point", "status"],
            )?,
            preemption_attempts: IntCounter::new(
                "scheduler_preemption_attempts_total",
                "Total preemption attempts in the cluster till now",
            )?,
            preemption_victims: Histogram::with_opts(
                HistogramOpts::new(
                    "scheduler_preemption_victims",
                    "Number of selected preemption victims",
                )
                .buckets(exponential_buckets(1.0, 2.0, 7)?),
            )?,
            permit_wait_duration: histogram(
                "scheduler_permit_wait_duration_seconds",
                "Duration of waiting on permit.",
                exponential_buckets(0.001, 2.0, 15)?,
                &["result"],
            )?,
            cache_size: IntGaugeVec::new(
                Opts::new(
                    "scheduler_scheduler_cache_size",
                    "Number of nodes, pods, and assumed (bound) pods in the scheduler cache.",
                ),
                &["type"],
            )?,
            plugin_swaps: IntCounterVec::new(
                Opts::new("kubernel_scheduler_plugin_swaps_total", "Plugin (re)configurations of a running scheduler profile, by result."),
                &["profile", "plugin", "result"],
            )?,
        };
        registry.register(Box::new(m.schedule_attempts.clone()))?;
        registry.register(Box::new(m.attempt_duration.clone()))?;
        registry.register(Box::new(m.sli_duration.clone()))?;
        registry.register(Box::new(m.pending_pods.clone()))?;
        registry.register(Box::new(m.incoming_pods.clone()))?;
        registry.register(Box::new(m.extension_point_duration.clone()))?;
        registry.register(Box::new(m.plugin_duration.clone()))?;
        registry.register(Box::new(m.preemption_attempts.clone()))?;
        registry.register(Box::new(m.preemption_victims.clone()))?;
        registry.register(Box::new(m.permit_wait_duration.clone()))?;
        registry.register(Box::new(m.cache_size.clone()))?;
        registry.register(Box::new(m.plugin_swaps.clone()))?;
        Ok(m)
    }

    /// Hot-path timers of one profile.
    pub fn point_timers(&self, profile: &str) -> PointTimers {
        let success = EXTENSION_POINTS.map(|p| {
            self.extension_point_duration
                .with_label_values(&[p, Code::Success.as_str(), profile])
        });
        PointTimers {
            success,
            all: self.extension_point_duration.clone(),
            profile: profile.to_string(),
        }
    }

    /// The gauge of one queue.
    pub fn pending(&self, queue: &str) -> IntGauge {
        self.pending_pods.with_label_values(&[queue])
    }
}

/// Extension point duration histograms of one profile.
#[derive(Clone)]
pub struct PointTimers {
    success: [Histogram; 10],
    all: HistogramVec,
    profile: String,
}

impl PointTimers {
    /// Records that `point` took `elapsed` and ended with `code`.
    pub fn observe(&self, point: Point, code: Code, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // Into the scheduling cycle's span, when it is open and exported.
        tracing::Span::current().record(point.span_field(), secs);
        if code == Code::Success {
            self.success[point as usize].observe(secs);
        } else {
            self.all
                .with_label_values(&[point.label(), code.as_str(), &self.profile])
                .observe(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_should_register_with_upstream_names() {
        let r = Registry::new();
        let m = Metrics::new(&r).expect("metrics");
        m.preemption_attempts.inc();
        m.point_timers("default-scheduler").observe(
            Point::Filter,
            Code::Error,
            Duration::from_micros(5),
        );
        m.pending("active").set(1);
        m.preemption_victims.observe(1.0);
        m.permit_wait_duration
            .with_label_values(&["Success"])
            .observe(0.01);
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [
            "scheduler_preemption_attempts_total",
            "scheduler_framework_extension_point_duration_seconds",
            "scheduler_pending_pods",
            "scheduler_preemption_victims",
            "scheduler_permit_wait_duration_seconds",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        assert!(Metrics::new(&r).is_err(), "registering twice is refused");
    }
}
