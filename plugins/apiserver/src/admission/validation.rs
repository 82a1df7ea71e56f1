//! Validation on create and update: every cause collected into one 422 Invalid, per kind as upstream's strategies do.

use kubernel_api::pointer::Pointer;
use kubernel_api::resources::Resource;
use serde_json::{json, Value};

use super::job::{validate_job, validate_job_update};
use super::kinds::{
    validate_binding, validate_data, validate_data_update, validate_pdb, validate_taints, RBAC,
};
use super::meta::{validate_object_meta, validate_object_meta_update};
use super::names::NameRule;
use super::pod::validate_pod_create;
use super::pod_update::validate_pod_update;
use super::service::{validate_service, validate_service_update};
use super::workloads::{validate_workload, validate_workload_update, Workload};
use crate::status::{ApiError, Cause};

/// How names of `r` are validated.
fn name_rule(r: &Resource) -> NameRule {
    match (r.group, r.kind) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035,
        (RBAC, _) | ("certificates.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// The workload kind of `r`, if it is one.
fn workload(r: &Resource) -> Option<Workload> {
    match (r.group, r.kind) {
        ("apps", "Deployment") => Some(Workload::Deployment),
        ("apps", "ReplicaSet") => Some(Workload::ReplicaSet),
        ("apps", "StatefulSet") => Some(Workload::StatefulSet),
        ("apps", "DaemonSet") => Some(Workload::DaemonSet),
        _ => None,
    }
}

/// The kind-specific rules shared by create and update (Pods differ and are handled by the callers).
fn validate_spec(r: &Resource, object: &Value, causes: &mut Vec<Cause>) {
    if let Some(w) = workload(r) {
        return validate_workload(w, object, causes);
    }
    match (r.group, r.kind) {
        ("", "Service") => validate_service(object, causes),
        ("", "Node") => validate_taints(object, causes),
        ("", "ConfigMap") => validate_data(object, false, causes),
        ("", "Secret") => validate_data(object, true, causes),
        ("batch", "Job") => validate_job(object, causes),
        ("policy", "PodDisruptionBudget") => validate_pdb(object, causes),
        ("scheduling.k8s.io", "PriorityClass") => {
            super::priority::validate_priority_class(object, causes)
        }
        ("coordination.k8s.io", "Lease") => {
            if let Some(d) = object
                .at("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                .filter(|d| *d <= 0)
            {
                causes.push(Cause::invalid(
                    "spec.leaseDurationSeconds",
                    &json!(d),
                    "must be greater than 0",
                ));
            }
        }
        (RBAC, "RoleBinding" | "ClusterRoleBinding") => validate_binding(r.kind, object, causes),
        _ => {}
    }
}

/// Validates a new object of `r` (after defaults and server-set metadata); `Err` is a 422 Invalid with every cause.
pub fn validate_create(r: &Resource, object: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validate_object_meta(object, r.namespaced, name_rule(r), &mut causes);
    if (r.group, r.kind) == ("", "Pod") {
        validate_pod_create(object, &mut causes);
    } else {
        validate_spec(r, object, &mut causes);
    }
    finish(r, object, causes)
}

/// Validates an update of `old` to `new`, including the fields that may not change; `Err` is a 422 Invalid.
pub fn validate_update(r: &Resource, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validate_object_meta_update(new, old, &mut causes);
    if (r.group, r.kind) == ("", "Pod") {
        validate_pod_update(new, old, &mut causes);
        return finish(r, new, causes);
    }
    validate_spec(r, new, &mut causes);
    if let Some(w) = workload(r) {
        validate_workload_update(w, new, old, &mut causes);
    }
    match (r.group, r.kind) {
        ("", "Service") => validate_service_update(new, old, &mut causes),
        ("", "ConfigMap" | "Secret") => validate_data_update(r.kind, new, old, &mut causes),
        ("batch", "Job") => validate_job_update(new, old, &mut causes),
        ("scheduling.k8s.io", "PriorityClass") => {
            super::priority::validate_priority_class_update(new, old, &mut causes)
        }
        (RBAC, "RoleBinding" | "ClusterRoleBinding")
            if new.get("roleRef") != old.get("roleRef") =>
        {
            causes.push(Cause::invalid(
                "roleRef",
                new.get("roleRef").unwrap_or(&Value::Null),
                "cannot change roleRef",
            ));
        }
        _ => {}
    }
    finish(r, new, causes)
}

/// `Ok`, or the 422 Invalid named like upstream: `Deployment.apps "web" is invalid: ...`.
fn finish(r: &Resource, object: &Value, causes: Vec<Cause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    let name = object
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let e = ApiError::invalid(r.group, r.kind, name, causes);
    if r.group.is_empty() {
        return Err(e);
    }
    let rest = e
        .message
        .strip_prefix(r.kind)
        .unwrap_or(&e.message)
        .to_string();
    Err(e.with_message(format!("{}.{}{rest}", r.kind, r.group)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{apply_defaults, created, err, test_resource};

    #[test]
    fn a_defaulted_pod_should_be_valid() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
        assert_eq!(created("", "Pod", true, pod), Ok(()));
    }

    #[test]
    fn invalid_pods_should_report_every_cause_in_one_error() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": [{"name": "web"}], "restartPolicy": "Sometimes"}});
        let (code, message, causes) = err(created("", "Pod", true, pod));
        assert_eq!(code, 422);
        assert_eq!(
            message,
            "Pod \"web\" is invalid: [spec.containers[0].image: Required value, spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"]"
        );
        assert_eq!(
            causes,
            vec![
                ("spec.containers[0].image".to_string(), "FieldValueRequired"),
                ("spec.restartPolicy".to_string(), "FieldValueNotSupported")
            ]
        );
    }

    #[test]
    fn group_kinds_should_be_qualified_in_the_message() {
        let d = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        let (_, message, _) = err(created("apps", "Deployment", true, d));
        assert_eq!(
            message,
            "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn names_should_follow_each_kinds_rule() {
        let (_, _, causes) = err(created(
            "",
            "Namespace",
            false,
            json!({"metadata": {"name": "a.b"}}),
        ));
        assert_eq!(
            causes,
            vec![("metadata.name".to_string(), "FieldValueInvalid")]
        );
        let svc = json!({"metadata": {"name": "1web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}});
        let (_, message, _) = err(created("", "Service", true, svc));
        assert!(message.starts_with("Service \"1web\" is invalid: metadata.name: Invalid value: \"1web\": a DNS-1035 label"), "{message}");
        assert_eq!(
            created(
                "",
                "Node",
                false,
                json!({"metadata": {"name": "node-1.example.com"}})
            ),
            Ok(())
        );
        assert_eq!(
            created(
                RBAC,
                "ClusterRole",
                false,
                json!({"metadata": {"name": "system:controller:x"}})
            ),
            Ok(())
        );
    }

    #[test]
    fn generated_names_should_be_checked_by_prefix() {
        let (_, _, causes) = err(created(
            "",
            "ConfigMap",
            true,
            json!({"metadata": {"generateName": "Cfg-", "name": "cfg-abcde", "namespace": "default"}}),
        ));
        assert_eq!(
            causes,
            vec![("metadata.generateName".to_string(), "FieldValueInvalid")]
        );
    }

    #[test]
    fn pod_updates_should_go_through_the_update_rules() {
        let r = test_resource("", "Pod", true);
        let mut old = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
        apply_defaults(&r, &mut old);
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_eq!(validate_update(&r, &old, &new), Ok(()));
        new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
        let (_, message, causes) = err(validate_update(&r, &old, &new));
        assert!(message.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{message}");
        assert_eq!(causes, vec![("spec".to_string(), "FieldValueForbidden")]);
    }

    #[test]
    fn unknown_kinds_should_get_metadata_validation_only() {
        assert_eq!(
            created(
                "example.com",
                "Widget",
                true,
                json!({"metadata": {"name": "w", "namespace": "default"}, "spec": 5})
            ),
            Ok(())
        );
        let (_, message, _) = err(created(
            "example.com",
            "Widget",
            true,
            json!({"metadata": {"namespace": "default"}}),
        ));
        assert_eq!(message, "Widget.example.com \"\" is invalid: metadata.name: Required value: name or generateName is required");
    }
}
