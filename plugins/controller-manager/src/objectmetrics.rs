//! kube-state-metrics-style object metrics (`kube_pod_status_phase`,
//! `kube_node_status_condition`, `kube_deployment_*`), computed at scrape time from
//! the leader's informer caches: no API traffic of their own.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kubernel_client::Cache;
use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::Registry;

use crate::informers::Informers;

/// The pod phases kube-state-metrics reports, one series each (1 for the current one).
const PHASES: [&str; 5] = ["Pending", "Succeeded", "Failed", "Unknown", "Running"];

/// The condition statuses kube-state-metrics reports, one series each.
const STATUSES: [&str; 3] = ["true", "false", "unknown"];

/// One family: name, help, type and label names.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const POD_PHASE: Family = Family {
    name: "kube_pod_status_phase",
    help: "The pods current phase.",
    kind: MetricType::GAUGE,
    labels: &["namespace", "pod", "uid", "phase"],
};
const POD_RESTARTS: Family = Family {
    name: "kube_pod_container_status_restarts_total",
    help: "The number of container restarts per container.",
    kind: MetricType::COUNTER,
    labels: &["namespace", "pod", "uid", "container"],
};
const POD_INFO: Family = Family {
    name: "kube_pod_info",
    help: "Information about pod.",
    kind: MetricType::GAUGE,
    labels: &["namespace", "pod", "uid", "node", "pod_ip", "host_ip"],
};
const NODE_CONDITION: Family = Family {
    name: "kube_node_status_condition",
    help: "The condition of a cluster node.",
    kind: MetricType::GAUGE,
    labels: &["node", "condition", "status"],
};
const NODE_UNSCHEDULABLE: Family = Family {
    name: "kube_node_spec_unschedulable",
    help: "Whether a node can schedule new pods.",
    kind: MetricType::GAUGE,
    labels: &["node"],
};
const DEPLOYMENT_SPEC_REPLICAS: Family = Family {
    name: "kube_deployment_spec_replicas",
    help: "Number of desired pods for a deployment.",
    kind: MetricType::GAUGE,
    labels: &["namespace", "deployment"],
};
const DEPLOYMENT_REPLICAS: Family = Family {
    name: "kube_deployment_status_replicas",
    help: "The number of replicas per deployment.",
    kind: MetricType::GAUGE,
    labels: &["namespace", "deployment"],
};
const DEPLOYMENT_AVAILABLE: Family = Family {
    name: "kube_deployment_status_replicas_available",
    help: "The number of available replicas per deployment.",
    kind: MetricType::GAUGE,
    labels: &["namespace", "deployment"],
};
const DEPLOYMENT_UPDATED: Family = Family {
    name: "kube_deployment_status_replicas_updated",
    help: "The number of updated replicas per deployment.",
    kind: MetricType::GAUGE,
    labels: &["namespace", "deployment"],
};

const FAMILIES: [&Family; 9] = [
    &POD_PHASE,
    &POD_RESTARTS,
    &POD_INFO,
    &NODE_CONDITION,
    &NODE_UNSCHEDULABLE,
    &DEPLOYMENT_SPEC_REPLICAS,
    &DEPLOYMENT_REPLICAS,
    &DEPLOYMENT_AVAILABLE,
    &DEPLOYMENT_UPDATED,
];

/// The informer caches the object metrics are read from.
#[derive(Clone)]
struct Caches {
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    deployments: Cache<Deployment>,
}

/// Handle to the object metrics: points them at the running controllers' informers.
#[derive(Clone, Default)]
pub struct ObjectMetrics {
    caches: Arc<Mutex<Option<Caches>>>,
}

impl ObjectMetrics {
    /// Registers the object metrics in `registry`; they report nothing until [`ObjectMetrics::watch`].
    pub fn new(registry: &Registry) -> prometheus::Result<ObjectMetrics> {
        let metrics = ObjectMetrics::default();
        let descs = FAMILIES
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.into(),
                    f.help.into(),
                    f.labels.iter().map(|l| l.to_string()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
        registry.register(Box::new(ObjectCollector {
            caches: metrics.caches.clone(),
            descs,
        }))?;
        Ok(metrics)
    }

    /// Reports the objects of these informers' Pod, Node and Deployment caches (shared
    /// with the controllers that list the same types).
    pub fn watch(&self, informers: &mut Informers) {
        *self.caches.lock() = Some(Caches {
            pods: informers.cache::<Pod>(),
            nodes: informers.cache::<Node>(),
            deployments: informers.cache::<Deployment>(),
        });
    }

    /// Stops reporting (this instance no longer leads; the new leader reports).
    pub fn forget(&self) {
        *self.caches.lock() = None;
    }
}

/// The registered collector: builds every family from the caches when gathered.
struct ObjectCollector {
    caches: Arc<Mutex<Option<Caches>>>,
    descs: Vec<Desc>,
}

impl Collector for ObjectCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(caches) = self.caches.lock().clone() else {
            return Vec::new();
        };
        let mut out = Samples::default();
        if caches.pods.is_synced() {
            for pod in caches.pods.list() {
                pod_samples(&pod, &mut out);
            }
        }
        if caches.nodes.is_synced() {
            for node in caches.nodes.list() {
                node_samples(&node, &mut out);
            }
        }
        if caches.deployments.is_synced() {
            for deployment in caches.deployments.list() {
                deployment_samples(&deployment, &mut out);
            }
        }
        out.into_families()
    }
}

/// Samples by family, in [`FAMILIES`] order.
#[derive(Default)]
struct Samples {
    by_family: HashMap<&'static str, Vec<Metric>>,
}

impl Samples {
    fn push(&mut self, family: &Family, labels: &[&str], value: f64) {
        let pairs = family
            .labels
            .iter()
            .zip(labels)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value.to_string());
                pair
            })
            .collect();
        let mut metric = Metric::default();
        metric.set_label(pairs);
        if family.kind == MetricType::COUNTER {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        self.by_family.entry(family.name).or_default().push(metric);
    }

    fn into_families(mut self) -> Vec<MetricFamily> {
        FAMILIES
            .iter()
            .filter_map(|f| {
                let metrics = self.by_family.remove(f.name)?;
                let mut family = MetricFamily::default();
                family.set_name(f.name.to_string());
                family.set_help(f.help.to_string());
                family.set_field_type(f.kind);
                family.set_metric(metrics);
                Some(family)
            })
            .collect()
    }
}

fn pod_samples(pod: &Pod, out: &mut Samples) {
    let meta = &pod.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let uid = meta.uid.as_deref().unwrap_or_default();
    let status = pod.status.as_ref();
    if let Some(current) = status.and_then(|s| s.phase.as_deref()) {
        for phase in PHASES {
            let value = if phase == current { 1.0 } else { 0.0 };
            out.push(&POD_PHASE, &[namespace, name, uid, phase], value);
        }
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    let pod_ip = status.and_then(|s| s.pod_ip.as_deref()).unwrap_or_default();
    let host_ip = status
        .and_then(|s| s.host_ip.as_deref())
        .unwrap_or_default();
    out.push(
        &POD_INFO,
        &[namespace, name, uid, node, pod_ip, host_ip],
        1.0,
    );
    for container in status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
    {
        out.push(
            &POD_RESTARTS,
            &[namespace, name, uid, &container.name],
            f64::from(container.restart_count),
        );
    }
}

fn node_samples(node: &Node, out: &mut Samples) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    out.push(
        &NODE_UNSCHEDULABLE,
        &[name],
        if unschedulable { 1.0 } else { 0.0 },
    );
    for condition in node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
    {
        let current = condition.status.to_ascii_lowercase();
        for status in STATUSES {
            let value = if status == current { 1.0 } else { 0.0 };
            out.push(&NODE_CONDITION, &[name, &condition.type_, status], value);
        }
    }
}

fn deployment_samples(deployment: &Deployment, out: &mut Samples) {
    let meta = &deployment.metadata;
    let labels = [
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    ];
    let spec_replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    out.push(&DEPLOYMENT_SPEC_REPLICAS, &labels, f64::from(spec_replicas));
    let status = deployment.status.clone().unwrap_or_default();
    out.push(
        &DEPLOYMENT_REPLICAS,
        &labels,
        f64::from(status.replicas.unwrap_or(0)),
    );
    out.push(
        &DEPLOYMENT_AVAILABLE,
        &labels,
        f64::from(status.available_replicas.unwrap_or(0)),
    );
    out.push(
        &DEPLOYMENT_UPDATED,
        &labels,
        f64::from(status.updated_replicas.unwrap_or(0)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};
    use serde_json::json;

    fn text(samples: Samples) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&samples.into_families(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn pod_samples_should_give_one_series_per_phase_and_the_restarts() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web-1", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "hostIP": "192.0.2.1",
                "containerStatuses": [{"name": "web", "restartCount": 3, "ready": true,
                    "image": "i", "imageID": ""}]},
        }))
        .expect("a valid pod");
        let mut samples = Samples::default();
        pod_samples(&pod, &mut samples);
        let text = text(samples);
        assert!(text.contains(r#"kube_pod_status_phase{namespace="default",pod="web-1",uid="u1",phase="Running"} 1"#), "{text}");
        assert!(text.contains(r#"kube_pod_status_phase{namespace="default",pod="web-1",uid="u1",phase="Pending"} 0"#), "{text}");
        assert_eq!(text.matches("kube_pod_status_phase{").count(), 5, "{text}");
        assert!(text.contains("# TYPE kube_pod_container_status_restarts_total counter"));
        assert!(text.contains(r#"kube_pod_container_status_restarts_total{namespace="default",pod="web-1",uid="u1",container="web"} 3"#), "{text}");
        assert!(text.contains(r#"kube_pod_info{namespace="default",pod="web-1",uid="u1",node="n1",pod_ip="10.0.0.5",host_ip="192.0.2.1"} 1"#), "{text}");
    }

    #[test]
    fn node_samples_should_give_one_series_per_condition_status() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
        }))
        .expect("a valid node");
        let mut samples = Samples::default();
        node_samples(&node, &mut samples);
        let text = text(samples);
        assert!(
            text.contains(
                r#"kube_node_status_condition{node="n1",condition="Ready",status="unknown"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kube_node_status_condition{node="n1",condition="Ready",status="true"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_node_spec_unschedulable{node="n1"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn deployment_samples_should_default_spec_replicas_to_one() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"selector": {}, "template": {}},
            "status": {"replicas": 1, "availableReplicas": 1},
        }))
        .expect("a valid deployment");
        let mut samples = Samples::default();
        deployment_samples(&deployment, &mut samples);
        let text = text(samples);
        assert!(
            text.contains(
                r#"kube_deployment_spec_replicas{namespace="default",deployment="web"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kube_deployment_status_replicas_available{namespace="default",deployment="web"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"kube_deployment_status_replicas_updated{namespace="default",deployment="web"} 0"#
            ),
            "{text}"
        );
    }
}
