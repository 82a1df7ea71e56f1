//! JSON patch (RFC 6902, `application/json-patch+json`) and JSON merge patch (RFC 7386, `application/merge-patch+json`).

use serde_json::Value;

use super::{bad_request, parse_json, unprocessable, Failure};
use crate::status::ApiError;

/// Most operations one JSON patch may carry (upstream `maxJSONPatchOperations`).
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// RFC 6902: every operation applies or none does.
pub(super) fn json_patch(original: &Value, body: &[u8]) -> Result<Value, Failure> {
    let Value::Array(raw) = parse_json("json patch", body)? else {
        return Err(bad_request("json patch", "expected a list of operations"));
    };
    if raw.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(Failure::Api(Box::new(ApiError::too_large(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            raw.len()
        )))));
    }
    let mut ops = Vec::with_capacity(raw.len());
    for (i, op) in raw.iter().enumerate() {
        let parsed = serde_json::from_value::<json_patch::PatchOperation>(op.clone())
            .map_err(|e| bad_request("json patch", format!("operation {i} {op}: {e}")))?;
        ops.push(parsed);
    }
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| {
        let op = raw
            .get(e.operation)
            .and_then(|o| o["op"].as_str())
            .unwrap_or_default();
        unprocessable(format!(
            "json patch operation {} ({op}) failed at path {:?}: {}",
            e.operation,
            e.path.to_string(),
            e.kind
        ))
    })?;
    Ok(doc)
}

/// RFC 7386: the body must be an object.
pub(super) fn merge_patch(original: &Value, body: &[u8]) -> Result<Value, Failure> {
    let patch = parse_json("merge patch", body)?;
    if !patch.is_object() {
        return Err(bad_request("merge patch", "expected an object"));
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::{case, deployment, run};
    use crate::patch::{apply_patch, PatchType};
    use serde_json::json;

    #[test]
    fn json_and_merge_patch_should_match_upstream() {
        use PatchType::{Json as J, Merge as M};
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
            "spec": {"replicas": 1}, "status": {"replicas": 1, "selector": "app=web"}});
        run(vec![
            case(
                "kubectl scale",
                "Scale",
                scale.clone(),
                M,
                json!({"spec": {"replicas": 3}}),
            )
            .holds(vec![
                ("/spec/replicas", json!(3)),
                ("/status/selector", json!("app=web")),
            ]),
            case(
                "merge patch replaces lists and deletes nulls",
                "Deployment",
                deployment(),
                M,
                json!({"spec": {"strategy": null, "template": {"spec": {"tolerations": []}}}}),
            )
            .holds(vec![
                ("/spec/strategy", Value::Null),
                ("/spec/template/spec/tolerations", json!([])),
            ]),
            case(
                "merge patch body must be an object",
                "Scale",
                scale.clone(),
                M,
                json!([1]),
            )
            .fails(400),
            case(
                "merge patch body must be JSON",
                "Scale",
                scale.clone(),
                M,
                json!(null),
            )
            .raw("nope")
            .fails(400),
            case(
                "json patch add, replace, remove, test",
                "Scale",
                scale.clone(),
                J,
                json!([
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
                {"op": "remove", "path": "/status/selector"}]),
            )
            .holds(vec![
                ("/spec/replicas", json!(5)),
                ("/metadata/labels/a", json!("b")),
                ("/status/selector", Value::Null),
            ]),
            case(
                "json patch test failure",
                "Scale",
                scale.clone(),
                J,
                json!([
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {"op": "test", "path": "/spec/replicas", "value": 2}]),
            )
            .fails(422),
            case(
                "json patch on a missing path",
                "Scale",
                scale.clone(),
                J,
                json!([{"op": "remove", "path": "/spec/nope"}]),
            )
            .fails(422),
            case(
                "json patch with an unknown op",
                "Scale",
                scale.clone(),
                J,
                json!([{"op": "frob", "path": "/spec"}]),
            )
            .fails(400),
            case(
                "json patch that is not a list",
                "Scale",
                scale.clone(),
                J,
                json!({"op": "add"}),
            )
            .fails(400),
            case(
                "json patch that is not JSON",
                "Scale",
                scale,
                J,
                json!(null),
            )
            .raw("[{")
            .fails(400),
        ]);
    }

    #[test]
    fn json_patch_failure_should_name_the_operation() {
        let body = json!([{"op": "test", "path": "/a", "value": 2}]).to_string();
        let err = apply_patch(
            "Pod",
            &json!({"a": 1}),
            PatchType::Json,
            body.as_bytes(),
            "",
            false,
        )
        .err();
        let err = err.unwrap_or_else(|| ApiError::bad_request("no error"));
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        assert_eq!(
            err.message,
            "the server rejected our request due to an error in our request: json patch operation 0 (test) failed at path \"/a\": value did not match"
        );
    }
}
