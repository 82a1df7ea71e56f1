//! Admission of pods sharing the node's network (`network = "host"`, `hostNetwork`):
//! every container port of such a pod is a port of the node, so a pod asking for a
//! port another admitted pod holds is rejected, as upstream's kubelet rejects a pod
//! whose host ports are taken: phase Failed, reason `NodePorts`.

use k8s_openapi::api::core::v1::Pod;

use super::Shared;

/// `status.reason` of a pod rejected for a taken port (upstream's predicate name).
pub(super) const REASON: &str = "NodePorts";

/// The node ports a pod sharing the node's network binds: `hostPort` if set, else
/// `containerPort`, with the protocol (TCP by default).
fn ports(pod: &Pod) -> Vec<(String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| {
            (
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_port.filter(|h| *h > 0).unwrap_or(p.container_port),
            )
        })
        .collect()
}

/// Who holds a port: the pod's `namespace/name` and uid.
pub(super) type Owner = (String, String);

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Takes `pod`'s ports for pod `key`: `Ok(true)` when taken, `Ok(false)` while a
/// previous pod of the same name (being stopped) still holds one, or why it is
/// rejected (upstream's message) when another pod holds one.
pub(super) fn admit(shared: &Shared, key: &str, pod: &Pod) -> Result<bool, String> {
    let wanted = ports(pod);
    let me = uid(pod);
    let mut held = shared.host_ports.lock();
    let predecessor = wanted
        .iter()
        .any(|p| held.get(p).is_some_and(|o| o.0 == key && o.1 != me));
    if predecessor {
        return Ok(false);
    }
    let taken: Vec<String> = wanted
        .iter()
        .filter_map(|p| {
            held.get(p)
                .filter(|owner| owner.1 != me)
                .map(|owner| format!("{}/{} (held by pod {})", p.1, p.0, owner.0))
        })
        .collect();
    if !taken.is_empty() {
        return Err(format!(
            "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports: {}",
            taken.join(", ")
        ));
    }
    for p in wanted {
        held.insert(p, (key.to_string(), me.clone()));
    }
    Ok(true)
}

/// Records `pod`'s ports as held by `key` without checking (a pod re-adopted after a
/// kubelet restart already runs).
pub(super) fn claim(shared: &Shared, key: &str, pod: &Pod) {
    let mut held = shared.host_ports.lock();
    for p in ports(pod) {
        held.insert(p, (key.to_string(), uid(pod)));
    }
}

/// Gives back the ports the pod with uid `uid` holds.
pub(super) fn release(shared: &Shared, uid: &str) {
    shared.host_ports.lock().retain(|_, owner| owner.1 != uid);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_should_prefer_the_host_port_and_default_to_tcp() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 8080},
                {"containerPort": 53, "hostPort": 1053, "protocol": "UDP"},
            ]}]},
        }))
        .expect("pod");
        assert_eq!(
            ports(&pod),
            vec![("TCP".to_string(), 8080), ("UDP".to_string(), 1053)]
        );
    }
}
