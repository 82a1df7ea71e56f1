//! The part of a Pod the sim kubelet reads, decoded straight from the API's JSON.
//!
//! The sim kubelet watches every bound pod of the cluster, and each pod comes back
//! at least twice (bound, then its own status): decoding the whole k8s-openapi `Pod`
//! (labels, resources, probes, env, tolerations...) for each event cost more than
//! everything the kubelet then does with it. Serde skips the fields this type does
//! not name without allocating for them. The type answers to the API as a `Pod`
//! (`v1`, `pods`), so `Api` lists and watches it like any object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{ListableResource, Metadata, NamespaceResourceScope, Resource};
use serde::{Deserialize, Serialize};

/// A Pod as far as the sim kubelet reads it: metadata, node, containers, and the
/// status it reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchedPod {
    /// The whole `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Part of `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<WatchedPodSpec>,
    /// Part of `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WatchedPodStatus>,
}

/// The fields of `spec` the sim kubelet reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedPodSpec {
    /// `spec.nodeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// `spec.hostNetwork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// `spec.initContainers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<WatchedContainer>,
    /// `spec.containers`.
    #[serde(default)]
    pub containers: Vec<WatchedContainer>,
}

/// A container's name and image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchedContainer {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// The fields of `status` the sim kubelet reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedPodStatus {
    /// `status.phase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `status.podIP`.
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// `status.startTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// `status.conditions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<WatchedCondition>,
}

/// A pod condition's type, status and transition time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedCondition {
    /// `type`.
    #[serde(default, rename = "type")]
    pub type_: String,
    /// `status`.
    #[serde(default)]
    pub status: String,
    /// `lastTransitionTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl Resource for WatchedPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = NamespaceResourceScope;
}

impl ListableResource for WatchedPod {
    const LIST_KIND: &'static str = "PodList";
}

impl Metadata for WatchedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    /// A pod as the apiserver serves it, with fields this type skips.
    fn served() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"},
                "deletionTimestamp": "2026-01-01T00:00:05Z"},
            "spec": {
                "nodeName": "sim-node-1", "hostNetwork": true, "schedulerName": "default-scheduler",
                "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
                "containers": [{"name": "c", "image": "pause", "ports": [{"containerPort": 80}],
                    "resources": {"requests": {"cpu": "10m"}}}],
                "tolerations": [{"key": "k", "operator": "Exists"}],
            },
            "status": {
                "phase": "Running", "podIP": "10.128.1.2", "hostIP": "10.0.0.1",
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True",
                    "lastTransitionTime": "2026-01-01T00:00:01Z", "lastProbeTime": null}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "pause", "imageID": ""}],
            },
        })
    }

    #[test]
    fn a_served_pod_should_decode_to_the_fields_the_full_type_has() {
        let watched: WatchedPod = serde_json::from_value(served()).expect("watched pod");
        let full: Pod = serde_json::from_value(served()).expect("pod");
        assert_eq!(watched.metadata, full.metadata);
        let (spec, full_spec) = (watched.spec.expect("spec"), full.spec.expect("spec"));
        assert_eq!(spec.node_name, full_spec.node_name);
        assert_eq!(spec.host_network, full_spec.host_network);
        let names = |c: &[WatchedContainer]| -> Vec<(String, Option<String>)> {
            c.iter()
                .map(|c| (c.name.clone(), c.image.clone()))
                .collect()
        };
        let full_names =
            |c: &[k8s_openapi::api::core::v1::Container]| -> Vec<(String, Option<String>)> {
                c.iter()
                    .map(|c| (c.name.clone(), c.image.clone()))
                    .collect()
            };
        assert_eq!(names(&spec.containers), full_names(&full_spec.containers));
        assert_eq!(
            names(&spec.init_containers),
            full_names(full_spec.init_containers.as_deref().unwrap_or_default())
        );
        let (status, full_status) = (
            watched.status.expect("status"),
            full.status.expect("status"),
        );
        assert_eq!(status.phase, full_status.phase);
        assert_eq!(status.pod_ip, full_status.pod_ip);
        assert_eq!(status.start_time, full_status.start_time);
        let conditions = full_status.conditions.unwrap_or_default();
        assert_eq!(status.conditions.len(), conditions.len());
        assert_eq!(status.conditions[0].type_, conditions[0].type_);
        assert_eq!(status.conditions[0].status, conditions[0].status);
        assert_eq!(
            status.conditions[0].last_transition_time,
            conditions[0].last_transition_time
        );
    }

    #[test]
    fn a_pod_without_spec_or_status_should_decode() {
        let watched: WatchedPod =
            serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("watched pod");
        assert_eq!(watched.metadata.name.as_deref(), Some("p"));
        assert!(watched.spec.is_none() && watched.status.is_none());
    }
}
