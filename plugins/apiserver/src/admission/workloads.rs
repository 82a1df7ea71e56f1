//! Workload validation: Deployment, ReplicaSet, StatefulSet, DaemonSet and Job specs, and what may not change on update.

use kubernel_api::pointer::Pointer;
use serde_json::{json, Value};

use super::compare::semantic_eq;
use super::meta::{validate_annotations, validate_labels};
use super::names::percent;
use super::pod::{str_of, validate_pod_spec};
use super::render::{go_label_selector, go_string_map};
use super::selector::{is_empty, matches, validate_label_selector};
use crate::status::Cause;

const NOT_NEGATIVE: &str = "must be greater than or equal to 0";

/// A workload kind, with what upstream says about it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

/// `ValidateNonnegativeField` of `spec.<field>`.
pub(super) fn non_negative(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = spec.get(field).and_then(Value::as_i64).filter(|n| *n < 0) {
        causes.push(Cause::invalid(
            format!("spec.{field}"),
            &json!(n),
            NOT_NEGATIVE,
        ));
    }
}

/// `ValidatePodTemplateSpec` at `spec.template`: labels, annotations and the pod spec.
pub(super) fn validate_template(template: &Value, causes: &mut Vec<Cause>) {
    let md = template.get("metadata");
    validate_labels(
        md.and_then(|m| m.get("labels")),
        "spec.template.labels",
        causes,
    );
    validate_annotations(
        md.and_then(|m| m.get("annotations")),
        "spec.template.annotations",
        causes,
    );
    validate_pod_spec(
        template.get("spec").unwrap_or(&Value::Null),
        "spec.template.spec",
        causes,
    );
}

/// The selector must select the template's labels (a missing selector selects nothing, an empty one everything).
pub(super) fn selector_matches_template(spec: &Value, causes: &mut Vec<Cause>) {
    let selector = spec.get("selector").filter(|s| s.is_object());
    let labels = spec.at("/template/metadata/labels");
    let selects_everything = selector.is_some_and(is_empty);
    if !selects_everything && !matches(selector, labels) {
        causes.push(Cause::invalid_rendered(
            "spec.template.metadata.labels",
            &go_string_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
}

/// The spec of a Deployment, ReplicaSet, StatefulSet or DaemonSet.
pub(super) fn validate_workload(kind: Workload, object: &Value, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let spec = object.get("spec").unwrap_or(&null);
    let noun = match kind {
        Workload::Deployment | Workload::ReplicaSet => "deployment",
        Workload::StatefulSet => "statefulset",
        Workload::DaemonSet => "daemonset",
    };
    if kind != Workload::DaemonSet {
        non_negative(spec, "replicas", causes);
    }
    non_negative(spec, "minReadySeconds", causes);
    non_negative(spec, "revisionHistoryLimit", causes);
    let selector = spec.get("selector").filter(|s| s.is_object());
    let convertible = match selector {
        // upstream does not require a DaemonSet selector: a missing one only fails to match the template.
        None if kind == Workload::DaemonSet => true,
        None => {
            causes.push(Cause::required("spec.selector"));
            true
        }
        Some(sel) => {
            let ok = validate_label_selector(sel, "spec.selector", causes);
            if is_empty(sel) {
                causes.push(Cause::invalid_rendered(
                    "spec.selector",
                    &go_label_selector(Some(sel)),
                    &format!("empty selector is invalid for {noun}"),
                ));
            }
            ok
        }
    };
    let template = spec.get("template").unwrap_or(&null);
    if convertible {
        selector_matches_template(spec, causes);
        validate_template(template, causes);
        let restart = template
            .at("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if restart != "Always" {
            causes.push(Cause::not_supported(
                "spec.template.spec.restartPolicy",
                &json!(restart),
                &["Always"],
            ));
        }
        if template
            .at("/spec/activeDeadlineSeconds")
            .is_some_and(|v| !v.is_null())
        {
            let owner = match kind {
                Workload::Deployment | Workload::ReplicaSet => "ReplicaSet",
                Workload::StatefulSet => "StatefulSet",
                Workload::DaemonSet => "DaemonSet",
            };
            causes.push(Cause::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                &format!("activeDeadlineSeconds in {owner} is not Supported"),
            ));
        }
    } else {
        causes.push(Cause::invalid_rendered(
            "spec.selector",
            &go_label_selector(selector),
            "invalid label selector",
        ));
    }
    match kind {
        Workload::Deployment => deployment_strategy(spec, causes),
        Workload::StatefulSet => stateful_set_policies(spec, causes),
        Workload::DaemonSet => {
            let t = spec
                .at("/updateStrategy/type")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !matches!(t, "RollingUpdate" | "OnDelete") {
                causes.push(Cause::not_supported(
                    "spec.updateStrategy.type",
                    &json!(t),
                    &["OnDelete", "RollingUpdate"],
                ));
            }
        }
        Workload::ReplicaSet => {}
    }
}

/// `ValidatePositiveIntOrPercent`; returns the number (or percentage) for the zero checks.
fn int_or_percent(v: Option<&Value>, path: &str, causes: &mut Vec<Cause>) -> i64 {
    match v {
        Some(Value::String(s)) => {
            causes.extend(
                percent(s)
                    .iter()
                    .map(|m| Cause::invalid(path, &json!(s), m)),
            );
            s.trim_end_matches('%').parse().unwrap_or(0)
        }
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if n < 0 {
                causes.push(Cause::invalid(path, &json!(n), NOT_NEGATIVE));
            }
            n
        }
        _ => 0,
    }
}

/// `ValidateDeploymentStrategy`, and the progress deadline.
fn deployment_strategy(spec: &Value, causes: &mut Vec<Cause>) {
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match str_of(strategy, "type") {
        "Recreate" if rolling.is_some() => {
            causes.push(Cause::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
        "Recreate" => {}
        "RollingUpdate" => match rolling {
            None => causes.push(Cause::required_because(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let unavailable = int_or_percent(
                    ru.get("maxUnavailable"),
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    causes,
                );
                let surge = int_or_percent(
                    ru.get("maxSurge"),
                    "spec.strategy.rollingUpdate.maxSurge",
                    causes,
                );
                let value = ru.get("maxUnavailable").cloned().unwrap_or(Value::Null);
                if unavailable == 0 && surge == 0 {
                    causes.push(Cause::invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &value,
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if value.as_str().is_some() && unavailable > 100 {
                    causes.push(Cause::invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &value,
                        "must not be greater than 100%",
                    ));
                }
            }
        },
        _ => causes.push(Cause::not_supported(
            "spec.strategy",
            strategy,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let Some(deadline) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        non_negative(spec, "progressDeadlineSeconds", causes);
        if deadline
            <= spec
                .get("minReadySeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        {
            causes.push(Cause::invalid(
                "spec.progressDeadlineSeconds",
                &json!(deadline),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

/// Pod management policy and update strategy of a StatefulSet.
fn stateful_set_policies(spec: &Value, causes: &mut Vec<Cause>) {
    match str_of(spec, "podManagementPolicy") {
        "" => causes.push(Cause::required("spec.podManagementPolicy")),
        "OrderedReady" | "Parallel" => {}
        other => causes.push(Cause::invalid(
            "spec.podManagementPolicy",
            &json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    match str_of(strategy, "type") {
        "" => causes.push(Cause::required("spec.updateStrategy")),
        "RollingUpdate" => {}
        "OnDelete" if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) => {
            causes.push(Cause::invalid(
                "spec.updateStrategy.rollingUpdate",
                strategy.get("rollingUpdate").unwrap_or(&Value::Null),
                "only allowed for updateStrategy 'RollingUpdate'",
            ))
        }
        "OnDelete" => {}
        _ => causes.push(Cause::invalid(
            "spec.updateStrategy",
            strategy,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
}

/// What may not change on a workload update: the selector (apps/v1), and most of a StatefulSet's spec.
pub(super) fn validate_workload_update(
    kind: Workload,
    new: &Value,
    old: &Value,
    causes: &mut Vec<Cause>,
) {
    let null = Value::Null;
    let (ns, os) = (
        new.get("spec").unwrap_or(&null),
        old.get("spec").unwrap_or(&null),
    );
    if kind == Workload::StatefulSet {
        let mut clone = ns.clone();
        if let Some(c) = clone.as_object_mut() {
            for field in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                match os.get(field) {
                    Some(v) => c.insert(field.into(), v.clone()),
                    None => c.remove(field),
                };
            }
        }
        if !semantic_eq(Some(&clone), Some(os)) {
            causes.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        return;
    }
    if !semantic_eq(ns.get("selector"), os.get("selector")) {
        causes.push(Cause::invalid_rendered(
            "spec.selector",
            &go_label_selector(ns.get("selector")),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(selector: Value, labels: Value) -> Value {
        json!({"spec": {"replicas": 1, "selector": selector, "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "template": {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}]}}}})
    }

    fn texts(kind: Workload, object: &Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate_workload(kind, object, &mut causes);
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_valid_deployment_should_pass() {
        let d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "x": "y"}),
        );
        assert!(texts(Workload::Deployment, &d).is_empty());
    }

    #[test]
    fn selector_should_match_template_labels() {
        let d = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "db"}));
        assert_eq!(
            texts(Workload::Deployment, &d),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn a_missing_selector_should_be_required_and_match_nothing() {
        let mut d = deployment(json!(null), json!({"app": "web"}));
        if let Some(spec) = d["spec"].as_object_mut() {
            spec.remove("selector");
        }
        assert_eq!(
            texts(Workload::Deployment, &d),
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );
    }

    #[test]
    fn replicas_should_not_be_negative_and_empty_selectors_are_invalid() {
        let mut d = deployment(json!({}), json!({"app": "web"}));
        d["spec"]["replicas"] = json!(-1);
        assert_eq!(
            texts(Workload::ReplicaSet, &d),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
            ]
        );
    }

    #[test]
    fn templates_should_restart_always_and_have_valid_pods() {
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        assert_eq!(
            texts(Workload::DaemonSet, &{
                let mut ds = d.clone();
                ds["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
                ds
            }),
            vec![
                "spec.template.spec.containers[0].image: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
    }

    #[test]
    fn deployment_strategy_should_not_block_every_pod() {
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": "0%"});
        assert_eq!(texts(Workload::Deployment, &d), vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]);
    }

    #[test]
    fn selector_should_be_immutable() {
        let old = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        let new = deployment(
            json!({"matchLabels": {"app": "web2"}}),
            json!({"app": "web2"}),
        );
        let mut causes = Vec::new();
        validate_workload_update(Workload::Deployment, &new, &old, &mut causes);
        assert_eq!(
            causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>(),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
    }

    #[test]
    fn stateful_sets_should_only_change_allowed_fields() {
        let old = json!({"spec": {"replicas": 1, "serviceName": "a", "template": {}}});
        let mut causes = Vec::new();
        validate_workload_update(
            Workload::StatefulSet,
            &json!({"spec": {"replicas": 3, "serviceName": "a", "template": {"x": 1}}}),
            &old,
            &mut causes,
        );
        assert!(causes.is_empty());
        validate_workload_update(
            Workload::StatefulSet,
            &json!({"spec": {"replicas": 1, "serviceName": "b"}}),
            &old,
            &mut causes,
        );
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.starts_with(
            "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals'"
        ));
    }

    #[test]
    fn daemon_sets_without_selector_should_only_fail_to_match() {
        let mut d = deployment(json!(null), json!({"app": "agent"}));
        d["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
        if let Some(spec) = d["spec"].as_object_mut() {
            spec.remove("selector");
        }
        assert_eq!(
            texts(Workload::DaemonSet, &d),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"]
        );
    }
}
