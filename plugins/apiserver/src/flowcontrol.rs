//! API Priority and Fairness, reduced to what a lab cluster needs: kube-apiserver's
//! default flow schemas sort each request into a priority level by its user and
//! resource; each level serves a fixed number of requests at once (its share of
//! `max_requests_inflight + max_mutating_requests_inflight`) and queues the rest.
//! So the scheduler's bindings and the kubelets' status writes keep their own seats
//! however many writes users send, and a burst waits for a seat instead of
//! getting 429 at once.
//!
//! Differences from upstream, on purpose: the configuration is built in (no
//! `FlowSchema` or `PriorityLevelConfiguration` objects to edit), each level has one
//! FIFO queue instead of shuffle-sharded fair queues per flow, seats are not borrowed
//! between levels, and every request takes one seat (a list is not weighed by its
//! size). A request waits at most `flow_control_queue_wait` for its seat; past
//! that, or when its level's queue is full, it gets upstream's 429.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubernel_sdk::prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{UserInfo, MASTERS};
use crate::request::RequestInfo;
use crate::status::ApiError;

/// Upstream's default priority levels (`PriorityLevelConfiguration`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityLevel {
    /// Never limited (`system:masters`).
    Exempt,
    /// Kubelets' requests other than heartbeats.
    System,
    /// Kubelets' heartbeats: node status and node leases.
    NodeHigh,
    /// Leader election of the controller-manager and the scheduler.
    LeaderElection,
    /// The controller-manager and the scheduler.
    WorkloadHigh,
    /// Service accounts.
    WorkloadLow,
    /// Every other authenticated or anonymous user.
    GlobalDefault,
    /// Whatever matched nothing else.
    CatchAll,
}

impl PriorityLevel {
    const ALL: [PriorityLevel; 8] = [
        PriorityLevel::Exempt,
        PriorityLevel::System,
        PriorityLevel::NodeHigh,
        PriorityLevel::LeaderElection,
        PriorityLevel::WorkloadHigh,
        PriorityLevel::WorkloadLow,
        PriorityLevel::GlobalDefault,
        PriorityLevel::CatchAll,
    ];

    /// The level's name, as upstream's object.
    pub fn name(self) -> &'static str {
        match self {
            PriorityLevel::Exempt => "exempt",
            PriorityLevel::System => "system",
            PriorityLevel::NodeHigh => "node-high",
            PriorityLevel::LeaderElection => "leader-election",
            PriorityLevel::WorkloadHigh => "workload-high",
            PriorityLevel::WorkloadLow => "workload-low",
            PriorityLevel::GlobalDefault => "global-default",
            PriorityLevel::CatchAll => "catch-all",
        }
    }

    /// Upstream's `nominalConcurrencyShares`; 0 for the unlimited exempt level.
    fn shares(self) -> usize {
        match self {
            PriorityLevel::Exempt => 0,
            PriorityLevel::System => 30,
            PriorityLevel::NodeHigh => 40,
            PriorityLevel::LeaderElection => 10,
            PriorityLevel::WorkloadHigh => 40,
            PriorityLevel::WorkloadLow => 100,
            PriorityLevel::GlobalDefault => 20,
            PriorityLevel::CatchAll => 5,
        }
    }

    /// Requests that may wait for a seat: upstream's `queues * queueLengthLimit`;
    /// 0 rejects at once (catch-all's `Reject`).
    fn queue_capacity(self) -> usize {
        match self {
            PriorityLevel::Exempt | PriorityLevel::CatchAll => 0,
            PriorityLevel::LeaderElection => 16 * 50,
            PriorityLevel::WorkloadLow | PriorityLevel::GlobalDefault => 128 * 50,
            _ => 64 * 50,
        }
    }
}

/// Upstream's default flow schemas, in matching precedence, each with its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowSchema {
    /// `system:masters`.
    Exempt,
    /// The controller-manager's and scheduler's leases (and endpoints, config maps) in `kube-system`.
    SystemLeaderElection,
    /// `system:nodes` on nodes and `kube-node-lease` leases.
    SystemNodeHigh,
    /// `system:nodes` on anything else.
    SystemNodes,
    /// `system:kube-controller-manager`.
    KubeControllerManager,
    /// `system:kube-scheduler`.
    KubeScheduler,
    /// Service accounts of `kube-system`.
    KubeSystemServiceAccounts,
    /// Other service accounts.
    ServiceAccounts,
    /// `system:authenticated` and `system:unauthenticated`.
    GlobalDefault,
    /// Everything else.
    CatchAll,
}

impl FlowSchema {
    const ALL: [FlowSchema; 10] = [
        FlowSchema::Exempt,
        FlowSchema::SystemLeaderElection,
        FlowSchema::SystemNodeHigh,
        FlowSchema::SystemNodes,
        FlowSchema::KubeControllerManager,
        FlowSchema::KubeScheduler,
        FlowSchema::KubeSystemServiceAccounts,
        FlowSchema::ServiceAccounts,
        FlowSchema::GlobalDefault,
        FlowSchema::CatchAll,
    ];

    /// The schema's name, as upstream's object.
    pub fn name(self) -> &'static str {
        match self {
            FlowSchema::Exempt => "exempt",
            FlowSchema::SystemLeaderElection => "system-leader-election",
            FlowSchema::SystemNodeHigh => "system-node-high",
            FlowSchema::SystemNodes => "system-nodes",
            FlowSchema::KubeControllerManager => "kube-controller-manager",
            FlowSchema::KubeScheduler => "kube-scheduler",
            FlowSchema::KubeSystemServiceAccounts => "kube-system-service-accounts",
            FlowSchema::ServiceAccounts => "service-accounts",
            FlowSchema::GlobalDefault => "global-default",
            FlowSchema::CatchAll => "catch-all",
        }
    }

    /// The priority level the schema sends its requests to.
    pub fn level(self) -> PriorityLevel {
        match self {
            FlowSchema::Exempt => PriorityLevel::Exempt,
            FlowSchema::SystemLeaderElection => PriorityLevel::LeaderElection,
            FlowSchema::SystemNodeHigh => PriorityLevel::NodeHigh,
            FlowSchema::SystemNodes => PriorityLevel::System,
            FlowSchema::KubeControllerManager
            | FlowSchema::KubeScheduler
            | FlowSchema::KubeSystemServiceAccounts => PriorityLevel::WorkloadHigh,
            FlowSchema::ServiceAccounts => PriorityLevel::WorkloadLow,
            FlowSchema::GlobalDefault => PriorityLevel::GlobalDefault,
            FlowSchema::CatchAll => PriorityLevel::CatchAll,
        }
    }

    /// The first default schema matching a request of `user` (the rules of
    /// upstream's defaults, as far as kubernel has their subjects and resources).
    pub fn classify(user: &UserInfo, info: &RequestInfo) -> FlowSchema {
        let in_group = |g: &str| user.groups.iter().any(|x| x == g);
        let resource = info.resource.plural;
        if in_group(MASTERS) {
            return FlowSchema::Exempt;
        }
        let controller = matches!(
            user.name.as_str(),
            "system:kube-controller-manager" | "system:kube-scheduler"
        );
        if controller
            && info.namespace == "kube-system"
            && matches!(resource, "leases" | "endpoints" | "configmaps")
            && matches!(info.verb.as_str(), "get" | "create" | "update")
        {
            return FlowSchema::SystemLeaderElection;
        }
        if in_group("system:nodes") {
            let heartbeat = resource == "nodes"
                || (resource == "leases" && info.namespace == "kube-node-lease");
            return if heartbeat {
                FlowSchema::SystemNodeHigh
            } else {
                FlowSchema::SystemNodes
            };
        }
        match user.name.as_str() {
            "system:kube-controller-manager" => return FlowSchema::KubeControllerManager,
            "system:kube-scheduler" => return FlowSchema::KubeScheduler,
            name if name.starts_with("system:serviceaccount:kube-system:") => {
                return FlowSchema::KubeSystemServiceAccounts
            }
            _ => {}
        }
        if in_group("system:serviceaccounts") {
            FlowSchema::ServiceAccounts
        } else if in_group("system:authenticated") || in_group("system:unauthenticated") {
            FlowSchema::GlobalDefault
        } else {
            FlowSchema::CatchAll
        }
    }
}

/// Upstream's `apiserver_flowcontrol_*` metrics, resolved per schema up front.
#[derive(Clone)]
pub struct FlowMetrics {
    in_queue: IntGaugeVec,
    executing: IntGaugeVec,
    dispatched: IntCounterVec,
    rejected: IntCounterVec,
    wait: HistogramVec,
    nominal_seats: IntGaugeVec,
}

impl FlowMetrics {
    /// Makes and registers the metrics.
    pub fn new(registry: &Registry) -> Result<FlowMetrics, kubernel_sdk::prometheus::Error> {
        let labels = ["flow_schema", "priority_level"];
        let m = FlowMetrics {
            in_queue: IntGaugeVec::new(
                Opts::new("apiserver_flowcontrol_current_inqueue_requests", "Number of requests currently pending in queues of the API Priority and Fairness subsystem"),
                &labels,
            )?,
            executing: IntGaugeVec::new(
                Opts::new("apiserver_flowcontrol_current_executing_requests", "Number of requests in initial (for a WATCH) or any (for a non-WATCH) execution stage in the API Priority and Fairness subsystem"),
                &labels,
            )?,
            dispatched: IntCounterVec::new(
                Opts::new("apiserver_flowcontrol_dispatched_requests_total", "Number of requests executed by API Priority and Fairness subsystem"),
                &labels,
            )?,
            rejected: IntCounterVec::new(
                Opts::new("apiserver_flowcontrol_rejected_requests_total", "Number of requests rejected by API Priority and Fairness subsystem"),
                &["flow_schema", "priority_level", "reason"],
            )?,
            wait: HistogramVec::new(
                HistogramOpts::new("apiserver_flowcontrol_request_wait_duration_seconds", "Length of time a request spent waiting in its queue")
                    .buckets(exponential_buckets(0.0001, 4.0, 10)?),
                &["flow_schema", "priority_level", "execute"],
            )?,
            nominal_seats: IntGaugeVec::new(
                Opts::new("apiserver_flowcontrol_nominal_limit_seats", "Nominal number of execution seats configured for each priority level"),
                &["priority_level"],
            )?,
        };
        registry.register(Box::new(m.in_queue.clone()))?;
        registry.register(Box::new(m.executing.clone()))?;
        registry.register(Box::new(m.dispatched.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.wait.clone()))?;
        registry.register(Box::new(m.nominal_seats.clone()))?;
        Ok(m)
    }
}

/// One schema's metric handles.
struct SchemaMetrics {
    in_queue: IntGauge,
    executing: IntGauge,
    dispatched: IntCounter,
    waited: kubernel_sdk::prometheus::Histogram,
}

/// One priority level's seats and queue.
struct Level {
    seats: Arc<Semaphore>,
    /// Requests waiting for a seat.
    waiting: AtomicUsize,
}

/// The priority levels of one apiserver.
pub struct FlowControl {
    levels: Vec<Level>,
    schemas: Vec<SchemaMetrics>,
    /// For the series resolved only when used: refusals, waits that timed out.
    metrics: FlowMetrics,
    queue_wait: Duration,
}

/// A request's seat: held while it runs.
pub struct Seat {
    _permit: Option<OwnedSemaphorePermit>,
    executing: IntGauge,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.executing.dec();
    }
}

/// Counts a queued request out however its wait ends.
struct Queued<'a> {
    level: &'a Level,
    gauge: &'a IntGauge,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.level.waiting.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

/// Seats of each level out of `server_limit` (upstream's `NominalCL`:
/// `ceil(server_limit * shares / sum of shares)`).
pub fn nominal_seats(server_limit: usize, level: PriorityLevel) -> usize {
    let total: usize = PriorityLevel::ALL.iter().map(|l| l.shares()).sum();
    (server_limit * level.shares()).div_ceil(total)
}

impl FlowControl {
    /// Levels sharing `server_limit` seats; a request waits at most `queue_wait`.
    pub fn new(server_limit: usize, queue_wait: Duration, metrics: &FlowMetrics) -> FlowControl {
        let levels = PriorityLevel::ALL
            .iter()
            .map(|&l| {
                let seats = nominal_seats(server_limit, l);
                metrics
                    .nominal_seats
                    .with_label_values(&[l.name()])
                    .set(seats as i64);
                Level {
                    seats: Arc::new(Semaphore::new(seats.max(1))),
                    waiting: AtomicUsize::new(0),
                }
            })
            .collect();
        let schemas = FlowSchema::ALL
            .iter()
            .map(|s| {
                let labels = [s.name(), s.level().name()];
                if s.level() != PriorityLevel::Exempt {
                    // Zero until the first refusal, so a dashboard has a series to show.
                    for reason in ["queue-full", "time-out", "concurrency-limit"] {
                        metrics
                            .rejected
                            .with_label_values(&[s.name(), s.level().name(), reason]);
                    }
                }
                SchemaMetrics {
                    in_queue: metrics.in_queue.with_label_values(&labels),
                    executing: metrics.executing.with_label_values(&labels),
                    dispatched: metrics.dispatched.with_label_values(&labels),
                    waited: metrics
                        .wait
                        .with_label_values(&[s.name(), s.level().name(), "true"]),
                }
            })
            .collect();
        FlowControl {
            levels,
            schemas,
            metrics: metrics.clone(),
            queue_wait,
        }
    }

    /// A seat for a request of `schema`, after waiting in its level's queue if
    /// every seat is taken; 429 when the queue is full or the wait too long.
    pub async fn admit(&self, schema: FlowSchema) -> Result<Seat, ApiError> {
        let level_id = schema.level();
        let m = &self.schemas[schema as usize];
        let seat = |permit| {
            m.dispatched.inc();
            m.executing.inc();
            Seat {
                _permit: permit,
                executing: m.executing.clone(),
            }
        };
        if level_id == PriorityLevel::Exempt {
            return Ok(seat(None));
        }
        let level = &self.levels[level_id as usize];
        if let Ok(permit) = level.seats.clone().try_acquire_owned() {
            m.waited.observe(0.0);
            return Ok(seat(Some(permit)));
        }
        let capacity = level_id.queue_capacity();
        if level.waiting.fetch_add(1, Ordering::Relaxed) >= capacity {
            level.waiting.fetch_sub(1, Ordering::Relaxed);
            let reason = if capacity == 0 {
                "concurrency-limit"
            } else {
                "queue-full"
            };
            return Err(self.reject(schema, reason));
        }
        m.in_queue.inc();
        let queued = Queued {
            level,
            gauge: &m.in_queue,
        };
        let started = Instant::now();
        let permit =
            tokio::time::timeout(self.queue_wait, level.seats.clone().acquire_owned()).await;
        drop(queued);
        match permit {
            Ok(Ok(permit)) => {
                m.waited.observe(started.elapsed().as_secs_f64());
                Ok(seat(Some(permit)))
            }
            Ok(Err(_)) => Err(ApiError::unavailable("the apiserver is stopping")),
            Err(_) => {
                self.metrics
                    .wait
                    .with_label_values(&[schema.name(), level_id.name(), "false"])
                    .observe(started.elapsed().as_secs_f64());
                Err(self.reject(schema, "time-out"))
            }
        }
    }

    fn reject(&self, schema: FlowSchema, reason: &str) -> ApiError {
        self.metrics
            .rejected
            .with_label_values(&[schema.name(), schema.level().name(), reason])
            .inc();
        too_many_requests()
    }
}

/// Upstream's refusal of a request past the apiserver's concurrency, by flow
/// control or by the max-in-flight filter.
pub fn too_many_requests() -> ApiError {
    ApiError::too_many_requests("Too many requests, please try again later.", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Verb;
    fn info(verb: Verb, plural: &str, namespace: &str) -> RequestInfo {
        let group = if plural == "leases" {
            "coordination.k8s.io"
        } else {
            ""
        };
        RequestInfo {
            verb,
            resource: kubernel_api::resources::find(group, "v1", plural)
                .expect("a built-in resource"),
            subresource: String::new(),
            namespace: namespace.into(),
            name: String::new(),
        }
    }

    use crate::auth::test_user as user;

    #[test]
    fn nominal_seats_should_follow_upstreams_shares_of_600() {
        // kube-apiserver's defaults: 400 + 200 seats over 245 shares.
        let seats: Vec<(&str, usize)> = PriorityLevel::ALL
            .iter()
            .map(|&l| (l.name(), nominal_seats(600, l)))
            .collect();
        assert_eq!(
            seats,
            [
                ("exempt", 0),
                ("system", 74),
                ("node-high", 98),
                ("leader-election", 25),
                ("workload-high", 98),
                ("workload-low", 245),
                ("global-default", 49),
                ("catch-all", 13),
            ]
        );
    }

    #[test]
    fn classify_should_pick_upstreams_default_flow_schema() {
        let pods = info(Verb::Create, "pods", "default");
        let authenticated = "system:authenticated";
        let cases = [
            (user("admin", &[MASTERS, authenticated]), &pods, "exempt"),
            (
                user("system:kube-scheduler", &[authenticated]),
                &info(Verb::Update, "leases", "kube-system"),
                "system-leader-election",
            ),
            (
                user("system:kube-scheduler", &[authenticated]),
                &pods,
                "kube-scheduler",
            ),
            (
                user("system:kube-controller-manager", &[authenticated]),
                &pods,
                "kube-controller-manager",
            ),
            (
                user("system:node:n1", &["system:nodes", authenticated]),
                &info(Verb::Patch, "nodes", ""),
                "system-node-high",
            ),
            (
                user("system:node:n1", &["system:nodes", authenticated]),
                &info(Verb::Update, "leases", "kube-node-lease"),
                "system-node-high",
            ),
            (
                user("system:node:n1", &["system:nodes", authenticated]),
                &pods,
                "system-nodes",
            ),
            (
                user(
                    "system:serviceaccount:kube-system:x",
                    &["system:serviceaccounts", authenticated],
                ),
                &pods,
                "kube-system-service-accounts",
            ),
            (
                user(
                    "system:serviceaccount:default:x",
                    &["system:serviceaccounts", authenticated],
                ),
                &pods,
                "service-accounts",
            ),
            (user("alice", &[authenticated]), &pods, "global-default"),
            (
                user("system:anonymous", &["system:unauthenticated"]),
                &pods,
                "global-default",
            ),
            (user("nobody", &[]), &pods, "catch-all"),
        ];
        for (u, i, want) in cases {
            assert_eq!(
                FlowSchema::classify(&u, i).name(),
                want,
                "{} {:?}",
                u.name,
                i.verb
            );
        }
    }

    fn flow_control(server_limit: usize, wait: Duration) -> (FlowControl, Registry) {
        let registry = Registry::new();
        let metrics = FlowMetrics::new(&registry).expect("metrics");
        (FlowControl::new(server_limit, wait, &metrics), registry)
    }

    #[tokio::test]
    async fn a_request_past_its_levels_seats_should_wait_for_one_not_fail() {
        // 13 seats in all: global-default gets ceil(13 * 20 / 245) = 2.
        let (fc, _r) = flow_control(13, Duration::from_secs(5));
        let first = fc.admit(FlowSchema::GlobalDefault).await.expect("a seat");
        let second = fc.admit(FlowSchema::GlobalDefault).await.expect("a seat");
        let fc = Arc::new(fc);
        let waiting = {
            let fc = fc.clone();
            tokio::spawn(async move { fc.admit(FlowSchema::GlobalDefault).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the third request should wait for a seat"
        );
        // Another level's seats are its own.
        let scheduler = fc.admit(FlowSchema::KubeScheduler).await;
        assert!(scheduler.is_ok());
        drop(first);
        assert!(waiting.await.expect("task").is_ok());
        drop(second);
    }

    #[tokio::test]
    async fn a_request_waiting_too_long_should_get_429() {
        let (fc, registry) = flow_control(13, Duration::from_millis(50));
        let _a = fc.admit(FlowSchema::GlobalDefault).await.expect("a seat");
        let _b = fc.admit(FlowSchema::GlobalDefault).await.expect("a seat");
        let err = fc
            .admit(FlowSchema::GlobalDefault)
            .await
            .err()
            .expect("a 429");
        assert_eq!(err.code, 429);
        let text = kubernel_sdk::prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("text");
        assert!(
            text.contains("apiserver_flowcontrol_rejected_requests_total{flow_schema=\"global-default\",priority_level=\"global-default\",reason=\"time-out\"} 1"),
            "{text}"
        );
        // Exempt requests are never queued.
        assert!(fc.admit(FlowSchema::Exempt).await.is_ok());
        // catch-all rejects at once when its seats are taken.
        let _c = fc.admit(FlowSchema::CatchAll).await.expect("a seat");
        assert!(fc.admit(FlowSchema::CatchAll).await.is_err());
    }
}
