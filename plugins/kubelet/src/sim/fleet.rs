//! The simulated nodes: their names, addresses and pod CIDRs (all derived from the node's
//! index), pause flags, and the Node, NodeStatus and Lease objects built from the templates.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::cidr::Ipv4Cidr;
use crate::config::{KubeletConfig, NODE_CIDR_PREFIX};
use crate::pod_status::{k8s_micro_time, k8s_time};

/// Label every simulated node carries (`kubernel.io/sim=true`), as KWOK's `type=kwok`.
pub const SIM_LABEL: &str = "kubernel.io/sim";

/// Node annotation that pauses a simulated node's kubelet while it is `"true"`.
pub const PAUSED_ANNOTATION: &str = "kubernel.io/sim-paused";

/// Namespace of the node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Port reported as the node's kubelet endpoint (nothing listens there for sim nodes).
const KUBELET_PORT: u16 = 10250;

/// Per-node state: a few bytes, so 5,000 nodes cost little.
struct Slot {
    uid: OnceLock<Box<str>>,
    config_paused: bool,
    annotation_paused: AtomicBool,
}

/// Every simulated node of one kubelet instance.
pub struct Fleet {
    prefix: String,
    slots: Vec<Slot>,
    cluster_cidr: Ipv4Cidr,
    node_ip_cidr: Ipv4Cidr,
    /// Labels shared by every node (the per-node ones are added when building a node).
    labels: Map<String, Value>,
    zones: Vec<String>,
    taints: Value,
    capacity: Value,
    allocatable: Value,
    architecture: String,
    runtime_version: String,
    lease_duration_seconds: i32,
    boot_id: String,
}

impl Fleet {
    /// The fleet `config` describes; `runtime_version` goes into each node's `nodeInfo`.
    pub fn new(config: &KubeletConfig, runtime_version: String) -> Fleet {
        let count = config.nodes as usize;
        let slots = (0..count)
            .map(|i| Slot {
                uid: OnceLock::new(),
                config_paused: config
                    .paused_nodes
                    .iter()
                    .any(|n| *n == format!("{}{i}", config.node_name_prefix)),
                annotation_paused: AtomicBool::new(false),
            })
            .collect();
        let mut labels: Map<String, Value> = config
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        labels.insert("kubernetes.io/os".into(), json!("linux"));
        labels.insert("kubernetes.io/arch".into(), json!(config.architecture));
        labels.insert(SIM_LABEL.into(), json!("true"));
        let taints: Vec<Value> = config
            .taints
            .iter()
            .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
            .collect();
        let mut allocatable = config.capacity.clone();
        allocatable.extend(config.allocatable.clone());
        Fleet {
            prefix: config.node_name_prefix.clone(),
            slots,
            cluster_cidr: config.cluster_cidr,
            node_ip_cidr: config.node_ip_cidr,
            labels,
            zones: config.zones.clone(),
            taints: Value::Array(taints),
            capacity: json!(config.capacity),
            allocatable: json!(allocatable),
            architecture: config.architecture.clone(),
            runtime_version,
            lease_duration_seconds: config.lease_duration_seconds,
            boot_id: format!("{:032x}", Timestamp::now().as_nanosecond()),
        }
    }

    /// How many nodes.
    pub fn count(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Name of node `i`.
    pub fn name(&self, i: u32) -> String {
        format!("{}{i}", self.prefix)
    }

    /// The index of the node called `name`, if it is one of ours.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        let digits = name.strip_prefix(self.prefix.as_str())?;
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        let i: u32 = digits.parse().ok()?;
        (i < self.count()).then_some(i)
    }

    /// The pod CIDR of node `i`.
    pub fn pod_cidr(&self, i: u32) -> Option<Ipv4Cidr> {
        self.cluster_cidr.subnet(NODE_CIDR_PREFIX, u64::from(i))
    }

    /// The fake `InternalIP` of node `i`.
    pub fn host_ip(&self, i: u32) -> Ipv4Addr {
        self.node_ip_cidr
            .host(u64::from(i) + 1)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// True when node `i`'s kubelet is paused (by config or annotation).
    pub fn is_paused(&self, i: u32) -> bool {
        self.slots
            .get(i as usize)
            .is_some_and(|s| s.config_paused || s.annotation_paused.load(Ordering::Relaxed))
    }

    /// Records node `i`'s pause annotation; returns true when that resumed the node.
    pub fn set_annotation_paused(&self, i: u32, paused: bool) -> bool {
        let Some(slot) = self.slots.get(i as usize) else {
            return false;
        };
        let was = slot.annotation_paused.swap(paused, Ordering::Relaxed);
        was && !paused && !slot.config_paused
    }

    /// How many nodes are paused.
    pub fn paused_count(&self) -> usize {
        (0..self.count()).filter(|i| self.is_paused(*i)).count()
    }

    /// Records node `i`'s uid (from its registration); the Lease's owner reference uses it.
    pub fn set_uid(&self, i: u32, uid: &str) {
        if let Some(slot) = self.slots.get(i as usize) {
            let _ = slot.uid.set(uid.into());
        }
    }

    /// True once node `i` is registered.
    pub fn is_registered(&self, i: u32) -> bool {
        self.slots
            .get(i as usize)
            .is_some_and(|s| s.uid.get().is_some())
    }

    /// The labels node `i` carries.
    pub fn labels(&self, i: u32) -> Value {
        let mut labels = self.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), json!(self.name(i)));
        if !self.zones.is_empty() {
            let zone = &self.zones[i as usize % self.zones.len()];
            labels.insert("topology.kubernetes.io/zone".into(), json!(zone));
        }
        Value::Object(labels)
    }

    /// The Node object registering node `i`, status included.
    pub fn node_object(&self, i: u32, now: Timestamp) -> Value {
        let cidr = self.pod_cidr(i).map(|c| c.to_string()).unwrap_or_default();
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name(i),
                "labels": self.labels(i),
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {
                "podCIDR": cidr,
                "podCIDRs": [cidr],
                "taints": self.taints,
            },
            "status": self.node_status(i, now, true)["status"],
        })
    }

    /// NodeStatus of node `i` as a strategic-merge patch body; `transition` also resets
    /// the conditions' `lastTransitionTime` (on registration and when the node resumes).
    pub fn node_status(&self, i: u32, now: Timestamp, transition: bool) -> Value {
        let now = k8s_time(now);
        let condition = |kind: &str, status: &str, reason: &str, message: &str| {
            let mut c = json!({
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
            });
            if transition {
                c["lastTransitionTime"] = json!(now);
            }
            c
        };
        let name = self.name(i);
        json!({"status": {
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip(i).to_string()},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {
                "machineID": format!("{i:032x}"),
                "systemUUID": format!("00000000-0000-4000-8000-{i:012x}"),
                "bootID": self.boot_id,
                "kernelVersion": "kubernel-sim",
                "osImage": "kubernel simulated node",
                "containerRuntimeVersion": self.runtime_version,
                "kubeletVersion": "v1.33.0",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.architecture,
            },
        }})
    }

    /// The Lease of node `i`, renewed `now`, owned by the Node when its uid is known.
    pub fn lease_object(&self, i: u32, now: Timestamp) -> Value {
        let name = self.name(i);
        let mut lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": self.lease_duration_seconds,
                "renewTime": k8s_micro_time(now),
            },
        });
        if let Some(uid) = self.slots.get(i as usize).and_then(|s| s.uid.get()) {
            lease["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "v1", "kind": "Node", "name": name, "uid": &**uid,
            }]);
        }
        lease
    }

    /// The merge patch renewing node `i`'s Lease `now`.
    pub fn lease_renewal(&self, i: u32, now: Timestamp) -> Value {
        json!({"spec": {
            "holderIdentity": self.name(i),
            "leaseDurationSeconds": self.lease_duration_seconds,
            "renewTime": k8s_micro_time(now),
        }})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(extra: &str) -> Fleet {
        let config: KubeletConfig =
            toml::from_str(&format!("runtime = \"sim\"\nnodes = 300\n{extra}")).expect("config");
        Fleet::new(&config, "sim://test".into())
    }

    #[test]
    fn fleet_should_derive_names_addresses_and_cidrs_from_the_index() {
        let f = fleet("");
        assert_eq!(f.name(299), "sim-node-299");
        assert_eq!(f.index_of("sim-node-299"), Some(299));
        assert_eq!(f.index_of("sim-node-300"), None);
        assert_eq!(f.index_of("sim-node-07"), None);
        assert_eq!(f.index_of("other-1"), None);
        assert_eq!(
            f.pod_cidr(257).map(|c| c.to_string()),
            Some("10.129.1.0/24".into())
        );
        assert_eq!(f.host_ip(0), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(f.host_ip(256), Ipv4Addr::new(10, 200, 1, 1));
    }

    #[test]
    fn node_object_should_carry_templates_zones_and_ready_status() {
        let f = fleet(
            "zones = [\"a\", \"b\"]\nlabels = { tier = \"gold\" }\ntaints = [{ key = \"k\", effect = \"NoSchedule\" }]",
        );
        let node = f.node_object(3, Timestamp::now());
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "sim-node-3");
        assert_eq!(labels["topology.kubernetes.io/zone"], "b");
        assert_eq!(labels["tier"], "gold");
        assert_eq!(labels[SIM_LABEL], "true");
        assert_eq!(node["spec"]["podCIDR"], "10.128.3.0/24");
        assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
        assert_eq!(node["status"]["capacity"]["pods"], "110");
        assert_eq!(node["status"]["conditions"][3]["type"], "Ready");
        assert_eq!(node["status"]["conditions"][3]["status"], "True");
        assert_eq!(node["status"]["addresses"][0]["address"], "10.200.0.4");
        let heartbeat = f.node_status(3, Timestamp::now(), false);
        assert!(heartbeat["status"]["conditions"][3]
            .get("lastTransitionTime")
            .is_none());
    }

    #[test]
    fn pause_should_combine_config_and_annotation() {
        let f = fleet("paused_nodes = [\"sim-node-1\"]");
        assert!(f.is_paused(1));
        assert!(!f.is_paused(2));
        assert!(!f.set_annotation_paused(2, true));
        assert!(f.is_paused(2));
        assert_eq!(f.paused_count(), 2);
        assert!(f.set_annotation_paused(2, false), "resumed");
        assert!(!f.set_annotation_paused(1, false), "still paused by config");
        assert!(f.is_paused(1));
    }
}
