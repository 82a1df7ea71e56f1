//! Queue tests: ordering, backoff, moves on events, gates; time is injected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::plugins::priority_sort::PrioritySort;
use crate::testing::PodBuilder;

fn queue() -> SchedulingQueue {
    SchedulingQueue::new(Arc::new(PrioritySort), None)
}

fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
    Arc::new(PodBuilder::new(name).priority(priority).build())
}

fn secs(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

#[test]
fn pop_should_order_by_priority_then_arrival() {
    let t0 = Instant::now();
    let mut q = queue();
    q.add(pod("low", 0), t0);
    q.add(pod("high", 100), secs(t0, 1.0));
    q.add(pod("low2", 0), secs(t0, 2.0));
    let order: Vec<String> =
        std::iter::from_fn(|| q.pop(secs(t0, 3.0)).map(|p| p.pod.name.clone())).collect();
    assert_eq!(order, vec!["high", "low", "low2"]);
}

#[test]
fn backoff_duration_should_double_up_to_ten_seconds() {
    let got: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
    assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
}

#[test]
fn requeue_after_an_error_should_back_off_then_release_the_pod() {
    let t0 = Instant::now();
    let mut q = queue();
    q.add(pod("p", 0), t0);
    let p = q.pop(t0).expect("pod");
    assert_eq!(p.attempts, 1);
    q.requeue(p, true, t0);
    assert_eq!(q.location("p"), Some(Location::Backoff));
    assert!(q.pop(secs(t0, 0.5)).is_none());
    assert_eq!(q.next_backoff_expiry(), Some(secs(t0, 1.0)));
    let p = q.pop(secs(t0, 1.0)).expect("released after 1 s");
    // Second failure at t = 1 s: 2 s of backoff.
    q.requeue(p, true, secs(t0, 1.0));
    assert!(q.pop(secs(t0, 2.9)).is_none());
    assert_eq!(q.pop(secs(t0, 3.0)).map(|p| p.attempts), Some(3));
}

#[test]
fn unschedulable_pods_should_wait_for_an_interesting_event() {
    let t0 = Instant::now();
    let mut q = queue();
    q.add(pod("p", 0), t0);
    let mut p = q.pop(t0).expect("pod");
    p.unschedulable_plugins.insert("NodeResourcesFit".into());
    q.requeue(p, false, t0);
    assert_eq!(q.location("p"), Some(Location::Unschedulable));
    assert!(q.pop(secs(t0, 60.0)).is_none());
    q.move_on_event(ClusterEvent::NodeUpdate, secs(t0, 60.0), |p| {
        !p.unschedulable_plugins.contains("NodeResourcesFit")
    });
    assert_eq!(q.location("p"), Some(Location::Unschedulable));
    q.move_on_event(ClusterEvent::NodeAdd, secs(t0, 60.0), |_| true);
    assert_eq!(q.location("p"), Some(Location::Active));
    assert!(q.pop(secs(t0, 60.0)).is_some());
}

#[test]
fn a_move_during_the_attempt_should_send_the_pod_to_backoff() {
    let t0 = Instant::now();
    let mut q = queue();
    q.add(pod("p", 0), t0);
    let p = q.pop(t0).expect("pod");
    // A node appears while the pod is being scheduled.
    q.move_on_event(ClusterEvent::NodeAdd, t0, |_| true);
    q.requeue(p, false, t0);
    assert_eq!(q.location("p"), Some(Location::Backoff));
    // Moved while still backing off: stays in backoffQ until the timer expires.
    assert!(q.pop(secs(t0, 0.9)).is_none());
    assert!(q.pop(secs(t0, 1.0)).is_some());
}

#[test]
fn parked_pods_should_return_after_five_minutes() {
    let t0 = Instant::now();
    let mut q = queue();
    q.add(pod("p", 0), t0);
    let p = q.pop(t0).expect("pod");
    q.requeue(p, false, t0);
    q.flush_unschedulable(secs(t0, 299.0));
    assert_eq!(q.location("p"), Some(Location::Unschedulable));
    q.flush_unschedulable(secs(t0, 301.0));
    assert_eq!(q.location("p"), Some(Location::Active));
}

#[test]
fn gated_pods_should_wait_for_their_gates_to_go() {
    let t0 = Instant::now();
    let mut q = queue();
    let mut gated = PodBuilder::new("g").pod();
    if let Some(spec) = gated.spec.as_mut() {
        spec.scheduling_gates = Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate {
            name: "wait".into(),
        }]);
    }
    q.add(Arc::new(PodInfo::new(Arc::new(gated)).expect("pod")), t0);
    assert_eq!(q.location("g"), Some(Location::Gated));
    assert!(q.pop(t0).is_none());
    q.update(pod("g", 0), t0);
    assert_eq!(q.pop(t0).map(|p| p.pod.name.clone()).as_deref(), Some("g"));
}

#[test]
fn a_pod_deleted_in_flight_should_not_come_back() {
    let t0 = Instant::now();
    let mut q = queue();
    q.add(pod("p", 0), t0);
    let p = q.pop(t0).expect("pod");
    assert!(q.delete("p"));
    q.requeue(p, true, t0);
    assert!(q.is_empty());
    assert!(q.pop(secs(t0, 20.0)).is_none());
}

#[test]
fn queue_should_count_pending_pods_and_incoming_events() {
    let registry = prometheus::Registry::new();
    let m = Metrics::new(&registry).expect("metrics");
    let mut q = SchedulingQueue::new(Arc::new(PrioritySort), Some(m.clone()));
    let t0 = Instant::now();
    q.add(pod("a", 0), t0);
    q.add(pod("b", 0), t0);
    let p = q.pop(t0).expect("pod");
    q.requeue(p, false, t0);
    assert_eq!(m.pending("active").get(), 1);
    assert_eq!(m.pending("unschedulable").get(), 1);
    assert_eq!(
        m.incoming_pods
            .with_label_values(&["active", "PodAdd"])
            .get(),
        2
    );
    assert_eq!(
        m.incoming_pods
            .with_label_values(&["unschedulable", "ScheduleAttemptFailure"])
            .get(),
        1
    );
    assert_eq!(
        (
            q.count(Location::Active),
            q.count(Location::Unschedulable),
            q.len()
        ),
        (1, 1, 2)
    );
}

#[test]
fn queue_should_report_every_pending_queue_from_the_start() {
    let registry = prometheus::Registry::new();
    let m = Metrics::new(&registry).expect("metrics");
    let _q = SchedulingQueue::new(Arc::new(PrioritySort), Some(m));
    let pending = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "scheduler_pending_pods")
        .expect("scheduler_pending_pods is gathered before any pod arrives");
    assert_eq!(pending.get_metric().len(), 4);
}
