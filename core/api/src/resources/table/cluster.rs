//! Node and namespace rows: upstream's `printNode` and `printNamespace`.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{flag, list, name, text};
use super::time::age;
use crate::pointer::Pointer;

/// Label prefix naming a node role (`node-role.kubernetes.io/control-plane`).
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// Legacy label whose value names a node role.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

/// The cells of a node row, in [`super::columns::NODE`] order.
pub(crate) fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<&str> = Vec::new();
    if let Some(ready) = list(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| text(c, "/type") == "Ready")
    {
        status.push(if text(ready, "/status") == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    } else {
        status.push("Unknown");
    }
    if flag(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| match text(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(roles(node)),
        json!(age(text(node, "/metadata/creationTimestamp"), now)),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(address(node, "InternalIP")),
        json!(address(node, "ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// The cells of a namespace row, in [`super::columns::NAMESPACE`] order.
pub(crate) fn namespace_cells(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(ns),
        json!(text(ns, "/status/phase")),
        json!(age(text(ns, "/metadata/creationTimestamp"), now)),
    ]
}

/// Sorted roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels, or `<none>`.
fn roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(labels) = node.at("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix(NODE_ROLE_PREFIX).filter(|r| !r.is_empty()) {
                roles.insert(role.to_string());
            } else if k == NODE_ROLE_LABEL {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// The first node address of a type, or `<none>`.
fn address(node: &Value, type_: &str) -> String {
    list(node, "/status/addresses")
        .iter()
        .find(|a| text(a, "/type") == type_)
        .map_or_else(|| "<none>".to_string(), |a| text(a, "/address").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-a", "creationTimestamp": "2025-05-27T12:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "", "kubernetes.io/hostname": "node-a"}},
            "spec": {},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-a"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-kubernel", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0",
                    "containerRuntimeVersion": "", "architecture": "amd64", "operatingSystem": "linux", "bootID": "", "machineID": "",
                    "systemUUID": "", "kubeProxyVersion": ""}
            }
        })
    }

    #[test]
    fn node_cells_should_show_status_roles_and_system_info() {
        let now = "2025-06-01T12:00:00Z".parse().expect("now");
        assert_eq!(
            node_cells(&node(), now),
            vec![
                json!("node-a"),
                json!("Ready"),
                json!("control-plane,etcd"),
                json!("5d"),
                json!("v1.33.0-kubernel"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0"),
                json!("<unknown>"),
            ]
        );
    }

    #[test]
    fn node_cells_should_show_not_ready_unknown_and_cordoned() {
        let now = Timestamp::UNIX_EPOCH;
        let mut n = node();
        n["spec"]["unschedulable"] = json!(true);
        n["status"]["conditions"][1]["status"] = json!("Unknown");
        assert_eq!(node_cells(&n, now)[1], "NotReady,SchedulingDisabled");
        n["status"]["conditions"] = json!([]);
        assert_eq!(node_cells(&n, now)[1], "Unknown,SchedulingDisabled");
        n["metadata"]["labels"] = json!({"kubernetes.io/role": "worker"});
        assert_eq!(node_cells(&n, now)[2], "worker");
        n["metadata"]["labels"] = json!({});
        assert_eq!(node_cells(&n, now)[2], "<none>");
    }
}
