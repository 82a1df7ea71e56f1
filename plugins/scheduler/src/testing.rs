//! Builders of pods and nodes for tests and benchmarks (also for the I/O layer's tests).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodAffinityTerm, PodAntiAffinity, PodSpec,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::pod_info::PodInfo;

/// Builds a [`Pod`] (and its [`PodInfo`]) with one container.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    pod: Pod,
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

impl PodBuilder {
    /// A pod `default/<name>` with uid `<name>` and one container without requests.
    pub fn new(name: &str) -> Self {
        PodBuilder {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some("default".into()),
                    uid: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: None,
            },
        }
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    fn request(mut self, resource: &str, amount: &str) -> Self {
        let c = &mut self.spec().containers[0];
        c.resources
            .get_or_insert_with(ResourceRequirements::default)
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert(resource.to_string(), q(amount));
        self
    }

    /// Requests CPU (`"500m"`).
    pub fn cpu(self, amount: &str) -> Self {
        self.request("cpu", amount)
    }

    /// Requests memory (`"1Gi"`).
    pub fn memory(self, amount: &str) -> Self {
        self.request("memory", amount)
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets the namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.pod.metadata.namespace = Some(ns.into());
        self
    }

    /// Sets `spec.priority`.
    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    /// Sets `status.startTime` to `seconds` after the Unix epoch.
    pub fn started(mut self, seconds: i64) -> Self {
        self.pod
            .status
            .get_or_insert_with(Default::default)
            .start_time = jiff::Timestamp::from_second(seconds)
            .ok()
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
        self
    }

    /// Sets `spec.schedulerName`.
    pub fn scheduler(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.into());
        self
    }

    /// Sets `spec.nodeName` (a bound pod).
    pub fn node(mut self, name: &str) -> Self {
        self.spec().node_name = Some(name.into());
        self
    }

    /// Sets `status.nominatedNodeName` (a pod that preempted on that node).
    pub fn nominated(mut self, node: &str) -> Self {
        self.pod
            .status
            .get_or_insert_with(Default::default)
            .nominated_node_name = Some(node.into());
        self
    }

    /// Sets `metadata.deletionTimestamp` (a terminating pod).
    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        self
    }

    /// Adds a TCP host port.
    pub fn host_port(mut self, port: i32) -> Self {
        self.spec().containers[0]
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                ..Default::default()
            });
        self
    }

    /// Adds a controller owner reference with this uid.
    pub fn owner(mut self, uid: &str) -> Self {
        self.pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: uid.into(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }]);
        self
    }

    /// Adds a toleration (`operator` `Equal` or `Exists`; empty effect = all).
    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: non_empty(key),
                operator: non_empty(operator),
                value: non_empty(value),
                effect: non_empty(effect),
                toleration_seconds: None,
            });
        self
    }

    /// Adds a `spec.nodeSelector` pair.
    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
    }

    /// Requires node label `key` to be one of `values` (one more ORed term).
    pub fn require_node_label(mut self, key: &str, values: &[&str]) -> Self {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default)
            .node_selector_terms
            .push(term);
        self
    }

    /// Prefers nodes with label `key=value`, with `weight`.
    pub fn prefer_node_label(mut self, weight: i32, key: &str, value: &str) -> Self {
        let preference = NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(vec![value.into()]),
            }]),
            match_fields: None,
        };
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm { weight, preference });
        self
    }

    /// Adds a topology spread constraint over pods with label `app=<app>`.
    pub fn spread(mut self, max_skew: i32, key: &str, hard: bool, app: &str) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: key.into(),
                when_unsatisfiable: if hard {
                    "DoNotSchedule"
                } else {
                    "ScheduleAnyway"
                }
                .into(),
                label_selector: Some(app_selector(app)),
                ..Default::default()
            });
        self
    }

    /// Adds a required pod anti-affinity to pods with `app=<app>` over `key`.
    pub fn anti_affinity(mut self, key: &str, app: &str) -> Self {
        let term = PodAffinityTerm {
            label_selector: Some(app_selector(app)),
            topology_key: key.into(),
            ..Default::default()
        };
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    /// Adds a required pod affinity to pods with `app=<app>` over `key`.
    pub fn affinity(mut self, key: &str, app: &str) -> Self {
        let term = PodAffinityTerm {
            label_selector: Some(app_selector(app)),
            topology_key: key.into(),
            ..Default::default()
        };
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .pod_affinity
            .get_or_insert_with(Default::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    /// The API object.
    pub fn pod(self) -> Pod {
        self.pod
    }

    /// The pod's [`PodInfo`]; panics on a bad quantity (builders are for tests).
    pub fn build(self) -> PodInfo {
        match PodInfo::new(Arc::new(self.pod)) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }
}

fn app_selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([("app".to_string(), app.to_string())].into()),
        match_expressions: None,
    }
}

/// Builds a [`Node`].
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    node: Node,
}

impl NodeBuilder {
    /// A node with 4 CPUs, 16 GiB and 110 pods allocatable, and a hostname label.
    pub fn new(name: &str) -> Self {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(
                    [("cpu", "4"), ("memory", "16Gi"), ("pods", "110")]
                        .iter()
                        .map(|(k, v)| (k.to_string(), q(v)))
                        .collect(),
                ),
                ..Default::default()
            }),
        };
        NodeBuilder { node }
    }

    fn allocatable(mut self, resource: &str, amount: &str) -> Self {
        self.node
            .status
            .get_or_insert_with(Default::default)
            .allocatable
            .get_or_insert_with(BTreeMap::new)
            .insert(resource.into(), q(amount));
        self
    }

    /// Sets allocatable CPU.
    pub fn cpu(self, amount: &str) -> Self {
        self.allocatable("cpu", amount)
    }

    /// Sets allocatable memory.
    pub fn memory(self, amount: &str) -> Self {
        self.allocatable("memory", amount)
    }

    /// Sets the allocatable pod count.
    pub fn pods(self, n: i64) -> Self {
        self.allocatable("pods", &n.to_string())
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// Adds a taint.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.node
            .spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.into(),
                value: (!value.is_empty()).then(|| value.to_string()),
                effect: effect.into(),
                time_added: None,
            });
        self
    }

    /// Marks the node unschedulable (cordoned).
    pub fn unschedulable(mut self) -> Self {
        self.node
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = Some(true);
        self
    }

    /// The API object.
    pub fn build(self) -> Node {
        self.node
    }
}
