//! Defaults of workloads (`pkg/apis/apps/v1`, `pkg/apis/batch/v1` and ReplicationController) and their pod templates.

use kubernel_api::pointer::Pointer;
use serde_json::{json, Value};

use super::defaults::{
    claim_fields, default_str, default_value, each_object, ensure_object, object_mut, spec_of,
};
use super::pod_defaults::template;

/// `replicas: 1`.
pub(super) fn replicas(object: &mut Value) {
    if let Some(spec) = spec_of(object) {
        default_value(spec, "replicas", json!(1));
    }
}

/// `SetDefaults_ReplicationController`: replicas, and selector and labels from the template.
pub(super) fn replication_controller(object: &mut Value) {
    replicas(object);
    template(object, "/spec/template");
    let labels = object
        .at("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    if let (Some(labels), Some(o)) = (labels, object.as_object_mut()) {
        default_map(o, "spec", "selector", &labels);
        default_map(o, "metadata", "labels", &labels);
    }
}

/// Sets `o[parent][field]` to `value` when it is missing or an empty map.
fn default_map(o: &mut serde_json::Map<String, Value>, parent: &str, field: &str, value: &Value) {
    if let Some(parent) = ensure_object(o, parent) {
        if parent
            .get(field)
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
        {
            parent.insert(field.into(), value.clone());
        }
    }
}

/// `SetDefaults_Deployment`: replicas, a 25%/25% rolling update, history and progress deadline.
pub(super) fn deployment(object: &mut Value) {
    if let Some(spec) = spec_of(object) {
        default_value(spec, "replicas", json!(1));
        if let Some(strategy) = ensure_object(spec, "strategy") {
            default_str(strategy, "type", "RollingUpdate");
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                if let Some(ru) = ensure_object(strategy, "rollingUpdate") {
                    default_value(ru, "maxUnavailable", json!("25%"));
                    default_value(ru, "maxSurge", json!("25%"));
                }
            }
        }
        default_value(spec, "revisionHistoryLimit", json!(10));
        default_value(spec, "progressDeadlineSeconds", json!(600));
    }
    template(object, "/spec/template");
}

/// `SetDefaults_StatefulSet`, and its volume claim templates' defaults.
pub(super) fn stateful_set(object: &mut Value) {
    if let Some(spec) = spec_of(object) {
        default_str(spec, "podManagementPolicy", "OrderedReady");
        if let Some(strategy) = ensure_object(spec, "updateStrategy") {
            if strategy
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                strategy.insert("type".into(), json!("RollingUpdate"));
                default_value(strategy, "rollingUpdate", json!({}));
            }
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                if let Some(ru) = object_mut(strategy, "rollingUpdate") {
                    default_value(ru, "partition", json!(0));
                }
            }
        }
        if let Some(policy) = ensure_object(spec, "persistentVolumeClaimRetentionPolicy") {
            default_str(policy, "whenDeleted", "Retain");
            default_str(policy, "whenScaled", "Retain");
        }
        default_value(spec, "replicas", json!(1));
        default_value(spec, "revisionHistoryLimit", json!(10));
        for claim in each_object(spec, "volumeClaimTemplates") {
            claim_fields(claim);
        }
    }
    template(object, "/spec/template");
}

/// `SetDefaults_DaemonSet`: a rolling update of one pod at a time.
pub(super) fn daemon_set(object: &mut Value) {
    if let Some(spec) = spec_of(object) {
        if let Some(strategy) = ensure_object(spec, "updateStrategy") {
            default_str(strategy, "type", "RollingUpdate");
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                if let Some(ru) = ensure_object(strategy, "rollingUpdate") {
                    default_value(ru, "maxUnavailable", json!(1));
                    default_value(ru, "maxSurge", json!(0));
                }
            }
        }
        default_value(spec, "revisionHistoryLimit", json!(10));
    }
    template(object, "/spec/template");
}

/// `SetDefaults_Job` (not the generated selector, which needs the uid; see `job`).
pub(super) fn job(object: &mut Value) {
    if let Some(spec) = spec_of(object) {
        if spec.get("completions").is_none_or(Value::is_null)
            && spec.get("parallelism").is_none_or(Value::is_null)
        {
            spec.insert("completions".into(), json!(1));
        }
        default_value(spec, "parallelism", json!(1));
        let per_index = spec
            .get("backoffLimitPerIndex")
            .is_some_and(|v| !v.is_null());
        default_value(
            spec,
            "backoffLimit",
            json!(if per_index { i64::from(i32::MAX) } else { 6 }),
        );
        default_str(spec, "completionMode", "NonIndexed");
        default_value(spec, "suspend", json!(false));
        let failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
        default_str(
            spec,
            "podReplacementPolicy",
            if failure_policy {
                "Failed"
            } else {
                "TerminatingOrFailed"
            },
        );
    }
    template(object, "/spec/template");
    let labels = object
        .at("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    if let (Some(labels), Some(o)) = (labels, object.as_object_mut()) {
        default_map(o, "metadata", "labels", &labels);
    }
}

/// `SetDefaults_CronJob`.
pub(super) fn cron_job(object: &mut Value) {
    if let Some(spec) = spec_of(object) {
        default_str(spec, "concurrencyPolicy", "Allow");
        default_value(spec, "suspend", json!(false));
        default_value(spec, "successfulJobsHistoryLimit", json!(3));
        default_value(spec, "failedJobsHistoryLimit", json!(1));
    }
    template(object, "/spec/jobTemplate/spec/template");
}

#[cfg(test)]
mod tests {
    use crate::admission::defaulted;
    use serde_json::json;

    #[test]
    fn deployment_should_get_upstream_defaults() {
        let d = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        );
        assert_eq!(d.pointer("/spec/replicas"), Some(&json!(1)));
        assert_eq!(
            d.pointer("/spec/strategy"),
            Some(
                &json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
            )
        );
        assert_eq!(d.pointer("/spec/revisionHistoryLimit"), Some(&json!(10)));
        assert_eq!(
            d.pointer("/spec/progressDeadlineSeconds"),
            Some(&json!(600))
        );
        assert_eq!(
            d.pointer("/spec/template/spec/schedulerName"),
            Some(&json!("default-scheduler"))
        );
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/terminationMessagePolicy"),
            Some(&json!("File"))
        );
    }

    #[test]
    fn recreate_deployments_should_get_no_rolling_update() {
        let d = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(
            d.pointer("/spec/strategy"),
            Some(&json!({"type": "Recreate"}))
        );
    }

    #[test]
    fn job_should_get_upstream_defaults() {
        let j = defaulted(
            "batch",
            "Job",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"restartPolicy": "Never"}}}}),
        );
        let spec = &j["spec"];
        assert_eq!(
            (
                spec["completions"].clone(),
                spec["parallelism"].clone(),
                spec["backoffLimit"].clone()
            ),
            (json!(1), json!(1), json!(6))
        );
        assert_eq!(
            (spec["completionMode"].clone(), spec["suspend"].clone()),
            (json!("NonIndexed"), json!(false))
        );
        assert_eq!(spec["podReplacementPolicy"], json!("TerminatingOrFailed"));
        assert_eq!(j.pointer("/metadata/labels/app"), Some(&json!("x")));
        let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
        assert_eq!(parallel.pointer("/spec/completions"), None);
    }

    #[test]
    fn workloads_should_get_their_strategies() {
        let s = defaulted(
            "apps",
            "StatefulSet",
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}),
        );
        assert_eq!(
            s.pointer("/spec/updateStrategy"),
            Some(&json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}))
        );
        assert_eq!(
            s.pointer("/spec/podManagementPolicy"),
            Some(&json!("OrderedReady"))
        );
        assert_eq!(
            s.pointer("/spec/volumeClaimTemplates/0/spec/volumeMode"),
            Some(&json!("Filesystem"))
        );
        let d = defaulted("apps", "DaemonSet", json!({}));
        assert_eq!(
            d.pointer("/spec/updateStrategy"),
            Some(
                &json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
            )
        );
        let r = defaulted("apps", "ReplicaSet", json!({}));
        assert_eq!(r.pointer("/spec/replicas"), Some(&json!(1)));
        let c = defaulted(
            "batch",
            "CronJob",
            json!({"spec": {"schedule": "* * * * *"}}),
        );
        assert_eq!(c.pointer("/spec/concurrencyPolicy"), Some(&json!("Allow")));
    }
}
