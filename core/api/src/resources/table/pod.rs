//! Pod rows: upstream's `printPod` (Ready, Status reason, Restarts, IP, Node, ...).

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{condition_true, flag, int, list, name, present, text};
use super::time::{age, human_duration, parse};
use crate::pointer::Pointer;

/// The cells of a pod row, in [`super::columns::POD`] order.
pub(crate) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let status = Status::of(pod);
    let restarts = match status.last_restart {
        Some(at) if status.restarts != 0 => format!(
            "{} ({} ago)",
            status.restarts,
            human_duration(now.duration_since(at))
        ),
        _ => status.restarts.to_string(),
    };
    let ip = list(pod, "/status/podIPs")
        .first()
        .map(|p| text(p, "/ip"))
        .unwrap_or("");
    let ip = if ip.is_empty() {
        text(pod, "/status/podIP")
    } else {
        ip
    };
    vec![
        name(pod),
        json!(format!("{}/{}", status.ready, status.total)),
        json!(status.reason),
        json!(restarts),
        json!(age(text(pod, "/metadata/creationTimestamp"), now)),
        json!(or_none(ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates(pod)),
    ]
}

/// Row conditions: upstream marks finished pods `Completed` so clients may hide them.
pub(crate) fn conditions(pod: &Value) -> Vec<Value> {
    let (reason, message) = match text(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

/// `"<none>"`, or how many readiness gates have a `True` condition (`"1/2"`).
fn readiness_gates(pod: &Value) -> String {
    let gates = list(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list(pod, "/status/conditions");
    let ready = gates
        .iter()
        .filter(|g| {
            let t = text(g, "/conditionType");
            conditions
                .iter()
                .find(|c| text(c, "/type") == t)
                .is_some_and(|c| text(c, "/status") == "True")
        })
        .count();
    format!("{ready}/{}", gates.len())
}

/// What the Ready, Status and Restarts cells are computed from.
struct Status {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

/// The later of a stored restart time and a container's last termination.
fn later(current: Option<Timestamp>, container: &Value) -> Option<Timestamp> {
    let finished = parse(text(container, "/lastState/terminated/finishedAt"));
    match (current, finished) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `Signal:N` / `ExitCode:N` for a terminated state without a reason.
fn exit(terminated: &Value) -> String {
    match int(terminated, "/signal") {
        0 => format!("ExitCode:{}", int(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

impl Status {
    fn of(pod: &Value) -> Status {
        let init_specs = list(pod, "/spec/initContainers");
        let restartable = |name: &str| {
            init_specs
                .iter()
                .any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always")
        };
        let mut s = Status {
            ready: 0,
            total: list(pod, "/spec/containers").len()
                + init_specs
                    .iter()
                    .filter(|c| text(c, "/restartPolicy") == "Always")
                    .count(),
            reason: match text(pod, "/status/reason") {
                "" => text(pod, "/status/phase").to_string(),
                r => r.to_string(),
            },
            restarts: 0,
            last_restart: None,
        };
        let conditions = list(pod, "/status/conditions");
        if conditions
            .iter()
            .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
        {
            s.reason = "SchedulingGated".to_string();
        }

        let mut sidecar_restarts = 0;
        let mut sidecar_last_restart = None;
        let mut initializing = false;
        for (i, c) in list(pod, "/status/initContainerStatuses")
            .iter()
            .enumerate()
        {
            s.restarts += int(c, "/restartCount");
            s.last_restart = later(s.last_restart, c);
            let sidecar = restartable(text(c, "/name"));
            if sidecar {
                sidecar_restarts += int(c, "/restartCount");
                sidecar_last_restart = later(sidecar_last_restart, c);
            }
            let terminated = c.at("/state/terminated").filter(|t| !t.is_null());
            let waiting_reason = text(c, "/state/waiting/reason");
            match terminated {
                Some(t) if int(t, "/exitCode") == 0 => continue,
                _ if sidecar && flag(c, "/started") => {
                    if flag(c, "/ready") {
                        s.ready += 1;
                    }
                    continue;
                }
                Some(t) => {
                    s.reason = match text(t, "/reason") {
                        "" => format!("Init:{}", exit(t)),
                        r => format!("Init:{r}"),
                    };
                }
                None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                    s.reason = format!("Init:{waiting_reason}");
                }
                None => s.reason = format!("Init:{i}/{}", init_specs.len()),
            }
            initializing = true;
            break;
        }

        if !initializing || condition_true(conditions, "Initialized") {
            s.restarts = sidecar_restarts;
            s.last_restart = sidecar_last_restart;
            let mut has_running = false;
            for c in list(pod, "/status/containerStatuses").iter().rev() {
                s.restarts += int(c, "/restartCount");
                s.last_restart = later(s.last_restart, c);
                let waiting_reason = text(c, "/state/waiting/reason");
                let terminated = c.at("/state/terminated").filter(|t| !t.is_null());
                if !waiting_reason.is_empty() {
                    s.reason = waiting_reason.to_string();
                } else if let Some(t) = terminated {
                    s.reason = match text(t, "/reason") {
                        "" => exit(t),
                        r => r.to_string(),
                    };
                } else if flag(c, "/ready") && present(c, "/state/running") {
                    has_running = true;
                    s.ready += 1;
                }
            }
            if s.reason == "Completed" && has_running {
                s.reason = if condition_true(conditions, "Ready") {
                    "Running"
                } else {
                    "NotReady"
                }
                .to_string();
            }
        }

        if present(pod, "/metadata/deletionTimestamp") {
            if text(pod, "/status/reason") == "NodeLost" {
                s.reason = "Unknown".to_string();
            } else if !matches!(text(pod, "/status/phase"), "Succeeded" | "Failed") {
                s.reason = "Terminating".to_string();
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("now")
    }

    fn running_pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2025-06-01T11:50:00Z"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "web", "ready": true, "restartCount": 2, "image": "nginx", "imageID": "",
                     "state": {"running": {"startedAt": "2025-06-01T11:55:00Z"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:55:00Z"}}},
                    {"name": "log", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
                     "state": {"waiting": {"reason": "ContainerCreating"}}}
                ]
            }
        })
    }

    #[test]
    fn pod_cells_should_show_ready_reason_restarts_and_placement() {
        let cells = cells(&running_pod(), now());
        assert_eq!(
            cells,
            vec![
                json!("web-1"),
                json!("1/2"),
                json!("ContainerCreating"),
                json!("2 (5m ago)"),
                json!("10m"),
                json!("10.0.0.7"),
                json!("node-a"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn pod_cells_should_show_pending_pods_without_placement() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        let cells = cells(&pod, now());
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "Pending");
        assert_eq!(cells[3], "0");
        assert_eq!(cells[4], "<unknown>");
        assert_eq!(cells[5], "<none>");
        assert_eq!(cells[6], "<none>");
    }

    #[test]
    fn pod_cells_should_show_terminating_and_completed() {
        let mut pod = running_pod();
        pod["metadata"]["deletionTimestamp"] = json!("2025-06-01T11:59:00Z");
        assert_eq!(cells(&pod, now())[2], "Terminating");

        let done = json!({
            "metadata": {"name": "job-x", "deletionTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}
        });
        assert_eq!(cells(&done, now())[2], "Completed");
        assert_eq!(conditions(&done)[0]["type"], "Completed");
        assert!(conditions(&running_pod()).is_empty());
    }

    #[test]
    fn pod_cells_should_show_init_progress_and_failures() {
        let mut pod = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "restartCount": 0, "state": {"running": {}}}
            ]}
        });
        assert_eq!(cells(&pod, now())[2], "Init:1/2");
        pod["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(cells(&pod, now())[2], "Init:CrashLoopBackOff");
        pod["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(cells(&pod, now())[2], "Init:ExitCode:3");
    }

    #[test]
    fn pod_cells_should_count_started_sidecars_as_containers() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}}}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        });
        let cells = cells(&pod, now());
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "1");
    }

    #[test]
    fn pod_cells_should_show_exit_codes_and_readiness_gates() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
            "status": {"phase": "Running", "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}],
                "containerStatuses": [{"name": "c", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}
        });
        let cells = cells(&pod, now());
        assert_eq!(cells[2], "Signal:9");
        assert_eq!(cells[8], "1/2");
    }
}
