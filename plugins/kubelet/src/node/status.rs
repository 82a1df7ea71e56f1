//! A process pod's `status` from what its worker knows: phase, the five conditions with
//! upstream's reasons, and per container its state (waiting/running/terminated),
//! `lastState`, `restartCount`, `started` and `ready`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::pod_status::k8s_time;
use crate::runtime::{ContainerState, ContainerStatus};

/// Pod phases (`status.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not all containers started yet.
    Pending,
    /// Initialized and at least one container running or restarting.
    Running,
    /// Every container exited 0 and none will restart.
    Succeeded,
    /// Every container exited, one failed, none will restart.
    Failed,
}

impl Phase {
    /// The API value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

/// One container as its status needs it.
pub struct ContainerView<'a> {
    /// Name.
    pub name: &'a str,
    /// Image as written in the spec.
    pub image: &'a str,
    /// The current instance, as the runtime reports it.
    pub current: Option<&'a ContainerStatus>,
    /// The previous instance (for `lastState`).
    pub previous: Option<&'a ContainerStatus>,
    /// Restarts so far.
    pub restarts: i32,
    /// A waiting reason and message overriding the current state (CrashLoopBackOff,
    /// CreateContainerConfigError, ...).
    pub waiting: Option<(&'a str, &'a str)>,
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// The readiness probe passed (or there is none).
    pub ready: bool,
}

/// Everything a pod's status is built from.
pub struct PodView<'a> {
    /// The pod as last seen (for condition transition times).
    pub pod: &'a Pod,
    /// The phase decided by the worker.
    pub phase: Phase,
    /// The sandbox is up.
    pub sandbox_ready: bool,
    /// Init containers, in order.
    pub init: Vec<ContainerView<'a>>,
    /// Containers.
    pub main: Vec<ContainerView<'a>>,
    /// The node's address.
    pub host_ip: &'a str,
    /// The pod's address (the node's when it shares the node's network).
    pub pod_ip: &'a str,
    /// `startTime`.
    pub start_time: Timestamp,
    /// Why the kubelet rejected the pod (`reason`, `message`), if it did.
    pub rejected: Option<(&'a str, &'a str)>,
}

fn terminated(c: &ContainerStatus, runtime: &str) -> Value {
    let mut t = json!({
        "exitCode": c.exit_code.unwrap_or(0),
        "reason": c.reason,
        "startedAt": c.started_at.map(k8s_time),
        "finishedAt": c.finished_at.map(k8s_time),
        "containerID": format!("{runtime}://{}", c.id.0),
    });
    if !c.message.is_empty() {
        t["message"] = json!(c.message);
    }
    t
}

fn container(v: &ContainerView<'_>, runtime: &str, init_pending: bool) -> Value {
    let running = v
        .current
        .is_some_and(|c| c.state == ContainerState::Running);
    let mut out = json!({
        "name": v.name,
        "image": v.image,
        "imageID": "",
        "restartCount": v.restarts,
        "started": running && v.started,
        "ready": running && v.started && v.ready,
        "lastState": {},
    });
    if let Some(c) = v.current {
        out["containerID"] = json!(format!("{runtime}://{}", c.id.0));
    }
    out["state"] = match (v.waiting, v.current) {
        (Some((reason, message)), _) => json!({"waiting": {"reason": reason, "message": message}}),
        (None, None) if init_pending => json!({"waiting": {"reason": "PodInitializing"}}),
        (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
        (None, Some(c)) => match c.state {
            ContainerState::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
            ContainerState::Running => {
                json!({"running": {"startedAt": c.started_at.map(k8s_time)}})
            }
            ContainerState::Exited => json!({"terminated": terminated(c, runtime)}),
        },
    };
    // Waiting to restart: the instance that exited is the last state.
    let last = match (v.waiting, v.current) {
        (Some(_), Some(c)) if c.state == ContainerState::Exited => Some(c),
        _ => v.previous,
    };
    if let Some(p) = last.filter(|p| p.state == ContainerState::Exited) {
        out["lastState"] = json!({"terminated": terminated(p, runtime)});
    }
    out
}

/// The `status` of the pod `v` describes, observed `now`.
pub fn build(v: &PodView<'_>, runtime: &str, now: Timestamp) -> Value {
    let init_done = v.init.iter().all(|c| {
        c.current
            .is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == Some(0))
    });
    let unready: Vec<&str> = v
        .main
        .iter()
        .filter(|c| {
            !(c.current
                .is_some_and(|s| s.state == ContainerState::Running)
                && c.started
                && c.ready)
        })
        .map(|c| c.name)
        .collect();
    let incomplete: Vec<&str> = v
        .init
        .iter()
        .filter(|c| {
            !c.current
                .is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == Some(0))
        })
        .map(|c| c.name)
        .collect();
    let completed = matches!(v.phase, Phase::Succeeded | Phase::Failed);
    let previous = v
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let condition = |kind: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(now, |t| t.0);
        let mut c = json!({
            "type": kind,
            "status": status,
            "lastProbeTime": null,
            "lastTransitionTime": k8s_time(since),
        });
        if !ok && !reason.is_empty() {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let ready = unready.is_empty() && !v.main.is_empty() && !completed;
    let (ready_reason, ready_message) = if completed {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    };
    let init_message = format!(
        "containers with incomplete status: [{}]",
        incomplete.join(" ")
    );
    let initialized_reason = if completed {
        "PodCompleted"
    } else {
        "ContainersNotInitialized"
    };
    let init_pending = !init_done;
    let mut status = json!({
        "phase": v.phase.as_str(),
        "conditions": [
            condition("PodReadyToStartContainers", v.sandbox_ready, "", String::new()),
            condition("Initialized", init_done, initialized_reason, init_message),
            condition("Ready", ready, ready_reason, ready_message.clone()),
            condition("ContainersReady", ready, ready_reason, ready_message),
            condition("PodScheduled", true, "", String::new()),
        ],
        "hostIP": v.host_ip,
        "hostIPs": [{"ip": v.host_ip}],
        "podIP": v.pod_ip,
        "podIPs": [{"ip": v.pod_ip}],
        "startTime": k8s_time(v.start_time),
        "qosClass": qos_class(v.pod),
        "containerStatuses": v.main.iter().map(|c| container(c, runtime, init_pending)).collect::<Vec<_>>(),
    });
    if let Some((reason, message)) = v.rejected {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    if !v.init.is_empty() {
        status["initContainerStatuses"] = json!(v
            .init
            .iter()
            .map(|c| container(c, runtime, false))
            .collect::<Vec<_>>());
    }
    status
}

/// Upstream's QoS class: Guaranteed (limits = requests for cpu and memory everywhere),
/// BestEffort (no requests or limits at all) or Burstable.
fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let r = c.resources.as_ref();
        let limits = r.and_then(|r| r.limits.as_ref());
        let requests = r.and_then(|r| r.requests.as_ref());
        if limits.is_some_and(|l| !l.is_empty()) || requests.is_some_and(|q| !q.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = limits.and_then(|l| l.get(res));
            let q = requests.and_then(|q| q.get(res)).or(l);
            if l.is_none() || l != q {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerId, SandboxId};

    fn instance(
        id: &str,
        state: ContainerState,
        exit: Option<i32>,
        reason: &str,
    ) -> ContainerStatus {
        let at = Timestamp::from_second(1_700_000_000).expect("time");
        ContainerStatus {
            id: ContainerId(id.into()),
            sandbox: SandboxId("s".into()),
            name: "c".into(),
            state,
            created_at: at,
            started_at: Some(at),
            finished_at: exit.map(|_| at),
            exit_code: exit,
            reason: reason.into(),
            message: String::new(),
            log_path: None,
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
        }))
        .expect("pod")
    }

    fn view<'a>(pod: &'a Pod, c: ContainerView<'a>, phase: Phase) -> PodView<'a> {
        PodView {
            pod,
            phase,
            sandbox_ready: true,
            init: Vec::new(),
            main: vec![c],
            host_ip: "127.0.0.1",
            pod_ip: "127.0.0.1",
            rejected: None,
            start_time: Timestamp::from_second(1_700_000_000).expect("time"),
        }
    }

    fn condition<'a>(s: &'a Value, kind: &str) -> &'a Value {
        s["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn status_should_show_crash_loop_back_off_with_the_exited_instance_as_last_state() {
        let p = pod();
        let exited = instance("b", ContainerState::Exited, Some(3), "Error");
        let older = instance("a", ContainerState::Exited, Some(3), "Error");
        let c = ContainerView {
            name: "c",
            image: "busybox",
            current: Some(&exited),
            previous: Some(&older),
            restarts: 2,
            waiting: Some((
                "CrashLoopBackOff",
                "back-off 20s restarting failed container=c pod=p_ns(u)",
            )),
            started: true,
            ready: true,
        };
        let s = build(&view(&p, c, Phase::Running), "process", Timestamp::now());
        let cs = &s["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(cs["lastState"]["terminated"]["containerID"], "process://b");
        assert_eq!(cs["restartCount"], 2);
        assert_eq!(cs["ready"], false);
        assert_eq!(condition(&s, "Ready")["reason"], "ContainersNotReady");
        assert_eq!(
            condition(&s, "Ready")["message"],
            "containers with unready status: [c]"
        );
        assert_eq!(s["qosClass"], "Guaranteed");
        assert_eq!(s["podIP"], "127.0.0.1");
    }

    #[test]
    fn status_should_be_ready_only_when_running_started_and_ready() {
        let p = pod();
        let running = instance("a", ContainerState::Running, None, "");
        for (started, ready, expect) in [
            (true, true, true),
            (false, true, false),
            (true, false, false),
        ] {
            let c = ContainerView {
                name: "c",
                image: "busybox",
                current: Some(&running),
                previous: None,
                restarts: 0,
                waiting: None,
                started,
                ready,
            };
            let s = build(&view(&p, c, Phase::Running), "process", Timestamp::now());
            assert_eq!(s["containerStatuses"][0]["ready"], expect);
            assert_eq!(s["containerStatuses"][0]["started"], started);
            let want = if expect { "True" } else { "False" };
            assert_eq!(condition(&s, "Ready")["status"], want);
            assert_eq!(condition(&s, "ContainersReady")["status"], want);
        }
    }

    #[test]
    fn status_should_say_pod_completed_when_finished() {
        let p = pod();
        let done = instance("a", ContainerState::Exited, Some(0), "Completed");
        let c = ContainerView {
            name: "c",
            image: "busybox",
            current: Some(&done),
            previous: None,
            restarts: 0,
            waiting: None,
            started: true,
            ready: true,
        };
        let s = build(&view(&p, c, Phase::Succeeded), "process", Timestamp::now());
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(condition(&s, "Ready")["reason"], "PodCompleted");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
    }
}
