//! Server-set object metadata: uid, timestamps, generateName, generation, and spec/status separation.

use kubernel_api::pointer::Pointer;
use rand::Rng;
use serde_json::{json, Value};

use crate::request::RequestInfo;
use crate::status::ApiError;

/// A random RFC 4122 version-4 UID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut uid = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            uid.push('-');
        }
        uid.push(char::from(HEX[usize::from(byte >> 4)]));
        uid.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    uid
}

/// Now as a Kubernetes `Time` (RFC 3339, second precision, UTC).
pub fn now() -> String {
    let ts = jiff::Timestamp::now();
    jiff::Timestamp::from_second(ts.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ts.to_string())
}

/// The five random characters `generateName` appends (upstream's alphabet, no vowels).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The `metadata` map of an object, created when missing.
pub fn metadata_mut(object: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    let obj = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object is not a JSON object"))?;
    let md = obj.entry("metadata").or_insert_with(|| json!({}));
    md.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Fills what the server owns on create: apiVersion/kind, namespace, name from
/// generateName, uid, creationTimestamp, generation; drops a client resourceVersion.
pub fn prepare_create(info: &RequestInfo, object: &mut Value) -> Result<(), ApiError> {
    let r = info.resource;
    let api_version = r.api_version();
    if let Some(obj) = object.as_object_mut() {
        obj.insert("apiVersion".into(), json!(api_version));
        obj.insert("kind".into(), json!(r.kind));
    }
    let md = metadata_mut(object)?;
    if r.namespaced {
        let ns = md.get("namespace").and_then(Value::as_str).unwrap_or("");
        if !ns.is_empty() && ns != info.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        md.insert("namespace".into(), json!(info.namespace));
    } else {
        md.remove("namespace");
    }
    let name = md
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        if let Some(prefix) = md
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        {
            let generated = format!("{prefix}{}", name_suffix());
            md.insert("name".into(), json!(generated));
        }
    }
    md.insert("uid".into(), json!(new_uid()));
    md.insert("creationTimestamp".into(), json!(now()));
    md.remove("resourceVersion");
    md.remove("deletionTimestamp");
    md.remove("deletionGracePeriodSeconds");
    md.insert("generation".into(), json!(1));
    Ok(())
}

/// Makes `new` `old` with `new`'s `status` (a write to the status subresource
/// changes nothing else). `new` is usually a patch of `old` and holds the same
/// spec and metadata, so only the fields that differ are copied back from `old`,
/// instead of cloning the whole stored object for every status write.
fn keep_all_but_status(old: &Value, new: &mut Value) {
    let (Some(old_fields), Some(new_fields)) = (old.as_object(), new.as_object_mut()) else {
        let status = new.get_mut("status").map(Value::take);
        *new = old.clone();
        if let Some(fields) = new.as_object_mut() {
            match status {
                Some(s) => fields.insert("status".into(), s),
                None => fields.remove("status"),
            };
        }
        return;
    };
    new_fields.retain(|name, _| name == "status" || old_fields.contains_key(name));
    for (name, value) in old_fields.iter().filter(|(name, _)| *name != "status") {
        match new_fields.get_mut(name) {
            Some(same) if same == value => {}
            Some(other) => *other = value.clone(),
            None => {
                new_fields.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Carries server-owned fields from `old` into `new` on update, keeps the part
/// the request may not change (status for the main resource, everything but
/// status for `/status`), and bumps `generation` when the spec changed.
pub fn prepare_update(
    info: &RequestInfo,
    old: &Value,
    new: &mut Value,
    has_status: bool,
) -> Result<(), ApiError> {
    let r = info.resource;
    if info.subresource == "approval" {
        // A CSR's approval: only its conditions change (`kubectl certificate approve`).
        let conditions = new.at("/status/conditions").cloned();
        let mut merged = old.clone();
        match conditions {
            Some(c) => merged["status"]["conditions"] = c,
            None => {
                if let Some(st) = merged.get_mut("status").and_then(Value::as_object_mut) {
                    st.remove("conditions");
                }
            }
        }
        if let Some(rv) = new.at("/metadata/resourceVersion").cloned() {
            metadata_mut(&mut merged)?.insert("resourceVersion".into(), rv);
        }
        *new = merged;
        return Ok(());
    }
    if info.subresource == "status" {
        let rv = new.at("/metadata/resourceVersion").cloned();
        keep_all_but_status(old, new);
        if let Some(rv) = rv {
            metadata_mut(new)?.insert("resourceVersion".into(), rv);
        }
        return Ok(());
    }
    if let Some(obj) = new.as_object_mut() {
        obj.insert("apiVersion".into(), json!(r.api_version()));
        obj.insert("kind".into(), json!(r.kind));
        if has_status {
            match old.get("status") {
                Some(s) => {
                    obj.insert("status".into(), s.clone());
                }
                None => {
                    obj.remove("status");
                }
            }
        }
    }
    let old_md = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let spec_changed = old.get("spec") != new.get("spec");
    let md = metadata_mut(new)?;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "generateName",
    ] {
        match old_md.get(field) {
            Some(v) => {
                md.insert(field.into(), v.clone());
            }
            None => {
                md.remove(field);
            }
        }
    }
    let generation = old_md
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    md.insert(
        "generation".into(),
        json!(if spec_changed {
            generation + 1
        } else {
            generation
        }),
    );
    Ok(())
}

/// Gives a Job without `spec.manualSelector` the selector and template labels
/// kube-apiserver generates from its uid (run after `prepare_create`).
pub fn generate_job_selector(job: &mut Value) {
    if job.at("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = meta_str(job, "uid").to_string();
    let name = meta_str(job, "name").to_string();
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    if let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(
            "selector".into(),
            json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } }),
        );
        let template = spec.entry("template").or_insert_with(|| json!({}));
        if let Some(t) = template.as_object_mut() {
            let md = t.entry("metadata").or_insert_with(|| json!({}));
            if let Some(md) = md.as_object_mut() {
                let existing = md.entry("labels").or_insert_with(|| json!({}));
                if let (Some(existing), Some(generated)) =
                    (existing.as_object_mut(), labels.as_object())
                {
                    for (k, v) in generated {
                        existing.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
}

/// The field manager kube-apiserver derives from the User-Agent when a request
/// names none: the part before the first `/` (`kubectl`, `OpenAPI-Generator`).
pub fn manager_from_user_agent(headers: &axum::http::HeaderMap) -> String {
    let ua = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let manager = ua.split('/').next().unwrap_or("").trim();
    if manager.is_empty() {
        "unknown".to_string()
    } else {
        manager.chars().take(128).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_should_be_a_version_4_uuid() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn job_selector_should_be_generated_from_the_uid() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}});
        generate_job_selector(&mut job);
        assert_eq!(
            job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn a_status_write_should_keep_everything_but_the_status_as_stored() {
        let old = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "resourceVersion": "5", "labels": {"a": "b"}},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Pending"},
        });
        let status = |s: Value| {
            let info = RequestInfo {
                verb: crate::request::Verb::Update,
                resource: kubernel_api::resources::find("", "v1", "pods").expect("pods"),
                subresource: "status".into(),
                namespace: "default".into(),
                name: "p".into(),
            };
            let mut new = s;
            prepare_update(&info, &old, &mut new, true).expect("prepared");
            new
        };
        let mut expected = old.clone();
        expected["status"] = json!({"phase": "Running"});
        // The same spec and metadata, a new status.
        let mut same = old.clone();
        same["status"] = json!({"phase": "Running"});
        assert_eq!(status(same), expected);
        // Spec changes, extra and missing fields are all undone; the status stays.
        let changed = json!({
            "apiVersion": "v1", "kind": "Pod", "extra": 1,
            "metadata": {"name": "p", "labels": {"a": "c"}},
            "spec": {"nodeName": "n2"},
            "status": {"phase": "Running"},
        });
        let mut no_rv = expected.clone();
        no_rv["metadata"] = old["metadata"].clone();
        assert_eq!(status(changed), no_rv);
        // A resourceVersion the client sent is kept, for the compare-and-swap.
        let mut with_rv = expected.clone();
        with_rv["metadata"]["resourceVersion"] = json!("4");
        assert_eq!(status(with_rv.clone()), with_rv);
        // No status: the stored one is dropped; null is kept as written.
        let mut without = old.clone();
        if let Some(o) = without.as_object_mut() {
            o.remove("status");
        }
        assert_eq!(status(without.clone()), without);
        let mut null = old.clone();
        null["status"] = Value::Null;
        assert_eq!(status(null.clone()), null);
    }

    #[test]
    fn now_should_have_second_precision() {
        let t = now();
        assert!(t.ends_with('Z') && !t.contains('.'), "{t}");
    }
}
