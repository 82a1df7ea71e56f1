//! The kernel's Prometheus metrics, and the merged exposition of kernel and plugin metrics.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use kubernel_abi::Status;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the kernel itself exports.
pub struct KernelMetrics {
    /// The kernel's registry (kernel and process metrics).
    pub registry: Registry,
    /// `kubernel_plugins{name,kind,version,state}`: 1 per loaded plugin.
    pub plugins: IntGaugeVec,
    /// `kubernel_plugin_restarts_total{name}`.
    pub restarts: IntCounterVec,
    /// `kubernel_plugin_swaps_total{name,result}`.
    pub swaps: IntCounterVec,
    /// `kubernel_plugin_swap_pause_seconds`: time a swapping plugin took no messages.
    pub swap_pause: Histogram,
    /// `kubernel_bus_messages_total{from,to,kind}`.
    pub bus_messages: IntCounterVec,
    /// `kubernel_bus_message_duration_seconds{to,kind}`: handling time of a message.
    pub bus_duration: HistogramVec,
    /// `kubernel_bus_message_errors_total{to,status}`: messages a plugin answered with
    /// an error status, or could not take (busy, stopped).
    pub bus_errors: IntCounterVec,
    /// `kubernel_mailbox_depth{name}`: messages queued for a plugin.
    pub mailbox_depth: IntGaugeVec,
    /// `kubernel_plugin_metrics_errors_total{name}`: plugin metrics that could not be gathered.
    pub metrics_errors: IntCounterVec,
    /// `kubernel_plugin_load_duration_seconds{name,reason}`: from loading a plugin
    /// (`start`: library and init; `restart`: init and restore of the last snapshot)
    /// to a running instance. Swaps have `kubernel_plugin_swap_pause_seconds`.
    pub load_duration: HistogramVec,
    /// `kubernel_plugin_load_failures_total{name,reason}`: restarts whose init or
    /// restore failed (a failed start ends the process; failed swaps are
    /// `kubernel_plugin_swaps_total{result="load_failed"|"rolled_back"}`).
    pub load_failures: IntCounterVec,
    /// `kubernel_config_reloads_total{result}`: changes of the watched config file,
    /// `applied` or `invalid` (kept the running config).
    pub config_reloads: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Names are constants of this file and unique, so registration cannot fail.
    let _ = r.register(Box::new(c.clone()));
    c
}

impl KernelMetrics {
    /// Creates and registers the kernel metrics and the process collector.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let micro = vec![
            1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0,
        ];
        let pause = vec![
            1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
        ];
        Ok(KernelMetrics {
            plugins: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "kubernel_plugins",
                        "Loaded plugins by name, kind, version and state (1 per plugin).",
                    ),
                    &["name", "kind", "version", "state"],
                )?,
            ),
            restarts: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kubernel_plugin_restarts_total",
                        "Restarts of plugins after a panic or fatal error.",
                    ),
                    &["name"],
                )?,
            ),
            swaps: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kubernel_plugin_swaps_total",
                        "Hot swaps of plugins by result (success, rolled_back, load_failed).",
                    ),
                    &["name", "result"],
                )?,
            ),
            swap_pause: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kubernel_plugin_swap_pause_seconds",
                        "Time a plugin took no messages during a hot swap.",
                    )
                    .buckets(pause),
                )?,
            ),
            bus_messages: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kubernel_bus_messages_total",
                        "Messages delivered through the kernel bus.",
                    ),
                    &["from", "to", "kind"],
                )?,
            ),
            bus_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "kubernel_bus_message_duration_seconds",
                        "Time a plugin took to handle a bus message.",
                    )
                    .buckets(micro),
                    &["to", "kind"],
                )?,
            ),
            bus_errors: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kubernel_bus_message_errors_total",
                        "Bus messages a plugin failed, refused or could not take, by status.",
                    ),
                    &["to", "status"],
                )?,
            ),
            mailbox_depth: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "kubernel_mailbox_depth",
                        "Messages waiting in a plugin's mailbox.",
                    ),
                    &["name"],
                )?,
            ),
            metrics_errors: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kubernel_plugin_metrics_errors_total",
                        "Plugin metrics that could not be gathered or decoded.",
                    ),
                    &["name"],
                )?,
            ),
            load_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "kubernel_plugin_load_duration_seconds",
                        "Time from loading a plugin to a running instance, by reason (start, restart).",
                    )
                    .buckets(vec![1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                    &["name", "reason"],
                )?,
            ),
            load_failures: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kubernel_plugin_load_failures_total",
                        "Plugin restarts whose init or restore failed.",
                    ),
                    &["name", "reason"],
                )?,
            ),
            config_reloads: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "kubernel_config_reloads_total",
                        "Changes of the watched config file, by result (applied, invalid).",
                    ),
                    &["result"],
                )?,
            ),
            registry: r,
        })
    }
}

impl KernelMetrics {
    /// Creates a plugin's counter series at zero, so that `increase()` sees its first restart or swap.
    pub fn init_plugin(&self, name: &str) {
        self.restarts.with_label_values(&[name]);
        self.metrics_errors.with_label_values(&[name]);
        self.load_failures.with_label_values(&[name, "restart"]);
        for result in ["success", "rolled_back", "load_failed", "refused"] {
            self.swaps.with_label_values(&[name, result]);
        }
        for status in ERROR_STATUSES {
            self.bus_errors.with_label_values(&[name, status.name()]);
        }
    }

    /// Counts one message to `to` that ended with `status` (not OK).
    pub fn count_error(&self, to: &str, status: Status) {
        self.bus_errors
            .with_label_values(&[to, status.name()])
            .inc();
    }
}

/// The statuses of a failed delivery, each a series from a plugin's start.
const ERROR_STATUSES: [Status; 8] = [
    Status::ERROR,
    Status::PANICKED,
    Status::UNKNOWN_KIND,
    Status::UNAVAILABLE,
    Status::TIMEOUT,
    Status::FATAL,
    Status::REENTRANT,
    Status::BAD_MESSAGE,
];

/// Bus metric handles of one (from, to, kind).
#[derive(Clone)]
struct MessageHandles {
    count: IntCounter,
    duration: Histogram,
}

type ByKind = HashMap<Box<str>, MessageHandles>;
type ByTo = HashMap<Box<str>, ByKind>;
type ByFrom = HashMap<Box<str>, ByTo>;

thread_local! {
    /// Handles already looked up by this thread, per `KernelMetrics` instance, so the
    /// message path takes no lock shared between threads.
    static HANDLES: RefCell<HashMap<usize, ByFrom>> = RefCell::new(HashMap::new());
}

impl KernelMetrics {
    /// Counts one message `from` -> `to` of `kind` that took `seconds` to handle.
    ///
    /// `kind` must be bounded (a kind the target handled, or `"other"`): each value
    /// becomes a series for the life of the process.
    pub fn observe_message(&self, from: &str, to: &str, kind: &str, seconds: f64) {
        let id = self as *const KernelMetrics as usize;
        HANDLES.with(|h| {
            let mut h = h.borrow_mut();
            let by_kind = h
                .entry(id)
                .or_default()
                .entry(from.into())
                .or_default()
                .entry(to.into())
                .or_default();
            let handles = match by_kind.get(kind) {
                Some(handles) => handles,
                None => by_kind
                    .entry(kind.into())
                    .or_insert_with(|| MessageHandles {
                        count: self.bus_messages.with_label_values(&[from, to, kind]),
                        duration: self.bus_duration.with_label_values(&[to, kind]),
                    }),
            };
            handles.count.inc();
            handles.duration.observe(seconds);
        });
    }
}

/// Decodes a plugin's length-delimited protobuf metric families.
pub fn decode_families(bytes: &[u8]) -> Result<Vec<MetricFamily>, protobuf::Error> {
    let mut input = protobuf::CodedInputStream::from_bytes(bytes);
    let mut families = Vec::new();
    while !input.eof()? {
        families.push(input.read_message::<MetricFamily>()?);
    }
    Ok(families)
}

/// Renders kernel and plugin families as one text exposition, merging families
/// that share a name so that each name has one HELP/TYPE block.
pub fn render(
    families: impl IntoIterator<Item = MetricFamily>,
) -> Result<String, prometheus::Error> {
    let mut merged: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for mut family in families {
        match merged.get_mut(family.name()) {
            Some(existing) if existing.get_field_type() == family.get_field_type() => {
                let metrics = family.take_metric();
                existing.mut_metric().extend(metrics);
            }
            Some(_) => {
                tracing::warn!(
                    metric = family.name(),
                    "two plugins export this metric with different types; keeping the first"
                );
            }
            None => {
                merged.insert(family.name().to_string(), family);
            }
        }
    }
    let families: Vec<MetricFamily> = merged.into_values().collect();
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
