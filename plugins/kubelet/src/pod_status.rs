//! Builds a pod's `status` from what the runtime reports: phase, conditions, container
//! statuses and addresses, as the kubelet's status manager posts them.

use std::net::Ipv4Addr;

use jiff::Timestamp;
use serde::Serialize;

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

/// A pod's `status` as the kubelet posts it, serialized straight from this
/// type (no JSON tree is built for the thousands of reports a sim kubelet sends).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusReport {
    phase: &'static str,
    conditions: [ConditionReport; 5],
    #[serde(rename = "hostIP")]
    host_ip: String,
    #[serde(rename = "hostIPs")]
    host_ips: [Ip; 1],
    #[serde(rename = "podIP")]
    pod_ip: String,
    #[serde(rename = "podIPs")]
    pod_ips: [Ip; 1],
    start_time: String,
    container_statuses: Vec<ContainerReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    init_container_statuses: Vec<ContainerReport>,
}

#[derive(Debug, Clone, Serialize)]
struct Ip {
    ip: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConditionReport {
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    /// Always `null`, as the kubelet writes it.
    last_probe_time: Option<String>,
    last_transition_time: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerReport {
    name: Box<str>,
    image: Box<str>,
    #[serde(rename = "imageID")]
    image_id: &'static str,
    ready: bool,
    started: bool,
    restart_count: i32,
    #[serde(rename = "containerID", skip_serializing_if = "Option::is_none")]
    container_id: Option<String>,
    state: StateReport,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
enum StateReport {
    Waiting {
        reason: &'static str,
    },
    #[serde(rename_all = "camelCase")]
    Running {
        started_at: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Terminated {
        exit_code: i32,
        reason: String,
        started_at: Option<String>,
        finished_at: Option<String>,
        #[serde(rename = "containerID")]
        container_id: String,
    },
}

/// The `status` of a pod given its facts, sandbox and containers, observed at `now`.
pub fn pod_status(
    pod: &PodFacts,
    at: Placement<'_>,
    sandbox: &SandboxStatus,
    containers: &[ContainerStatus],
    now: Timestamp,
) -> PodStatusReport {
    let find = |name: &str| containers.iter().find(|c| c.name == name);
    let statuses = |list: &[ContainerFacts]| -> Vec<ContainerReport> {
        list.iter()
            .map(|c| container_status(c, find(&c.name), at.runtime))
            .collect()
    };
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
    let condition = |kind: &'static str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        // A condition keeps its transition time while its status stays the same.
        let since = pod
            .conditions
            .iter()
            .find(|c| &*c.kind == kind && &*c.status == status)
            .and_then(|c| c.since)
            .unwrap_or(now);
        ConditionReport {
            kind,
            status,
            last_probe_time: None,
            last_transition_time: k8s_time(since),
        }
    };
    PodStatusReport {
        phase,
        conditions: [
            condition("PodReadyToStartContainers", true),
            condition("Initialized", initialized),
            condition("Ready", all_running),
            condition("ContainersReady", all_running),
            condition("PodScheduled", true),
        ],
        host_ips: [Ip {
            ip: host_ip.clone(),
        }],
        host_ip,
        pod_ips: [Ip { ip: pod_ip.clone() }],
        pod_ip,
        start_time: k8s_time(pod.start_time.unwrap_or(sandbox.created_at)),
        container_statuses: statuses(&pod.containers),
        init_container_statuses: statuses(&pod.init_containers),
    }
}

fn container_status(
    spec: &ContainerFacts,
    seen: Option<&ContainerStatus>,
    runtime: &str,
) -> ContainerReport {
    let mut out = ContainerReport {
        name: spec.name.clone(),
        image: spec.image.clone(),
        image_id: "",
        ready: false,
        started: false,
        restart_count: 0,
        container_id: None,
        state: StateReport::Waiting {
            reason: "ContainerCreating",
        },
    };
    let Some(c) = seen else {
        return out;
    };
    let id = format!("{runtime}://{}", c.id.0);
    let time = |t: Option<Timestamp>| t.map(k8s_time);
    out.state = match c.state {
        ContainerState::Created => StateReport::Waiting {
            reason: "ContainerCreating",
        },
        ContainerState::Running => {
            out.ready = true;
            out.started = true;
            StateReport::Running {
                started_at: time(c.started_at),
            }
        }
        ContainerState::Exited => StateReport::Terminated {
            exit_code: c.exit_code.unwrap_or(0),
            reason: c.reason.clone(),
            started_at: time(c.started_at),
            finished_at: time(c.finished_at),
            container_id: id.clone(),
        },
    };
    out.container_id = Some(id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerId, SandboxId, SandboxState};
    use serde_json::{json, Value};

    /// [`pod_status`] as the JSON it is posted as.
    fn pod_status(
        pod: &PodFacts,
        at: Placement<'_>,
        sandbox: &SandboxStatus,
        containers: &[ContainerStatus],
        now: Timestamp,
    ) -> Value {
        serde_json::to_value(super::pod_status(pod, at, sandbox, containers, now))
            .expect("a status serializes")
    }

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
    fn pod_status_should_serialize_as_the_kubelet_posts_it() {
        let containers = [
            container("init", ContainerState::Exited),
            container("web", ContainerState::Running),
        ];
        let now = Timestamp::from_second(1_700_000_100).expect("time");
        let s = pod_status(&PodFacts::of(&pod()), AT, &sandbox(), &containers, now);
        let condition = |kind: &str| {
            json!({"type": kind, "status": "True", "lastProbeTime": null,
                   "lastTransitionTime": "2023-11-14T22:15:00Z"})
        };
        let at = "2023-11-14T22:13:20Z";
        assert_eq!(
            s,
            json!({
                "phase": "Running",
                "conditions": [
                    condition("PodReadyToStartContainers"), condition("Initialized"),
                    condition("Ready"), condition("ContainersReady"), condition("PodScheduled"),
                ],
                "hostIP": "10.200.0.1", "hostIPs": [{"ip": "10.200.0.1"}],
                "podIP": "10.128.0.2", "podIPs": [{"ip": "10.128.0.2"}],
                "startTime": at,
                "containerStatuses": [{
                    "name": "web", "image": "nginx", "imageID": "", "ready": true,
                    "started": true, "restartCount": 0, "containerID": "sim://id-web",
                    "state": {"running": {"startedAt": at}}
                }],
                "initContainerStatuses": [{
                    "name": "init", "image": "busybox", "imageID": "", "ready": false,
                    "started": false, "restartCount": 0, "containerID": "sim://id-init",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                        "startedAt": at, "finishedAt": at, "containerID": "sim://id-init"}}
                }]
            })
        );
        let s = pod_status(&PodFacts::of(&pod()), AT, &sandbox(), &[], now);
        assert_eq!(
            s["containerStatuses"][0]["state"],
            json!({"waiting": {"reason": "ContainerCreating"}})
        );
        assert_eq!(s["containerStatuses"][0].get("containerID"), None);
    }

    #[test]
    fn micro_time_should_keep_microseconds() {
        let ts = Timestamp::from_millisecond(1_700_000_000_123).expect("time");
        assert_eq!(k8s_micro_time(ts), "2023-11-14T22:13:20.123000Z");
        assert_eq!(k8s_time(ts), "2023-11-14T22:13:20Z");
    }
}
