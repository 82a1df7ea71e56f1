//! `PodInfo`: a pod with everything the scheduler needs precomputed once per update.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration, WeightedPodAffinityTerm};

use crate::resources::{pod_requests, QuantityError, Resource};
use crate::selectors::{LabelSelector, Labels, NodeSelector, NO_LABELS};

/// The scheduler name of pods that do not name one.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// A host port a pod's container binds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host IP (`0.0.0.0` when unset: every address).
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port.
    pub port: i32,
}

/// Which namespaces an affinity term selects pods in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace (an empty `namespaceSelector`).
    All,
    /// These namespaces.
    List(Vec<String>),
}

/// A compiled pod (anti-)affinity term.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// Pods the term selects.
    pub selector: LabelSelector,
    /// Namespaces it selects them in.
    pub namespaces: Namespaces,
    /// Node label defining the topology domain.
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(term: &PodAffinityTerm, pod_ns: &str, pod_labels: &Labels) -> Self {
        let mut selector = LabelSelector::new(term.label_selector.as_ref());
        for key in term.match_label_keys.iter().flatten() {
            if let Some(v) = pod_labels.get(key) {
                selector = selector.and_equal(key, v);
            }
        }
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        let all = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(pod_ns.to_string());
        }
        AffinityTerm {
            selector,
            namespaces: if all {
                Namespaces::All
            } else {
                Namespaces::List(namespaces)
            },
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether the term selects `pod`.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        let ns_ok = match &self.namespaces {
            Namespaces::All => true,
            Namespaces::List(list) => list.contains(&pod.namespace),
        };
        ns_ok && self.selector.matches(pod.labels())
    }
}

/// A compiled topology spread constraint.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    /// Allowed skew.
    pub max_skew: i32,
    /// Node label defining the domains.
    pub topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// Pods counted.
    pub selector: LabelSelector,
    /// Minimum number of domains (1 when unset).
    pub min_domains: i32,
    /// `nodeAffinityPolicy: Honor` (the default): count only nodes matching the pod's node affinity.
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor`: count only nodes whose taints the pod tolerates.
    pub honor_node_taints: bool,
}

/// A pod plus its precomputed requests, ports, affinity and constraints.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// The API object.
    pub pod: Arc<Pod>,
    /// `metadata.uid` (or `namespace/name` when the object has none).
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// `spec.preemptionPolicy: Never`.
    pub never_preempts: bool,
    /// `spec.schedulerName`, defaulted.
    pub scheduler_name: String,
    /// `spec.nodeName`, when bound.
    pub node_name: Option<String>,
    /// `status.nominatedNodeName`: the node preemption made room on.
    pub nominated_node: Option<String>,
    /// `status.startTime` (unset: not started, counted as the latest by preemption).
    pub start_time: Option<jiff::Timestamp>,
    /// Effective requests.
    pub requests: Resource,
    /// CPU request with unset container requests counted as 100m.
    pub non_zero_milli_cpu: i64,
    /// Memory request with unset container requests counted as 200 MiB.
    pub non_zero_memory: i64,
    /// Host ports of all containers.
    pub host_ports: Vec<HostPort>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// `spec.nodeSelector` pairs.
    pub node_selector: Vec<(String, String)>,
    /// Required node affinity.
    pub required_node_affinity: Option<NodeSelector>,
    /// Preferred node affinity terms with weights.
    pub preferred_node_affinity: Vec<(i32, NodeSelector)>,
    /// Required pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms with weights.
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    /// Preferred pod anti-affinity terms with weights.
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    /// Topology spread constraints.
    pub spread_constraints: Vec<SpreadConstraint>,
    /// Spreading group: the controller's uid, else the namespace and labels (hashed).
    pub group: u64,
    /// Has a deletion timestamp.
    pub terminating: bool,
    /// Has scheduling gates: not schedulable until they are removed.
    pub gated: bool,
}

/// A pod could not be turned into a [`PodInfo`]; retrying does not help until it changes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("pod {pod}: {source}")]
pub struct PodError {
    /// `namespace/name`.
    pub pod: String,
    /// The bad quantity.
    pub source: QuantityError,
}

fn weighted(
    terms: Option<&Vec<WeightedPodAffinityTerm>>,
    ns: &str,
    labels: &Labels,
) -> Vec<(i32, AffinityTerm)> {
    terms
        .into_iter()
        .flatten()
        .map(|w| {
            (
                w.weight,
                AffinityTerm::new(&w.pod_affinity_term, ns, labels),
            )
        })
        .collect()
}

impl PodInfo {
    /// Precomputes everything from the API object.
    pub fn new(pod: Arc<Pod>) -> Result<PodInfo, PodError> {
        let meta = &pod.metadata;
        let namespace = meta
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = meta.name.clone().unwrap_or_default();
        let default_spec = Default::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let err = |source| PodError {
            pod: format!("{namespace}/{name}"),
            source,
        };
        let requests = pod_requests(spec, false).map_err(err)?;
        let non_zero = pod_requests(spec, true).map_err(err)?;
        let labels = meta.labels.as_ref().unwrap_or(&NO_LABELS);
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let node_aff = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let pod_aff = spec.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref());
        let anti = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, &namespace, labels))
                .collect()
        };
        let spread_constraints = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = LabelSelector::new(c.label_selector.as_ref());
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = labels.get(key) {
                        selector = selector.and_equal(key, v);
                    }
                }
                SpreadConstraint {
                    max_skew: c.max_skew,
                    topology_key: c.topology_key.clone(),
                    hard: c.when_unsatisfiable == "DoNotSchedule",
                    selector,
                    min_domains: c.min_domains.unwrap_or(1).max(1),
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect();
        let mut hasher = DefaultHasher::new();
        match meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        {
            Some(owner) => owner.uid.hash(&mut hasher),
            None => (&namespace, labels).hash(&mut hasher),
        }
        Ok(PodInfo {
            uid: meta
                .uid
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{name}")),
            priority: spec.priority.unwrap_or(0),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.into()),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            nominated_node: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0),
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            requests,
            host_ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec
                .node_selector
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            required_node_affinity: node_aff
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(NodeSelector::new),
            preferred_node_affinity: node_aff
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|p| (p.weight, NodeSelector::single(&p.preference)))
                .collect(),
            required_affinity: required(pod_aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: weighted(
                pod_aff.and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                &namespace,
                labels,
            ),
            preferred_anti_affinity: weighted(
                anti.and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                &namespace,
                labels,
            ),
            spread_constraints,
            group: hasher.finish(),
            terminating: meta.deletion_timestamp.is_some(),
            gated: spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            namespace,
            name,
            pod,
        })
    }

    /// The pod's labels.
    pub fn labels(&self) -> &Labels {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// `namespace/name`, for logs and messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// True when the pod has required pod affinity or anti-affinity terms.
    pub fn has_required_pod_affinity(&self) -> bool {
        !self.required_affinity.is_empty() || !self.required_anti_affinity.is_empty()
    }

    /// True when the pod has any pod affinity or anti-affinity term.
    pub fn has_pod_affinity(&self) -> bool {
        self.has_required_pod_affinity()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    #[test]
    fn pod_info_should_group_pods_by_controller_else_by_labels() {
        let a = PodBuilder::new("a").label("app", "web").build();
        let b = PodBuilder::new("b").label("app", "web").build();
        let c = PodBuilder::new("c").label("app", "db").build();
        let d = PodBuilder::new("d")
            .label("app", "db")
            .owner("rs-1")
            .build();
        let e = PodBuilder::new("e").label("app", "x").owner("rs-1").build();
        assert_eq!(a.group, b.group);
        assert_ne!(a.group, c.group);
        assert_eq!(d.group, e.group);
        assert_ne!(c.group, d.group);
    }

    #[test]
    fn pod_info_should_collect_host_ports_with_defaults() {
        let p = PodBuilder::new("p").host_port(8080).build();
        assert_eq!(
            p.host_ports,
            vec![HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
        assert_eq!(p.scheduler_name, DEFAULT_SCHEDULER_NAME);
    }
}
