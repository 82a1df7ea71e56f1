//! Builds a pod's `status` from what the runtime reports: phase, conditions, container
//! statuses and addresses, as the kubelet's status manager posts them.

use std::net::Ipv4Addr;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::runtime::{ContainerState, ContainerStatus, SandboxStatus};
use crate::watched_pod::{WatchedContainer, WatchedPod};

/// A Kubernetes `Time` (seconds precision, UTC).
pub fn k8s_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Kubernetes `MicroTime` (microseconds precision, UTC), as Leases use.
pub fn k8s_micro_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Where a pod runs: the node's address and the runtime's name.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The node's `InternalIP`.
    pub host_ip: Ipv4Addr,
    /// Runtime name, the scheme of container ids (`sim`).
    pub runtime: &'a str,
}

/// One container of a pod's spec, as far as its status needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    /// Container name.
    pub name: Box<str>,
    /// Image reference.
    pub image: Box<str>,
}

/// One condition a pod already has: its type, status and transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionFacts {
    /// `Ready`, `PodScheduled`, ...
    pub kind: Box<str>,
    /// `True`, `False` or `Unknown`.
    pub status: Box<str>,
    /// `lastTransitionTime`.
    pub since: Option<Timestamp>,
}

/// The little of a Pod its status is built from (kept instead of the whole object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `status.startTime`, once set.
    pub start_time: Option<Timestamp>,
    /// `spec.initContainers`.
    pub init_containers: Box<[ContainerFacts]>,
    /// `spec.containers`.
    pub containers: Box<[ContainerFacts]>,
    /// `status.conditions`.
    pub conditions: Box<[ConditionFacts]>,
}

impl PodFacts {
    /// Extracts the facts from `pod`.
    pub fn of(pod: &WatchedPod) -> PodFacts {
        let spec = pod.spec.as_ref();
        let containers = |list: Option<&[WatchedContainer]>| -> Box<[ContainerFacts]> {
            list.unwrap_or_default()
                .iter()
                .map(|c| ContainerFacts {
                    name: c.name.as_str().into(),
                    image: c.image.as_deref().unwrap_or_default().into(),
                })
                .collect()
        };
        let status = pod.status.as_ref();
        PodFacts {
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            init_containers: containers(spec.map(|s| s.init_containers.as_slice())),
            containers: containers(spec.map(|s| s.containers.as_slice())),
            conditions: status
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|c| ConditionFacts {
                    kind: c.type_.as_str().into(),
                    status: c.status.as_str().into(),
                    since: c.last_transition_time.as_ref().map(|t| t.0),
                })
                .collect(),
        }
    }
}

/// The `status` of a pod given its facts, sandbox and containers, observed at `now`.
pub fn pod_status(
    pod: &PodFacts,
    at: Placement<'_>,
    sandbox: &SandboxStatus,
    containers: &[ContainerStatus],
    now: Timestamp,
) -> Value {
    let find = |name: &str| containers.iter().find(|c| c.name == name);
    let init_statuses: Vec<Value> = pod
        .init_containers
        .iter()
        .map(|c| container_status(c, find(&c.name), at.runtime))
        .collect();
    let main_statuses: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| container_status(c, find(&c.name), at.runtime))
        .collect();
    let initialized = pod.init_containers.iter().all(|c| {
        find(&c.name).is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == Some(0))
    });
    let all_running = !pod.containers.is_empty()
        && pod
            .containers
            .iter()
            .all(|c| find(&c.name).is_some_and(|s| s.state == ContainerState::Running));
    let phase = if initialized && all_running {
        "Running"
    } else {
        "Pending"
    };
    let host_ip = at.host_ip.to_string();
    let pod_ip = match (pod.host_network, sandbox.ip) {
        (false, Some(ip)) => ip.to_string(),
        _ => host_ip.clone(),
    };
    let condition = |kind: &str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        // A condition keeps its transition time while its status stays the same.
        let since = pod
            .conditions
            .iter()
            .find(|c| &*c.kind == kind && &*c.status == status)
            .and_then(|c| c.since)
            .unwrap_or(now);
        json!({
            "type": kind,
            "status": status,
            "lastProbeTime": null,
            "lastTransitionTime": k8s_time(since),
        })
    };
    let mut status = json!({
        "phase": phase,
        "conditions": [
            condition("PodReadyToStartContainers", true),
            condition("Initialized", initialized),
            condition("Ready", all_running),
            condition("ContainersReady", all_running),
            condition("PodScheduled", true),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": k8s_time(pod.start_time.unwrap_or(sandbox.created_at)),
        "containerStatuses": main_statuses,
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = Value::Array(init_statuses);
    }
    status
}

fn container_status(spec: &ContainerFacts, seen: Option<&ContainerStatus>, runtime: &str) -> Value {
    let mut out = json!({
        "name": &*spec.name,
        "image": &*spec.image,
        "imageID": "",
        "ready": false,
        "started": false,
        "restartCount": 0,
    });
    let Some(c) = seen else {
        out["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        return out;
    };
    let id = format!("{runtime}://{}", c.id.0);
    out["containerID"] = json!(id);
    let time = |t: Option<Timestamp>| t.map(k8s_time);
    out["state"] = match c.state {
        ContainerState::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
        ContainerState::Running => {
            out["ready"] = json!(true);
            out["started"] = json!(true);
            json!({"running": {"startedAt": time(c.started_at)}})
        }
        ContainerState::Exited => json!({"terminated": {
            "exitCode": c.exit_code.unwrap_or(0),
            "reason": c.reason,
            "startedAt": time(c.started_at),
            "finishedAt": time(c.finished_at),
            "containerID": id,
        }}),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerId, SandboxId, SandboxState};

    fn pod() -> WatchedPod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "web", "image": "nginx"}]
            }
        }))
        .expect("pod")
    }

    fn container(name: &str, state: ContainerState) -> ContainerStatus {
        let at = Timestamp::from_second(1_700_000_000).expect("time");
        ContainerStatus {
            id: ContainerId(format!("id-{name}")),
            sandbox: SandboxId("s".into()),
            name: name.into(),
            state,
            created_at: at,
            started_at: Some(at),
            finished_at: (state == ContainerState::Exited).then_some(at),
            exit_code: (state == ContainerState::Exited).then_some(0),
            reason: if state == ContainerState::Exited {
                "Completed".into()
            } else {
                String::new()
            },
            message: String::new(),
            log_path: None,
        }
    }

    fn sandbox() -> SandboxStatus {
        SandboxStatus {
            id: SandboxId("s".into()),
            pod_uid: "u".into(),
            state: SandboxState::Ready,
            created_at: Timestamp::from_second(1_700_000_000).expect("time"),
            ip: Some(Ipv4Addr::new(10, 128, 0, 2)),
        }
    }

    const AT: Placement<'static> = Placement {
        host_ip: Ipv4Addr::new(10, 200, 0, 1),
        runtime: "sim",
    };

    #[test]
    fn pod_status_should_be_running_and_ready_when_every_container_runs() {
        let containers = [
            container("init", ContainerState::Exited),
            container("web", ContainerState::Running),
        ];
        let s = pod_status(
            &PodFacts::of(&pod()),
            AT,
            &sandbox(),
            &containers,
            Timestamp::now(),
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.128.0.2");
        assert_eq!(s["hostIP"], "10.200.0.1");
        assert_eq!(s["startTime"], "2023-11-14T22:13:20Z");
        let ready = s["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["status"], "True");
        assert_eq!(s["containerStatuses"][0]["containerID"], "sim://id-web");
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
    }

    #[test]
    fn pod_status_should_keep_the_transition_time_of_unchanged_conditions() {
        let mut p = pod();
        p.status = Some(
            serde_json::from_value(json!({"conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            ]}))
            .expect("status"),
        );
        let containers = [
            container("init", ContainerState::Exited),
            container("web", ContainerState::Running),
        ];
        let now = Timestamp::from_second(1_700_000_000).expect("time");
        let s = pod_status(&PodFacts::of(&p), AT, &sandbox(), &containers, now);
        let since = |kind: &str| {
            s["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == kind))
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or_default()
        };
        assert_eq!(since("PodScheduled"), "2020-01-01T00:00:00Z");
        assert_eq!(since("Ready"), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn pod_status_should_stay_pending_while_a_container_is_missing() {
        let s = pod_status(
            &PodFacts::of(&pod()),
            AT,
            &sandbox(),
            &[container("init", ContainerState::Exited)],
            Timestamp::now(),
        );
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
    }

    #[test]
    fn micro_time_should_keep_microseconds() {
        let ts = Timestamp::from_millisecond(1_700_000_000_123).expect("time");
        assert_eq!(k8s_micro_time(ts), "2023-11-14T22:13:20.123000Z");
        assert_eq!(k8s_time(ts), "2023-11-14T22:13:20Z");
    }
}
