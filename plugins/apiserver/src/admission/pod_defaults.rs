//! Pod and pod-template defaults: `SetDefaults_PodSpec`, `SetDefaults_Pod`, containers, probes, volumes, and the pod-only admission defaults.

use kubernel_api::pointer::Pointer;
use serde_json::{json, Value};

use super::defaults::{default_str, default_value, each_object, ensure_object, object_mut, Obj};
use super::quantity::Quantity;

/// `SetDefaults_PodSpec` and what it reaches: for pods and every pod template.
pub(super) fn pod_spec(spec: &mut Obj) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_value(spec, "securityContext", json!({}));
    default_value(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in each_object(spec, key) {
            container(c);
        }
    }
    for v in each_object(spec, "volumes") {
        volume(v);
    }
}

/// The pod template at `pointer` (e.g. `/spec/template`), created when missing as Go's struct would be.
pub(super) fn template(object: &mut Value, pointer: &str) {
    let Some(mut at) = object.as_object_mut() else {
        return;
    };
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        let Some(next) = ensure_object(at, part) else {
            return;
        };
        at = next;
    }
    if let Some(spec) = ensure_object(at, "spec") {
        pod_spec(spec);
    }
}

/// Everything a new Pod gets: pod spec defaults, `SetDefaults_Pod`, the Priority
/// admission plugin's priority and preemption policy, and a `Pending` status with its QoS class.
pub(super) fn pod(object: &mut Value) {
    let Some(o) = object.as_object_mut() else {
        return;
    };
    if let Some(spec) = ensure_object(o, "spec") {
        pod_spec(spec);
        let host_network = spec.get("hostNetwork") == Some(&json!(true));
        for key in ["containers", "initContainers"] {
            for c in each_object(spec, key) {
                requests_from_limits(c);
                if host_network {
                    for p in each_object(c, "ports") {
                        let port = p.get("containerPort").cloned().unwrap_or(json!(0));
                        if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                            p.insert("hostPort".into(), port);
                        }
                    }
                }
            }
        }
        default_value(spec, "enableServiceLinks", json!(true));
        let priority = match spec
            .get("priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("")
        {
            "system-node-critical" => 2_000_001_000,
            "system-cluster-critical" => 2_000_000_000,
            _ => 0,
        };
        default_value(spec, "priority", json!(priority));
        default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
    }
    let qos = o.get("spec").map(qos_class);
    if let Some(status) = ensure_object(o, "status") {
        default_str(status, "phase", "Pending");
        if let Some(q) = qos {
            default_str(status, "qosClass", q);
        }
    }
}

/// Requests default to limits when only limits are set.
fn requests_from_limits(c: &mut Obj) {
    let Some(resources) = object_mut(c, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(requests) = ensure_object(resources, "requests") {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

/// `SetDefaults_Container`, ports, probes, lifecycle handlers and env field references.
fn container(c: &mut Obj) {
    let policy = image_pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
    default_str(c, "imagePullPolicy", policy);
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    default_value(c, "resources", json!({}));
    for p in each_object(c, "ports") {
        default_str(p, "protocol", "TCP");
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = object_mut(c, key) {
            default_value(p, "timeoutSeconds", json!(1));
            default_value(p, "periodSeconds", json!(10));
            default_value(p, "successThreshold", json!(1));
            default_value(p, "failureThreshold", json!(3));
            http_get(p);
        }
    }
    if let Some(lifecycle) = object_mut(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(h) = object_mut(lifecycle, key) {
                http_get(h);
            }
        }
    }
    for e in each_object(c, "env") {
        if let Some(field_ref) = object_mut(e, "valueFrom").and_then(|v| object_mut(v, "fieldRef"))
        {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

/// `SetDefaults_HTTPGetAction`.
fn http_get(handler: &mut Obj) {
    if let Some(g) = object_mut(handler, "httpGet") {
        default_str(g, "path", "/");
        default_str(g, "scheme", "HTTP");
    }
}

/// `SetDefaults_Volume` and the volume sources' defaults.
fn volume(v: &mut Obj) {
    if v.keys().all(|k| k == "name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = object_mut(v, key) {
            default_value(source, "defaultMode", json!(420));
        }
    }
    if let Some(h) = object_mut(v, "hostPath") {
        default_value(h, "type", json!(""));
    }
    if let Some(d) = object_mut(v, "downwardAPI") {
        field_refs(d);
    }
    if let Some(p) = object_mut(v, "projected") {
        for s in each_object(p, "sources") {
            if let Some(d) = object_mut(s, "downwardAPI") {
                field_refs(d);
            }
            if let Some(t) = object_mut(s, "serviceAccountToken") {
                default_value(t, "expirationSeconds", json!(3600));
            }
        }
    }
}

fn field_refs(downward: &mut Obj) {
    for item in each_object(downward, "items") {
        if let Some(field_ref) = object_mut(item, "fieldRef") {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

/// `Always` for a `latest` or missing tag, else `IfNotPresent` (also for names that do not parse).
pub(super) fn image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].find(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if repository.is_empty()
        || repository.bytes().any(|c| c.is_ascii_uppercase())
        || tag == Some("")
    {
        return "IfNotPresent";
    }
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

/// `ComputePodQOS`, per container: `BestEffort`, `Guaranteed` or `Burstable`.
pub(super) fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let compute = |kind: &str| -> Vec<(&'static str, Quantity)> {
            ["cpu", "memory"]
                .into_iter()
                .filter_map(|r| {
                    let q = c
                        .at(&format!("/resources/{kind}/{r}"))
                        .and_then(Value::as_str)?;
                    Quantity::parse(q)
                        .ok()
                        .filter(|q| !q.is_zero() && !q.is_negative())
                        .map(|q| (r, q))
                })
                .collect()
        };
        let (requests, limits) = (compute("requests"), compute("limits"));
        any |= !requests.is_empty() || !limits.is_empty();
        if limits.len() != 2 || requests.len() != limits.len() {
            guaranteed = false;
        }
        for (name, req) in &requests {
            if !limits
                .iter()
                .any(|(n, lim)| n == name && lim.cmp_value(req).is_eq())
            {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_should_follow_the_tag() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(image_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(image_pull_policy("localhost:5000/app:v2"), "IfNotPresent");
        assert_eq!(image_pull_policy("nginx@sha256:abc"), "IfNotPresent");
        assert_eq!(image_pull_policy(""), "IfNotPresent");
        assert_eq!(image_pull_policy("Nginx"), "IfNotPresent");
    }

    #[test]
    fn pod_should_get_upstream_defaults() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "readinessProbe": {"httpGet": {"port": 80}}}],
            "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}]}});
        pod(&mut p);
        assert_eq!(
            p,
            json!({"spec": {
                "containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Always",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
                    "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
                "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
                "enableServiceLinks": true, "priority": 0, "preemptionPolicy": "PreemptLowerPriority"},
              "status": {"phase": "Pending", "qosClass": "Guaranteed"}})
        );
    }

    #[test]
    fn pod_should_keep_values_that_are_set() {
        let mut p = json!({"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": []}, "status": {"phase": "Running"}});
        pod(&mut p);
        assert_eq!(p.pointer("/spec/restartPolicy"), Some(&json!("Never")));
        assert_eq!(
            p.pointer("/spec/terminationGracePeriodSeconds"),
            Some(&json!(0))
        );
        assert_eq!(p.pointer("/status/phase"), Some(&json!("Running")));
    }

    #[test]
    fn host_network_pods_should_get_host_ports() {
        let mut p = json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 9100}]}]}});
        pod(&mut p);
        assert_eq!(
            p.pointer("/spec/containers/0/ports/0/hostPort"),
            Some(&json!(9100))
        );
    }

    #[test]
    fn qos_class_should_classify_pods() {
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "c"}]})),
            "BestEffort"
        );
        assert_eq!(
            qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]})),
            "Burstable"
        );
        let g = json!({"containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
    }

    #[test]
    fn template_should_default_the_pod_spec_without_pod_only_fields() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}});
        template(&mut d, "/spec/template");
        assert_eq!(
            d.pointer("/spec/template/spec/restartPolicy"),
            Some(&json!("Always"))
        );
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/imagePullPolicy"),
            Some(&json!("IfNotPresent"))
        );
        assert_eq!(d.pointer("/spec/template/spec/enableServiceLinks"), None);
        let mut c = json!({});
        template(&mut c, "/spec/jobTemplate/spec/template");
        assert_eq!(
            c.pointer("/spec/jobTemplate/spec/template/spec/dnsPolicy"),
            Some(&json!("ClusterFirst"))
        );
    }
}
