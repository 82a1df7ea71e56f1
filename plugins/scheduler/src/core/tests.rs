//! Scheduler core scenarios: what a user of the cluster would see, minus the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::framework::{Plugin, PluginInstance, ScorePlugin};
use crate::plugins::in_tree_registry;
use crate::testing::{NodeBuilder, PodBuilder};

fn scheduler(config: &str) -> Scheduler {
    scheduler_with(config, in_tree_registry())
}

fn scheduler_with(config: &str, registry: Registry) -> Scheduler {
    let c = SchedulerConfig::from_toml(config, "test.toml").expect("config");
    Scheduler::new(&c, &registry, &prometheus::Registry::new())
        .expect("scheduler")
        .with_seed(1)
}

fn add_node(s: &mut Scheduler, b: NodeBuilder, now: Instant) {
    s.on_node_add(Arc::new(b.build()), now).expect("node");
}

fn add_pod(s: &mut Scheduler, b: PodBuilder, now: Instant) {
    s.on_pod_add(Arc::new(b.pod()), now).expect("pod");
}

/// Schedules one pod and completes its binding as the API would; returns the node.
fn schedule_and_bind(s: &mut Scheduler, now: Instant) -> Result<String, String> {
    match s.schedule_one(now) {
        Some(ScheduleOutcome::Scheduled(mut sp)) => {
            assert!(s.pre_bind(&mut sp).is_success());
            assert_eq!(s.bind(&mut sp), BindOutcome::Delegated);
            let node = sp.node.clone();
            let mut bound = (*sp.pod.pod).clone();
            if let Some(spec) = bound.spec.as_mut() {
                spec.node_name = Some(node.clone());
            }
            s.finish_binding(*sp, Ok(()), now);
            s.on_pod_add(Arc::new(bound), now).expect("bound pod");
            Ok(node)
        }
        Some(ScheduleOutcome::Unschedulable(u)) => Err(u.message),
        Some(ScheduleOutcome::Error { message, .. }) => Err(format!("error: {message}")),
        None => Err("nothing to schedule".into()),
    }
}

#[test]
fn schedule_one_should_place_the_pod_on_the_node_that_fits() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("small").cpu("1"), t);
    add_node(&mut s, NodeBuilder::new("big").cpu("8"), t);
    add_pod(&mut s, PodBuilder::new("p").cpu("2"), t);
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("big"));
    assert!(!s.cache().is_assumed("p"));
    assert_eq!(s.cache().pod_node("p"), Some("big"));
    assert!(s.queue().is_empty());
}

#[test]
fn failed_scheduling_message_should_match_kube_scheduler() {
    let t = Instant::now();
    let mut s = scheduler("");
    for i in 0..3 {
        let n = format!("busy{i}");
        add_node(&mut s, NodeBuilder::new(&n).cpu("2"), t);
        add_pod(
            &mut s,
            PodBuilder::new(&format!("x{i}")).cpu("1500m").node(&n),
            t,
        );
    }
    for i in 0..2 {
        add_node(
            &mut s,
            NodeBuilder::new(&format!("gpu{i}")).taint("dedicated", "gpu", "NoSchedule"),
            t,
        );
    }
    add_pod(&mut s, PodBuilder::new("p").cpu("1"), t);
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(t) else {
        panic!("expected unschedulable")
    };
    assert_eq!(
        u.message,
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu. \
         preemption: 0/5 nodes are available: 2 Preemption is not helpful for scheduling, \
         3 No preemption victims found for incoming pod.."
    );
    assert_eq!(u.reasons["NodeResourcesFit"]["Insufficient cpu"], 3);
    assert_eq!(
        u.reasons["TaintToleration"]["node(s) had untolerated taint {dedicated: gpu}"],
        2
    );
    assert_eq!(
        s.queue().location("p"),
        Some(crate::queue::Location::Unschedulable)
    );
}

#[test]
fn an_unschedulable_pod_should_schedule_when_a_node_appears() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("n1").cpu("1"), t);
    add_pod(&mut s, PodBuilder::new("p").cpu("2"), t);
    assert!(schedule_and_bind(&mut s, t).is_err());
    assert!(s.schedule_one(t + Duration::from_secs(30)).is_none());
    // A node change that adds nothing relevant still moves it (NodeResourcesFit cares about node updates).
    add_node(
        &mut s,
        NodeBuilder::new("n2").cpu("4"),
        t + Duration::from_secs(30),
    );
    assert_eq!(
        schedule_and_bind(&mut s, t + Duration::from_secs(30)).as_deref(),
        Ok("n2")
    );
}

#[test]
fn a_taint_rejection_should_not_move_on_an_unrelated_pod_delete() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(
        &mut s,
        NodeBuilder::new("n1").taint("k", "v", "NoSchedule"),
        t,
    );
    add_pod(
        &mut s,
        PodBuilder::new("other")
            .node("n1")
            .toleration("k", "Exists", "", ""),
        t,
    );
    add_pod(&mut s, PodBuilder::new("p"), t);
    assert!(schedule_and_bind(&mut s, t).is_err());
    s.on_pod_delete("other", t);
    assert_eq!(
        s.queue().location("p"),
        Some(crate::queue::Location::Unschedulable)
    );
}

#[test]
fn preemption_should_nominate_a_node_and_name_the_victims() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("n1").cpu("2"), t);
    add_pod(
        &mut s,
        PodBuilder::new("low").cpu("2").priority(1).node("n1"),
        t,
    );
    add_pod(&mut s, PodBuilder::new("high").cpu("2").priority(100), t);
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(t) else {
        panic!("expected unschedulable")
    };
    assert_eq!(u.nominated_node.as_deref(), Some("n1"));
    assert_eq!(
        u.victims
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        vec!["low"]
    );
    assert_eq!(u.message, "0/1 nodes are available: 1 Insufficient cpu.");
    // The I/O layer deletes the victim; the preemptor is retried and lands.
    s.on_pod_delete("low", t);
    let later = t + Duration::from_secs(1);
    assert_eq!(schedule_and_bind(&mut s, later).as_deref(), Ok("n1"));
}

#[test]
fn assumed_pods_should_count_before_the_binding_is_confirmed() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("n1").cpu("2"), t);
    add_node(&mut s, NodeBuilder::new("n2").cpu("2"), t);
    add_pod(&mut s, PodBuilder::new("a").cpu("1500m"), t);
    add_pod(&mut s, PodBuilder::new("b").cpu("1500m"), t);
    let first = match s.schedule_one(t) {
        Some(ScheduleOutcome::Scheduled(sp)) => sp,
        other => panic!("{other:?}"),
    };
    let second = match s.schedule_one(t) {
        Some(ScheduleOutcome::Scheduled(sp)) => sp,
        other => panic!("{other:?}"),
    };
    assert_ne!(first.node, second.node);
}

#[test]
fn a_failed_binding_should_forget_the_pod_and_retry_it_after_backoff() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("n1"), t);
    add_pod(&mut s, PodBuilder::new("p"), t);
    let Some(ScheduleOutcome::Scheduled(sp)) = s.schedule_one(t) else {
        panic!("expected scheduled")
    };
    assert!(s.cache().is_assumed("p"));
    s.finish_binding(*sp, Err("409 Conflict".into()), t);
    assert!(!s.cache().contains_pod("p"));
    assert_eq!(
        s.queue().location("p"),
        Some(crate::queue::Location::Backoff)
    );
    assert!(s.schedule_one(t + Duration::from_millis(500)).is_none());
    assert_eq!(
        schedule_and_bind(&mut s, t + Duration::from_secs(1)).as_deref(),
        Ok("n1")
    );
}

#[test]
fn two_profiles_should_schedule_their_own_pods() {
    let t = Instant::now();
    let config = r#"
        [[profiles]]
        scheduler_name = "default-scheduler"
        [[profiles]]
        scheduler_name = "binpack"
        [[profiles.plugin_config]]
        name = "NodeResourcesFit"
        args = { scoring_strategy = { type = "MostAllocated" } }
    "#;
    let mut s = scheduler(config);
    add_node(&mut s, NodeBuilder::new("empty").cpu("4").memory("4Gi"), t);
    add_node(&mut s, NodeBuilder::new("half").cpu("4").memory("4Gi"), t);
    add_pod(
        &mut s,
        PodBuilder::new("x").cpu("2").memory("2Gi").node("half"),
        t,
    );
    add_pod(&mut s, PodBuilder::new("spread").cpu("1").memory("1Gi"), t);
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("empty"));
    add_pod(
        &mut s,
        PodBuilder::new("pack")
            .cpu("1")
            .memory("1Gi")
            .scheduler("binpack"),
        t,
    );
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("half"));
    add_pod(
        &mut s,
        PodBuilder::new("theirs").scheduler("someone-else"),
        t,
    );
    assert!(s.queue().is_empty());
}

#[test]
fn percentage_of_nodes_to_score_should_limit_and_rotate_the_nodes_evaluated() {
    let t = Instant::now();
    let mut s = scheduler("percentage_of_nodes_to_score = 50");
    for i in 0..300 {
        add_node(&mut s, NodeBuilder::new(&format!("n{i:03}")), t);
    }
    for i in 0..2 {
        add_pod(&mut s, PodBuilder::new(&format!("p{i}")), t);
    }
    for _ in 0..2 {
        let Some(ScheduleOutcome::Scheduled(sp)) = s.schedule_one(t) else {
            panic!("expected scheduled")
        };
        assert_eq!((sp.evaluated_nodes, sp.feasible_nodes), (150, 150));
    }
    assert_eq!(s.next_start, 0, "rotated through all 300 nodes");
}

#[test]
fn record_scores_should_return_every_plugins_scores() {
    let t = Instant::now();
    let mut s = scheduler("[[profiles]]\nrecord_scores = true");
    add_node(&mut s, NodeBuilder::new("n1"), t);
    add_node(&mut s, NodeBuilder::new("n2").cpu("8"), t);
    add_pod(&mut s, PodBuilder::new("p").cpu("1").memory("1Gi"), t);
    let Some(ScheduleOutcome::Scheduled(sp)) = s.schedule_one(t) else {
        panic!("expected scheduled")
    };
    let rec = sp.scores.expect("scores");
    assert_eq!(rec.normalized["TaintToleration"]["n1"], 100);
    assert_eq!(rec.weighted["TaintToleration"]["n1"], 300);
    assert!(rec.total["n2"] > rec.total["n1"], "{rec:?}");
}

/// A scorer that returns an out-of-range score.
struct Broken;

impl Plugin for Broken {
    fn name(&self) -> &str {
        "Broken"
    }
}

impl ScorePlugin for Broken {
    fn score(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &crate::cache::NodeInfo,
    ) -> Result<i64, Status> {
        Ok(250)
    }
}

#[test]
fn an_out_of_range_score_should_fail_the_attempt_and_name_the_plugin() {
    let t = Instant::now();
    let mut registry = in_tree_registry();
    registry
        .register(
            "Broken",
            Arc::new(|_, _| Ok(PluginInstance::new("Broken").score(Arc::new(Broken)))),
        )
        .expect("register");
    let mut s = scheduler_with(
        "[[profiles]]\nplugins.score.enabled = [{ name = \"Broken\" }]",
        registry,
    );
    add_node(&mut s, NodeBuilder::new("n1"), t);
    add_node(&mut s, NodeBuilder::new("n2"), t);
    add_pod(&mut s, PodBuilder::new("p"), t);
    let err = schedule_and_bind(&mut s, t).expect_err("error");
    assert_eq!(
        err,
        "error: plugin \"Broken\" returns an invalid score 250, it should in the range of [0, 100] after normalizing"
    );
    assert_eq!(
        s.queue().location("p"),
        Some(crate::queue::Location::Backoff)
    );
}

#[test]
fn reconfigure_should_report_changed_plugins_and_keep_the_old_profile_on_error() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("n1"), t);
    let registry = in_tree_registry();
    let next = SchedulerConfig::from_toml(
        "[[profiles]]\nplugins.score.enabled = [{ name = \"NodeResourcesFit\", weight = 5 }]",
        "next.toml",
    )
    .expect("config");
    let reports = s.reconfigure(&next, &registry).expect("swap");
    assert_eq!(
        reports,
        vec![SwapReport {
            profile: "default-scheduler".into(),
            plugin: "NodeResourcesFit".into(),
            change: "changed"
        }]
    );
    let bad = SchedulerConfig::from_toml(
        "[[profiles]]\nplugins.score.enabled = [{ name = \"Nope\" }]",
        "bad.toml",
    )
    .expect("config");
    assert!(s.reconfigure(&bad, &registry).is_err());
    add_pod(&mut s, PodBuilder::new("p"), t);
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("n1"));
}

#[test]
fn no_nodes_should_be_reported_like_kube_scheduler() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_pod(&mut s, PodBuilder::new("p"), t);
    assert_eq!(
        schedule_and_bind(&mut s, t),
        Err(NO_NODES_AVAILABLE.to_string())
    );
}

#[test]
fn large_batches_should_be_filtered_and_scored_on_several_threads() {
    let t = Instant::now();
    // 100 % of 2,500 nodes with 2 threads: chunks above MIN_NODES_PER_THREAD run in parallel.
    let mut s = scheduler("percentage_of_nodes_to_score = 100\nparallelism = 2");
    for i in 0..2500 {
        let cpu = if i == 1777 { "64" } else { "4" };
        let mut b = NodeBuilder::new(&format!("n{i:04}")).cpu(cpu);
        if i % 500 == 0 {
            b = b.taint("k", "v", "NoSchedule");
        }
        add_node(&mut s, b, t);
    }
    add_pod(&mut s, PodBuilder::new("p").cpu("3"), t);
    let Some(ScheduleOutcome::Scheduled(sp)) = s.schedule_one(t) else {
        panic!("expected scheduled")
    };
    assert_eq!((sp.evaluated_nodes, sp.feasible_nodes), (2500, 2495));
    // LeastAllocated prefers the 64-CPU node by far.
    assert_eq!(sp.node, "n1777");
}

/// n1 (2 CPU) runs `low` (priority 1, 2 CPU); `high` (priority 100, 2 CPU) preempts it
/// and is nominated to n1.
fn preempted(s: &mut Scheduler, t: Instant) {
    add_node(s, NodeBuilder::new("n1").cpu("2"), t);
    add_pod(s, PodBuilder::new("low").cpu("2").priority(1).node("n1"), t);
    add_pod(s, PodBuilder::new("high").cpu("2").priority(100), t);
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(t) else {
        panic!("expected unschedulable")
    };
    assert_eq!(u.nominated_node.as_deref(), Some("n1"));
    assert_eq!(s.cache().nominated_node("high"), Some("n1"));
}

#[test]
fn a_nominated_pod_should_keep_its_room_from_pods_of_lower_priority_only() {
    let t = Instant::now();
    let mut s = scheduler("");
    preempted(&mut s, t);
    s.on_pod_delete("low", t);
    // n1 is empty now, n2 has 1 CPU. `high` waits out its backoff; `mid` (priority 50)
    // comes first and would prefer the emptier n1, but n1 is kept for `high`.
    add_node(&mut s, NodeBuilder::new("n2").cpu("1"), t);
    add_pod(&mut s, PodBuilder::new("mid").cpu("1").priority(50), t);
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("n2"));
    // n2 is full: a second lower-priority pod fits nowhere, and says why.
    add_pod(&mut s, PodBuilder::new("mid2").cpu("1").priority(50), t);
    assert_eq!(
        schedule_and_bind(&mut s, t),
        Err(
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
             2 No preemption victims found for incoming pod.."
                .into()
        )
    );
    // A pod of higher priority than the nominated one ignores the nomination.
    add_pod(&mut s, PodBuilder::new("top").cpu("1").priority(200), t);
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("n1"));
    // Once `top` leaves, `high` lands on its nominated node and the nomination ends.
    s.on_pod_delete("top", t);
    s.on_pod_delete("mid2", t);
    let later = t + Duration::from_secs(2);
    s.flush(later);
    assert_eq!(schedule_and_bind(&mut s, later).as_deref(), Ok("n1"));
    assert_eq!(s.cache().nominated_node("high"), None);
    assert!(!s.cache().has_nominated());
}

#[test]
fn a_nomination_from_the_api_should_count_and_survive_an_update_without_it() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("n1").cpu("2"), t);
    add_node(&mut s, NodeBuilder::new("n2").cpu("1"), t);
    // A pod nominated by a previous scheduler (its status says so), still in backoff.
    add_pod(
        &mut s,
        PodBuilder::new("high")
            .cpu("2")
            .priority(100)
            .nominated("n1"),
        t,
    );
    assert_eq!(s.cache().nominated_node("high"), Some("n1"));
    s.on_pod_update(
        Arc::new(PodBuilder::new("high").cpu("2").priority(100).pod()),
        t,
    )
    .expect("update");
    assert_eq!(s.cache().nominated_node("high"), Some("n1"));
    // `high` pops first (priority) and takes its node; then `mid` goes to n2.
    add_pod(&mut s, PodBuilder::new("mid").cpu("1").priority(50), t);
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("n1"));
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("n2"));
}

#[test]
fn a_nominated_pod_should_not_preempt_again_while_its_victim_terminates() {
    let t = Instant::now();
    let mut s = scheduler("");
    preempted(&mut s, t);
    // The victim's deletion started: it still holds its CPU.
    s.on_pod_update(
        Arc::new(
            PodBuilder::new("low")
                .cpu("2")
                .priority(1)
                .node("n1")
                .terminating()
                .pod(),
        ),
        t,
    )
    .expect("update");
    let later = t + Duration::from_secs(2);
    s.flush(later);
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(later) else {
        panic!("expected unschedulable")
    };
    assert!(u.victims.is_empty());
    assert_eq!(u.nominated_node, None);
    assert_eq!(
        u.message,
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: not eligible due to a terminating pod on the nominated node.."
    );
    assert_eq!(s.cache().nominated_node("high"), Some("n1"));
}

/// A Permit plugin for gangs of two: the first pod labelled `gang` waits (for
/// `timeout`), the second allows the one waiting with the same label value.
struct Gang {
    waiting: Arc<crate::framework::WaitingPods>,
    timeout: Duration,
}

impl Plugin for Gang {
    fn name(&self) -> &str {
        "Gang"
    }
}

impl crate::framework::PermitPlugin for Gang {
    fn permit(&self, _: &mut CycleState, pod: &PodInfo, _: &str) -> (Status, Duration) {
        let Some(gang) = pod.labels().get("gang") else {
            return (Status::success(), Duration::ZERO);
        };
        let partner = self
            .waiting
            .all()
            .into_iter()
            .find(|w| w.pod().labels().get("gang") == Some(gang));
        match partner {
            Some(w) => {
                w.allow("Gang");
                (Status::success(), Duration::ZERO)
            }
            None => (
                Status::new(Code::Wait, "waiting for the gang"),
                self.timeout,
            ),
        }
    }
}

fn gang_scheduler() -> Scheduler {
    let mut registry = in_tree_registry();
    registry
        .register(
            "Gang",
            Arc::new(|_, ctx| {
                let gang = Arc::new(Gang {
                    waiting: ctx.waiting_pods.clone(),
                    timeout: Duration::from_millis(50),
                });
                Ok(PluginInstance::new("Gang").permit(gang))
            }),
        )
        .expect("register");
    scheduler_with(
        "[[profiles]]\nplugins.permit.enabled = [{ name = \"Gang\" }]",
        registry,
    )
}

fn scheduled(s: &mut Scheduler, now: Instant) -> Box<ScheduledPod> {
    match s.schedule_one(now) {
        Some(ScheduleOutcome::Scheduled(sp)) => sp,
        other => panic!("expected a scheduled pod, got {other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

#[test]
fn a_waiting_pod_should_stay_assumed_until_permit_allows_it() {
    let t = Instant::now();
    let mut s = gang_scheduler();
    add_node(&mut s, NodeBuilder::new("n1").cpu("2"), t);
    add_pod(&mut s, PodBuilder::new("a").cpu("1").label("gang", "g"), t);
    add_pod(&mut s, PodBuilder::new("b").cpu("1").label("gang", "g"), t);
    let a = scheduled(&mut s, t);
    let wa = a.waiting.clone().expect("a waits");
    assert_eq!(wa.pending_plugins(), vec!["Gang".to_string()]);
    assert!(
        s.cache().is_assumed("a"),
        "a keeps its place while it waits"
    );
    assert_eq!(s.waiting_pods().len(), 1);
    assert_eq!(wa.expire(t), None);
    // b completes the gang: its Permit allows a, and b itself does not wait.
    let b = scheduled(&mut s, t);
    assert!(b.waiting.is_none());
    assert_eq!(wa.expire(t).map(|s| s.code()), Some(Code::Success));
    assert!(runtime().block_on(wa.wait()).is_success());
    for sp in [a, b] {
        s.finish_binding(*sp, Ok(()), t);
    }
    assert!(s.waiting_pods().is_empty());
}

#[test]
fn a_waiting_pod_should_be_rejected_on_timeout_or_delete_and_forgotten() {
    let t = Instant::now();
    let mut s = gang_scheduler();
    add_node(&mut s, NodeBuilder::new("n1").cpu("2"), t);
    add_pod(
        &mut s,
        PodBuilder::new("alone").cpu("1").label("gang", "x"),
        t,
    );
    // The 50 ms run from the cycle's `now` (`t`), which the test passes in.
    let sp = scheduled(&mut s, t);
    let wp = sp.waiting.clone().expect("waits");
    let status = runtime().block_on(wp.wait());
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(status.code(), Code::Unschedulable);
    assert_eq!(status.plugin(), Some("Gang"));
    assert_eq!(
        status.message(),
        "rejected due to timeout after waiting 50ms at plugin Gang"
    );
    assert!(s.reject(*sp, &status, t), "parked");
    assert!(!s.cache().contains_pod("alone"), "forgotten");
    assert!(s.waiting_pods().is_empty());
    assert_eq!(
        s.queue().location("alone"),
        Some(crate::queue::Location::Unschedulable)
    );

    // A waiting pod that is deleted is rejected at once ("removed").
    add_pod(
        &mut s,
        PodBuilder::new("gone").cpu("1").label("gang", "y"),
        t,
    );
    let sp = scheduled(&mut s, t);
    let wp = sp.waiting.clone().expect("waits");
    s.on_pod_delete("gone", t);
    let status = runtime().block_on(wp.wait());
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unschedulable, "removed".to_string())
    );
    assert!(!s.reject(*sp, &status, t), "deleted: nothing to report");
    assert!(!s.cache().contains_pod("gone"));
    assert_eq!(
        s.queue().location("gone"),
        None,
        "a deleted pod is not retried"
    );
}

#[test]
fn preemption_should_clear_lower_priority_nominations_on_the_chosen_node() {
    let t = Instant::now();
    let mut s = scheduler("");
    preempted(&mut s, t);
    // Before `low` is gone, a more important pod needs the same room: it preempts
    // `low` too, and `high` (priority 100) loses its nomination to n1.
    add_pod(&mut s, PodBuilder::new("top").cpu("2").priority(200), t);
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(t) else {
        panic!("expected unschedulable")
    };
    assert_eq!(u.pod.name, "top");
    assert_eq!(u.nominated_node.as_deref(), Some("n1"));
    let names = |v: &[Arc<PodInfo>]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&u.victims), vec!["low"]);
    assert_eq!(names(&u.cleared_nominations), vec!["high"]);
    assert_eq!(s.cache().nominated_node("high"), None);
    assert_eq!(s.cache().nominated_node("top"), Some("n1"));
}

#[test]
fn a_victim_waiting_on_permit_should_be_rejected_not_deleted() {
    let t = Instant::now();
    let mut s = gang_scheduler();
    add_node(&mut s, NodeBuilder::new("n1").cpu("2"), t);
    add_pod(
        &mut s,
        PodBuilder::new("w").cpu("2").priority(1).label("gang", "g"),
        t,
    );
    let w = scheduled(&mut s, t);
    let ww = w.waiting.clone().expect("w waits");
    add_pod(&mut s, PodBuilder::new("vip").cpu("2").priority(100), t);
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(t) else {
        panic!("expected unschedulable")
    };
    assert!(u.victims.is_empty(), "nothing to delete");
    assert_eq!(u.rejected_victims.len(), 1);
    assert_eq!(u.rejected_victims[0].name, "w");
    let status = runtime().block_on(ww.wait());
    assert_eq!(status.message(), "preempted");
    assert_eq!(status.plugin(), Some("DefaultPreemption"));
    s.reject(*w, &status, t);
    assert!(!s.cache().contains_pod("w"));
    // The node is free: `vip` lands on it once its backoff is over.
    let later = t + Duration::from_secs(2);
    s.flush(later);
    assert_eq!(schedule_and_bind(&mut s, later).as_deref(), Ok("n1"));
}

#[test]
fn a_nominated_pod_should_count_in_topology_spread_through_add_pod() {
    let t = Instant::now();
    let mut s = scheduler("");
    // `high` (app=web) preempts `low` on n1 and is nominated there.
    add_node(&mut s, NodeBuilder::new("n1").cpu("4"), t);
    add_pod(
        &mut s,
        PodBuilder::new("low").cpu("4").priority(1).node("n1"),
        t,
    );
    add_pod(
        &mut s,
        PodBuilder::new("high")
            .cpu("2")
            .priority(100)
            .label("app", "web"),
        t,
    );
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(t) else {
        panic!("expected unschedulable")
    };
    assert_eq!(u.nominated_node.as_deref(), Some("n1"));
    s.on_pod_delete("low", t);
    // n2 is busier, so scoring alone would pick n1; but with `high` counted on n1
    // (AddPod into the spread state), n1 would be 2 web pods ahead: skew 2 > 1.
    add_node(&mut s, NodeBuilder::new("n2").cpu("4"), t);
    add_pod(&mut s, PodBuilder::new("other").cpu("2").node("n2"), t);
    add_pod(
        &mut s,
        PodBuilder::new("web")
            .cpu("100m")
            .priority(50)
            .label("app", "web")
            .spread(1, "kubernetes.io/hostname", true, "web"),
        t,
    );
    assert_eq!(schedule_and_bind(&mut s, t).as_deref(), Ok("n2"));
}

#[test]
fn preemption_should_remove_victims_from_the_pre_filter_state() {
    let t = Instant::now();
    let mut s = scheduler("");
    add_node(&mut s, NodeBuilder::new("n1").cpu("2"), t);
    add_pod(
        &mut s,
        PodBuilder::new("x")
            .cpu("1")
            .priority(1)
            .label("app", "x")
            .node("n1"),
        t,
    );
    // Room enough, but anti-affinity to `x`: only evicting `x` helps, which the
    // InterPodAffinity state must see (RemovePod).
    add_pod(
        &mut s,
        PodBuilder::new("p")
            .cpu("1")
            .priority(100)
            .anti_affinity("kubernetes.io/hostname", "x"),
        t,
    );
    let Some(ScheduleOutcome::Unschedulable(u)) = s.schedule_one(t) else {
        panic!("expected unschedulable")
    };
    assert_eq!(
        u.message,
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
    );
    assert_eq!(u.nominated_node.as_deref(), Some("n1"));
    assert_eq!(
        u.victims
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        vec!["x"]
    );
}
