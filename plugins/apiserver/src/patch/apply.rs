//! Server-side apply (`application/apply-patch+yaml`): merges the applied configuration and records field ownership.

use serde_json::{json, Value};

use super::fieldset::{Conflict, FieldSet};
use super::merge_keys;
use super::strategic::{merge_map, Object};
use super::Failure;
use crate::status::{ApiError, Cause};

/// Applies configuration `body` (YAML or JSON) of `kind` for `manager` to `original` (`Null`: create).
///
/// The configuration is merged into the live object with strategic-merge semantics (lists merge by key
/// per the schema), fields the manager applied before and has now dropped are removed unless another
/// manager owns them, and the manager's `Apply` entry in `metadata.managedFields` is replaced. A field
/// another manager owns conflicts (409) when the apply changes its value, unless `force` is set, in which
/// case the other manager loses it. Fields written without a `managedFields` entry are owned by nobody:
/// they never conflict and are never removed.
pub(super) fn apply(
    kind: &str,
    original: &Value,
    body: &[u8],
    manager: &str,
    force: bool,
) -> Result<Value, Failure> {
    let config = parse(body)?;
    let api_version = check(&config, original)?;
    let ty = merge_keys::root(kind);
    let live = match original {
        Value::Object(o) => o.clone(),
        _ => Object::new(),
    };
    let mine = FieldSet::of_applied(ty, &config);
    let mut entries: Vec<Value> = match live.get("metadata").and_then(|m| m.get("managedFields")) {
        Some(Value::Array(entries)) => entries.clone(),
        _ => Vec::new(),
    };
    let own = entries
        .iter()
        .position(|e| e["manager"] == manager && e["operation"] == "Apply");
    let previous = own
        .map(|i| FieldSet::from_fields_v1(&entries[i]["fieldsV1"]))
        .unwrap_or_default();
    let mut others: Vec<(usize, FieldSet)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != own)
        .map(|(i, e)| (i, FieldSet::from_fields_v1(&e["fieldsV1"])))
        .collect();

    let (live_value, config_value) = (Value::Object(live.clone()), Value::Object(config.clone()));
    let conflicts: Vec<(usize, Conflict)> = others
        .iter()
        .flat_map(|(i, set)| {
            mine.conflicts_with(set, ty, &live_value, &config_value)
                .into_iter()
                .map(|c| (*i, c))
        })
        .collect();
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&entries, &conflicts));
    }
    let mut disowned = vec![false; entries.len()];
    for (i, conflict) in &conflicts {
        if let Some((_, set)) = others.iter_mut().find(|(j, _)| j == i) {
            set.disown(&conflict.path);
            disowned[*i] = true;
        }
    }

    let mut merged = merge_map(ty, live, config)?;
    let other_sets: Vec<&FieldSet> = others.iter().map(|(_, s)| s).collect();
    super::fieldset::prune(&mut merged, ty, &previous, Some(&mine), &other_sets);

    let entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "fieldsType": "FieldsV1",
        "fieldsV1": mine.to_fields_v1(),
    });
    for (i, set) in others.iter().filter(|(i, _)| disowned[*i]) {
        entries[*i]["fieldsV1"] = set.to_fields_v1();
    }
    let mut kept: Vec<Value> = Vec::with_capacity(entries.len() + 1);
    for (i, e) in entries.into_iter().enumerate() {
        if Some(i) == own {
            kept.push(entry.clone());
        } else if !(disowned[i] && others.iter().any(|(j, s)| *j == i && s.is_empty())) {
            kept.push(e);
        }
    }
    if own.is_none() {
        kept.push(entry);
    }
    let metadata = merged.entry("metadata").or_insert_with(|| json!({}));
    if let Value::Object(m) = metadata {
        m.insert("managedFields".into(), Value::Array(kept));
    }
    Ok(Value::Object(merged))
}

/// Parses the body as JSON, else as YAML; it must be one object.
fn parse(body: &[u8]) -> Result<Object, Failure> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => crate::yaml::from_slice(body)
            .map_err(|e| super::bad_request("apply patch", format!("error decoding YAML: {e}")))?,
    };
    match value {
        Value::Object(map) => Ok(map),
        other => Err(super::bad_request(
            "apply patch",
            format!("error decoding YAML: expected an object, got {other}"),
        )),
    }
}

/// Upstream's checks of an applied configuration; returns its `apiVersion`.
fn check(config: &Object, original: &Value) -> Result<String, Failure> {
    let meta = config.get("metadata");
    if meta
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(Failure::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let text = |k: &str| {
        config
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(api_version), Some(_)) = (text("apiVersion"), text("kind")) else {
        return Err(super::bad_request(
            "apply patch",
            "the configuration must set \"apiVersion\" and \"kind\"",
        ));
    };
    match original.get("apiVersion").and_then(Value::as_str) {
        Some(expected) if expected != api_version => Err(Failure::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {expected}"
        ))),
        _ => Ok(api_version.to_string()),
    }
}

/// Upstream `printManager`: `"name"`, plus `using <apiVersion> at <time>` for an `Update` entry.
fn describe(entry: &Value) -> String {
    let mut out = format!("{:?}", entry["manager"].as_str().unwrap_or_default());
    if let Some(sub) = entry["subresource"].as_str().filter(|s| !s.is_empty()) {
        out.push_str(&format!(" with subresource {sub:?}"));
    }
    if entry["operation"] == "Update" {
        out.push_str(&format!(
            " using {}",
            entry["apiVersion"].as_str().unwrap_or_default()
        ));
        if let Some(time) = entry["time"].as_str() {
            out.push_str(&format!(" at {time}"));
        }
    }
    out
}

/// Upstream's 409 `Apply failed with N conflict(s): …`, one `FieldManagerConflict` cause per field.
fn conflict_error(entries: &[Value], conflicts: &[(usize, Conflict)]) -> Failure {
    let manager = |i: usize| entries.get(i).map(describe).unwrap_or_default();
    let message = match conflicts {
        [(i, c)] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            manager(*i),
            c.display
        ),
        _ => {
            let mut by_manager: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
            for (i, c) in conflicts {
                by_manager.entry(manager(*i)).or_default().push(&c.display);
            }
            let lines: Vec<String> = by_manager
                .iter()
                .flat_map(|(m, paths)| {
                    std::iter::once(format!("conflicts with {m}:"))
                        .chain(paths.iter().map(|p| format!("- {p}")))
                })
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    let mut e = ApiError::conflict_message("", "", "", message);
    e.causes = conflicts
        .iter()
        .map(|(i, c)| Cause {
            reason: "FieldManagerConflict",
            message: format!("conflict with {}", manager(*i)),
            field: c.display.clone(),
        })
        .collect();
    Failure::Api(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::{case, deployment, run, CONTAINER};
    use crate::patch::{apply_patch, PatchType};

    fn applied(replicas: u32, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
               "spec": {"replicas": replicas}})
    }

    fn body(v: &Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn apply_should_remove_fields_the_manager_dropped() {
        let first = apply(
            "Deployment",
            &Value::Null,
            &body(&applied(1, json!({"a": "1", "b": "2"}))),
            "m",
            false,
        );
        let first = first.unwrap_or_default();
        let second = apply(
            "Deployment",
            &first,
            &body(&applied(1, json!({"a": "1"}))),
            "m",
            false,
        );
        let second = second.unwrap_or_default();
        assert_eq!(second["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(
            second["metadata"]["managedFields"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn apply_should_conflict_with_another_manager_unless_forced() {
        let first = apply(
            "Deployment",
            &Value::Null,
            &body(&applied(1, Value::Null)),
            "alice",
            false,
        );
        let first = first.unwrap_or_default();
        let err = apply(
            "Deployment",
            &first,
            &body(&applied(3, Value::Null)),
            "bob",
            false,
        )
        .err();
        let err = err
            .map(ApiError::from)
            .unwrap_or_else(|| ApiError::bad_request("no conflict"));
        assert_eq!((err.code, err.reason), (409, "Conflict"));
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
        );
        assert_eq!(err.causes[0].field, ".spec.replicas");

        let forced = apply(
            "Deployment",
            &first,
            &body(&applied(3, Value::Null)),
            "bob",
            true,
        )
        .unwrap_or_default();
        assert_eq!(forced["spec"]["replicas"], 3);
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, vec!["bob"]);
    }

    #[test]
    fn apply_should_share_fields_applied_with_the_same_value() {
        let first = apply(
            "Deployment",
            &Value::Null,
            &body(&applied(2, json!({}))),
            "alice",
            false,
        );
        let first = first.unwrap_or_default();
        let shared = apply(
            "Deployment",
            &first,
            &body(&applied(2, json!({}))),
            "bob",
            false,
        )
        .unwrap_or_default();
        assert_eq!(
            shared["metadata"]["managedFields"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn apply_should_reject_bad_configurations() {
        let live = applied(1, json!({}));
        let cases = [
            json!({"kind": "Deployment", "metadata": {"name": "web"}}),
            json!({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "managedFields": []}}),
            json!(["not", "an", "object"]),
        ];
        for config in cases {
            let err = apply("Deployment", &live, &body(&config), "m", false).err();
            assert_eq!(err.map(|e| ApiError::from(e).code), Some(400), "{config}");
        }
    }

    #[test]
    fn apply_should_refuse_deeply_nested_yaml_with_400() {
        let live = applied(1, json!({}));
        let deep = format!(
            "apiVersion: apps/v1\nkind: Deployment\nspec: {}",
            "{a: ".repeat(50_000)
        );
        let err = apply("Deployment", &live, deep.as_bytes(), "m", false)
            .err()
            .map(ApiError::from);
        let (code, message) = err.map(|e| (e.code, e.message)).unwrap_or_default();
        assert_eq!(code, 400);
        assert!(
            message.starts_with("apply patch: error decoding YAML: yaml: collections nest deeper than 100 levels at line 3"),
            "{message}"
        );
    }

    #[test]
    fn server_side_apply_should_create_update_and_record_managed_fields() {
        use PatchType::Apply as A;
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}});
        let yaml =
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n";
        run(vec![
            case("create from nothing", "Deployment", Value::Null, A, config.clone()).holds(vec![
                ("/spec/replicas", json!(2)),
                ("/metadata/managedFields/0/manager", json!("kubectl")),
                ("/metadata/managedFields/0/operation", json!("Apply")),
                ("/metadata/managedFields/0/apiVersion", json!("apps/v1")),
                ("/metadata/managedFields/0/fieldsType", json!("FieldsV1")),
                ("/metadata/managedFields/0/fieldsV1/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"web\"}/f:image", json!({})),
            ]),
            case("update merges containers by name", "Deployment", deployment(), A, config.clone()).holds(vec![
                (CONTAINER, json!({"name": "web", "image": "nginx:1.27", "args": ["a", "b"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}]})),
                ("/spec/replicas", json!(2)),
                ("/metadata/labels/app", json!("web")),
                ("/metadata/managedFields/0/fieldsV1/f:spec/f:replicas", json!({})),
            ]),
            case("YAML body", "Deployment", deployment(), A, json!(null)).raw(yaml).holds(vec![
                ("/spec/replicas", json!(4)),
                ("/metadata/managedFields/0/fieldsV1", json!({"f:spec": {"f:replicas": {}}})),
            ]),
            case("body that is neither JSON nor YAML", "Deployment", deployment(), A, json!(null)).raw("a: [").fails(400),
            case("configuration without kind", "Deployment", deployment(), A, json!({"apiVersion": "apps/v1"})).fails(400),
        ]);
    }

    #[test]
    fn server_side_apply_should_stamp_an_rfc3339_time() {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        let out = apply_patch(
            "ConfigMap",
            &Value::Null,
            PatchType::Apply,
            body.to_string().as_bytes(),
            "m",
            false,
        );
        let out = out.unwrap_or_default();
        let time = out
            .pointer("/metadata/managedFields/0/time")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(
            time.ends_with('Z') && time.parse::<jiff::Timestamp>().is_ok(),
            "{time}"
        );
    }
}
