//! Defaults filled on create and update, as `pkg/apis/*/v1/defaults.go` and the registries' create strategies set them.

use base64::Engine;
use kubernel_api::pointer::Pointer;
use kubernel_api::resources::Resource;
use serde_json::{json, Map, Value};

use super::pod_defaults::{pod, template};
use super::workload_defaults::{
    cron_job, daemon_set, deployment, job, replicas, replication_controller, stateful_set,
};

/// A JSON object.
pub(crate) type Obj = Map<String, Value>;

/// Sets `key` when it is absent or null.
pub(crate) fn default_value(o: &mut Obj, key: &str, value: Value) {
    if o.get(key).is_none_or(Value::is_null) {
        o.insert(key.into(), value);
    }
}

/// Sets a string `key` when it is absent, null or empty (Go's zero value).
pub(super) fn default_str(o: &mut Obj, key: &str, value: &str) {
    if o.get(key)
        .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        o.insert(key.into(), json!(value));
    }
}

/// The object at `key`, if it is one.
pub(super) fn object_mut<'a>(o: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    o.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key`, created empty when absent or null.
pub(crate) fn ensure_object<'a>(o: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    default_value(o, key, json!({}));
    object_mut(o, key)
}

/// The objects of the list at `key`.
pub(super) fn each_object<'a>(o: &'a mut Obj, key: &str) -> impl Iterator<Item = &'a mut Obj> {
    o.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The `spec` object, created when missing.
pub(super) fn spec_of(object: &mut Value) -> Option<&mut Obj> {
    object
        .as_object_mut()
        .and_then(|o| ensure_object(o, "spec"))
}

/// Fills the defaults Kubernetes gives an object of `r` (on create, and on update for the same fields).
pub fn apply_defaults(r: &Resource, object: &mut Value) {
    match (r.group, r.kind) {
        ("", "Pod") => pod(object),
        ("", "PodTemplate") => template(object, "/template"),
        ("", "ReplicationController") => replication_controller(object),
        ("", "Service") => service(object),
        ("", "Namespace") => namespace(object),
        ("", "Secret") => secret(object),
        ("", "Node") => node(object),
        ("", "Endpoints") => endpoints(object),
        ("", "LimitRange") => limit_range(object),
        ("", "PersistentVolumeClaim") => claim(object),
        ("apps", "Deployment") => deployment(object),
        ("apps", "ReplicaSet") => {
            replicas(object);
            template(object, "/spec/template");
        }
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("batch", "Job") => job(object),
        ("batch", "CronJob") => cron_job(object),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(object),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => role_binding(object),
        _ => {}
    }
}

/// `SetDefaults_Service` plus the single-stack IP family the service registry assigns.
fn service(object: &mut Value) {
    let Some(spec) = spec_of(object) else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.at("/clientIP/timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in each_object(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(v) => v.as_i64() == Some(0) || v.as_str() == Some(""),
        };
        if unset {
            let p = port.get("port").cloned().unwrap_or(json!(0));
            port.insert("targetPort".into(), p);
        }
    }
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if matches!(kind.as_str(), "LoadBalancer" | "NodePort") || (kind == "ClusterIP" && external_ips)
    {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_str(spec, "internalTrafficPolicy", "Cluster");
        default_str(spec, "ipFamilyPolicy", "SingleStack");
        default_value(spec, "ipFamilies", json!(["IPv4"]));
        let cluster_ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(str::to_string);
        if let Some(ip) = cluster_ip {
            default_value(spec, "clusterIPs", json!([ip]));
        }
    }
    if kind == "LoadBalancer" {
        default_value(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// The `kubernetes` finalizer, an `Active` phase and the `kubernetes.io/metadata.name` label.
fn namespace(object: &mut Value) {
    let Some(o) = object.as_object_mut() else {
        return;
    };
    if let Some(spec) = ensure_object(o, "spec") {
        default_value(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = ensure_object(o, "status") {
        default_str(status, "phase", "Active");
    }
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        if let Some(labels) =
            ensure_object(o, "metadata").and_then(|md| ensure_object(md, "labels"))
        {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
}

/// Type `Opaque`; `stringData` is merged into `data` (base64) and dropped, as the v1 conversion does.
fn secret(object: &mut Value) {
    let Some(o) = object.as_object_mut() else {
        return;
    };
    default_str(o, "type", "Opaque");
    let Some(string_data) = o.remove("stringData") else {
        return;
    };
    let entries: Vec<(String, Value)> = string_data
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if entries.is_empty() {
        return;
    }
    if let Some(data) = ensure_object(o, "data") {
        for (k, v) in entries {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
            data.insert(k, json!(encoded));
        }
    }
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
fn node(object: &mut Value) {
    let capacity = object
        .at("/status/capacity")
        .filter(|c| c.is_object())
        .cloned();
    if let (Some(capacity), Some(status)) = (
        capacity,
        object.pointer_mut("/status").and_then(Value::as_object_mut),
    ) {
        default_value(status, "allocatable", capacity);
    }
}

/// Endpoints ports default to TCP.
fn endpoints(object: &mut Value) {
    if let Some(o) = object.as_object_mut() {
        for subset in each_object(o, "subsets") {
            for port in each_object(subset, "ports") {
                default_str(port, "protocol", "TCP");
            }
        }
    }
}

/// EndpointSlice ports: an empty name and TCP.
fn endpoint_slice(object: &mut Value) {
    if let Some(o) = object.as_object_mut() {
        for port in each_object(o, "ports") {
            default_value(port, "name", json!(""));
            default_str(port, "protocol", "TCP");
        }
    }
}

/// `SetDefaults_LimitRangeItem`: container defaults from max, requests from defaults or min.
fn limit_range(object: &mut Value) {
    let Some(spec) = spec_of(object) else {
        return;
    };
    for item in each_object(spec, "limits") {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |item: &Obj, k: &str| {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let mut default = get(item, "default");
        for (k, v) in get(item, "max") {
            default.entry(k).or_insert(v);
        }
        let mut request = get(item, "defaultRequest");
        for (k, v) in default.iter().chain(get(item, "min").iter()) {
            request.entry(k.clone()).or_insert(v.clone());
        }
        if !default.is_empty() {
            item.insert("default".into(), Value::Object(default));
        }
        if !request.is_empty() {
            item.insert("defaultRequest".into(), Value::Object(request));
        }
    }
}

/// A PersistentVolumeClaim.
fn claim(object: &mut Value) {
    if let Some(o) = object.as_object_mut() {
        claim_fields(o);
    }
}

/// `SetDefaults_PersistentVolumeClaim`: `Filesystem` volume mode and a `Pending` phase.
pub(super) fn claim_fields(o: &mut Obj) {
    if let Some(spec) = ensure_object(o, "spec") {
        default_str(spec, "volumeMode", "Filesystem");
    }
    if let Some(status) = ensure_object(o, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// `roleRef.apiGroup` and subjects' `apiGroup`.
fn role_binding(object: &mut Value) {
    let Some(o) = object.as_object_mut() else {
        return;
    };
    if let Some(role_ref) = object_mut(o, "roleRef") {
        default_str(role_ref, "apiGroup", "rbac.authorization.k8s.io");
    }
    for subject in each_object(o, "subjects") {
        let group = match subject.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => "rbac.authorization.k8s.io",
            _ => continue,
        };
        default_str(subject, "apiGroup", group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::defaulted;

    #[test]
    fn service_should_get_upstream_defaults() {
        let s = defaulted(
            "",
            "Service",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
        );
        assert_eq!(
            s["spec"],
            json!({"selector": {"app": "web"}, "sessionAffinity": "None", "type": "ClusterIP",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 443, "protocol": "TCP", "targetPort": "https"}],
                "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
        );
        let lb = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            lb.pointer("/spec/externalTrafficPolicy"),
            Some(&json!("Cluster"))
        );
        assert_eq!(
            lb.pointer("/spec/allocateLoadBalancerNodePorts"),
            Some(&json!(true))
        );
        assert_eq!(
            lb.pointer("/spec/sessionAffinityConfig/clientIP/timeoutSeconds"),
            Some(&json!(10800))
        );
        let ext = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert_eq!(ext.pointer("/spec/ipFamilies"), None);
    }

    #[test]
    fn namespace_should_get_finalizer_phase_and_name_label() {
        let n = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(n["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(n["status"], json!({"phase": "Active"}));
        assert_eq!(
            n.pointer("/metadata/labels/kubernetes.io~1metadata.name"),
            Some(&json!("team-a"))
        );
    }

    #[test]
    fn secret_should_default_type_and_merge_string_data() {
        let s = defaulted(
            "",
            "Secret",
            json!({"data": {"a": "eA=="}, "stringData": {"b": "hello"}}),
        );
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "eA==", "b": "aGVsbG8="}})
        );
    }

    #[test]
    fn other_kinds_should_get_their_small_defaults() {
        let n = defaulted("", "Node", json!({"status": {"capacity": {"cpu": "4"}}}));
        assert_eq!(n.pointer("/status/allocatable/cpu"), Some(&json!("4")));
        let rb = defaulted(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        assert_eq!(
            rb.pointer("/subjects/0/apiGroup"),
            Some(&json!("rbac.authorization.k8s.io"))
        );
        assert_eq!(rb.pointer("/subjects/1/apiGroup"), None);
        assert_eq!(
            rb.pointer("/roleRef/apiGroup"),
            Some(&json!("rbac.authorization.k8s.io"))
        );
        let lr = defaulted(
            "",
            "LimitRange",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
        );
        assert_eq!(
            lr.pointer("/spec/limits/0/default"),
            Some(&json!({"cpu": "2"}))
        );
        assert_eq!(
            lr.pointer("/spec/limits/0/defaultRequest"),
            Some(&json!({"cpu": "2", "memory": "1Mi"}))
        );
        let cm = defaulted("", "ConfigMap", json!({"data": {}}));
        assert_eq!(cm, json!({"data": {}}));
    }
}
