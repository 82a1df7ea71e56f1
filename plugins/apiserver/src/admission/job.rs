//! Job validation (`ValidateJobSpec`, `ValidateJobSpecUpdate`).

use kubernel_api::pointer::Pointer;
use serde_json::{json, Value};

use super::compare::semantic_eq;
use super::pod::str_of;
use super::render::go_label_selector;
use super::selector::validate_label_selector;
use super::workloads::{non_negative, selector_matches_template, validate_template};
use crate::status::Cause;

/// A batch/v1 Job spec. A selector is required only with `manualSelector: true`:
/// upstream generates it from the uid on create, which is assigned after admission here.
pub(super) fn validate_job(object: &Value, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let spec = object.get("spec").unwrap_or(&null);
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
    ] {
        non_negative(spec, field, causes);
    }
    let selector = spec.get("selector").filter(|s| s.is_object());
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    let convertible = match selector {
        None if manual => {
            causes.push(Cause::required("spec.selector"));
            false
        }
        None => false,
        Some(sel) => validate_label_selector(sel, "spec.selector", causes),
    };
    if convertible {
        selector_matches_template(spec, causes);
    }
    let template = spec.get("template").unwrap_or(&null);
    validate_template(template, causes);
    let restart = template
        .at("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(restart, "OnFailure" | "Never") {
        causes.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            &json!(restart),
            &["OnFailure", "Never"],
        ));
    }
    let mode = str_of(spec, "completionMode");
    if !mode.is_empty() && !matches!(mode, "NonIndexed" | "Indexed") {
        causes.push(Cause::not_supported(
            "spec.completionMode",
            &json!(mode),
            &["NonIndexed", "Indexed"],
        ));
    }
}

/// Job fields that may not change: selector, completions (non-indexed) and the template (unless suspended).
pub(super) fn validate_job_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let (ns, os) = (
        new.get("spec").unwrap_or(&null),
        old.get("spec").unwrap_or(&null),
    );
    if os.get("selector").is_some_and(|s| !s.is_null())
        && !semantic_eq(ns.get("selector"), os.get("selector"))
    {
        causes.push(Cause::invalid_rendered(
            "spec.selector",
            &go_label_selector(ns.get("selector")),
            "field is immutable",
        ));
    }
    if str_of(ns, "completionMode") != "Indexed" && ns.get("completions") != os.get("completions") {
        causes.push(Cause::invalid(
            "spec.completions",
            ns.get("completions").unwrap_or(&null),
            "field is immutable",
        ));
    }
    let suspended = ns.get("suspend").and_then(Value::as_bool) == Some(true);
    if !suspended && !semantic_eq(ns.get("template"), os.get("template")) {
        causes.push(Cause::invalid(
            "spec.template",
            ns.get("template").unwrap_or(&null),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_templates_should_not_restart_always() {
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}]}}}});
        let mut causes = Vec::new();
        validate_job(&job, &mut causes);
        assert_eq!(
            causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>(),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
        let mut manual = job.clone();
        manual["spec"]["manualSelector"] = json!(true);
        manual["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let mut causes = Vec::new();
        validate_job(&manual, &mut causes);
        assert_eq!(
            causes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            vec!["spec.selector"]
        );
    }

    #[test]
    fn job_templates_should_be_immutable_unless_suspended() {
        let old = json!({"spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "a"}]}}}});
        let new = json!({"spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "b"}]}}}});
        let mut causes = Vec::new();
        validate_job_update(&new, &old, &mut causes);
        assert_eq!(
            causes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            vec!["spec.template"]
        );
        let mut suspended = new.clone();
        suspended["spec"]["suspend"] = json!(true);
        let mut causes = Vec::new();
        validate_job_update(&suspended, &old, &mut causes);
        assert!(causes.is_empty());
    }
}
