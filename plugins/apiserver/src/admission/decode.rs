//! Typed decoding: a body goes through the k8s-openapi type of its kind, which checks field types and drops unknown fields.

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2,
    batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubernel_api::resources::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::de::{from_value, DecodeError};
use super::FieldValidation;
use crate::status::ApiError;

/// Decodes a value through `T` and back: the object without unknown fields, and their paths.
type Roundtrip = fn(&Value, &str) -> Result<(Value, Vec<String>), DecodeError>;

fn roundtrip<T: DeserializeOwned + Serialize>(
    value: &Value,
    root: &str,
) -> Result<(Value, Vec<String>), DecodeError> {
    let (typed, unknown) = from_value::<T>(value, root)?;
    let value = serde_json::to_value(&typed)
        .map_err(|e| <DecodeError as serde::de::Error>::custom(e.to_string()))?;
    Ok((value, unknown))
}

/// The typed codec of a group/version/kind, `None` for kinds served untyped.
fn codec(group: &str, version: &str, kind: &str) -> Option<Roundtrip> {
    let f: Roundtrip = match (group, version, kind) {
        ("", "v1", "Pod") => roundtrip::<core::Pod>,
        ("", "v1", "Node") => roundtrip::<core::Node>,
        ("", "v1", "Namespace") => roundtrip::<core::Namespace>,
        ("", "v1", "Service") => roundtrip::<core::Service>,
        ("", "v1", "Endpoints") => roundtrip::<core::Endpoints>,
        ("", "v1", "ConfigMap") => roundtrip::<core::ConfigMap>,
        ("", "v1", "Secret") => roundtrip::<core::Secret>,
        ("", "v1", "ServiceAccount") => roundtrip::<core::ServiceAccount>,
        ("", "v1", "Event") => roundtrip::<core::Event>,
        ("", "v1", "ResourceQuota") => roundtrip::<core::ResourceQuota>,
        ("", "v1", "LimitRange") => roundtrip::<core::LimitRange>,
        ("", "v1", "Binding") => roundtrip::<core::Binding>,
        ("", "v1", "PodTemplate") => roundtrip::<core::PodTemplate>,
        ("", "v1", "ReplicationController") => roundtrip::<core::ReplicationController>,
        ("", "v1", "PersistentVolume") => roundtrip::<core::PersistentVolume>,
        ("", "v1", "PersistentVolumeClaim") => roundtrip::<core::PersistentVolumeClaim>,
        ("events.k8s.io", "v1", "Event") => roundtrip::<events::Event>,
        ("apps", "v1", "Deployment") => roundtrip::<apps::Deployment>,
        ("apps", "v1", "ReplicaSet") => roundtrip::<apps::ReplicaSet>,
        ("apps", "v1", "DaemonSet") => roundtrip::<apps::DaemonSet>,
        ("apps", "v1", "StatefulSet") => roundtrip::<apps::StatefulSet>,
        ("apps", "v1", "ControllerRevision") => roundtrip::<apps::ControllerRevision>,
        ("batch", "v1", "Job") => roundtrip::<batch::Job>,
        ("batch", "v1", "CronJob") => roundtrip::<batch::CronJob>,
        ("discovery.k8s.io", "v1", "EndpointSlice") => roundtrip::<discovery::EndpointSlice>,
        ("coordination.k8s.io", "v1", "Lease") => roundtrip::<coordination::Lease>,
        ("policy", "v1", "PodDisruptionBudget") => roundtrip::<policy::PodDisruptionBudget>,
        ("policy", "v1", "Eviction") => roundtrip::<policy::Eviction>,
        ("rbac.authorization.k8s.io", "v1", "Role") => roundtrip::<rbac::Role>,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => roundtrip::<rbac::RoleBinding>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => roundtrip::<rbac::ClusterRole>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            roundtrip::<rbac::ClusterRoleBinding>
        }
        ("autoscaling", "v1", "Scale") => roundtrip::<autoscaling_v1::Scale>,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            roundtrip::<autoscaling_v2::HorizontalPodAutoscaler>
        }
        ("networking.k8s.io", "v1", "Ingress") => roundtrip::<networking::Ingress>,
        ("networking.k8s.io", "v1", "IngressClass") => roundtrip::<networking::IngressClass>,
        ("networking.k8s.io", "v1", "NetworkPolicy") => roundtrip::<networking::NetworkPolicy>,
        ("storage.k8s.io", "v1", "StorageClass") => roundtrip::<storage::StorageClass>,
        ("scheduling.k8s.io", "v1", "PriorityClass") => roundtrip::<scheduling::PriorityClass>,
        ("certificates.k8s.io", "v1", "CertificateSigningRequest") => {
            roundtrip::<certificates::CertificateSigningRequest>
        }
        ("node.k8s.io", "v1", "RuntimeClass") => roundtrip::<node::RuntimeClass>,
        _ => return None,
    };
    Some(f)
}

/// The typed codec of the `status` of a kind whose `/status` is written often
/// (by kubelets and controllers); `None` for the rest.
fn status_codec(group: &str, version: &str, kind: &str) -> Option<Roundtrip> {
    let f: Roundtrip = match (group, version, kind) {
        ("", "v1", "Pod") => roundtrip::<core::PodStatus>,
        ("", "v1", "Node") => roundtrip::<core::NodeStatus>,
        ("", "v1", "Service") => roundtrip::<core::ServiceStatus>,
        ("apps", "v1", "Deployment") => roundtrip::<apps::DeploymentStatus>,
        ("apps", "v1", "ReplicaSet") => roundtrip::<apps::ReplicaSetStatus>,
        ("apps", "v1", "DaemonSet") => roundtrip::<apps::DaemonSetStatus>,
        ("apps", "v1", "StatefulSet") => roundtrip::<apps::StatefulSetStatus>,
        ("batch", "v1", "Job") => roundtrip::<batch::JobStatus>,
        ("batch", "v1", "CronJob") => roundtrip::<batch::CronJobStatus>,
        _ => return None,
    };
    Some(f)
}

/// Decodes the body of a write to `r`'s `/status`, as [`decode`] does, but
/// only its `status` (and that `metadata.resourceVersion` is a string): the rest
/// of the object is the stored one, whatever the body holds, so decoding it
/// would be spent on fields thrown away, and unknown fields there are dropped
/// without a word. Kinds without a typed status decode whole.
pub fn decode_status(
    r: &Resource,
    mut object: Value,
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let Some(f) = status_codec(r.group, r.version, r.kind) else {
        return decode(r, object, mode);
    };
    if let Some(rv) = object.pointer("/metadata/resourceVersion") {
        from_value::<Option<String>>(rv, "metadata.resourceVersion")
            .map_err(|e| cannot_handle(r, e))?;
    }
    if object.get("status").is_some_and(Value::is_null) {
        // As the typed form would: a null status is no status.
        if let Some(fields) = object.as_object_mut() {
            fields.remove("status");
        }
    }
    let Some(status) = object.get_mut("status") else {
        return Ok((object, Vec::new()));
    };
    let (decoded, unknown) = f(status, "status").map_err(|e| cannot_handle(r, e))?;
    *status = decoded;
    Ok((object, unknown_fields(unknown, mode)?))
}

/// 400 BadRequest for a body that does not decode as `r`'s kind.
fn cannot_handle(r: &Resource, e: DecodeError) -> ApiError {
    ApiError::bad_request(format!(
        "{0} in version \"{1}\" cannot be handled as a {0}: {e}",
        r.kind, r.version
    ))
}

/// The unknown fields' paths as `mode` wants them: an error, warnings, or nothing.
fn unknown_fields(unknown: Vec<String>, mode: FieldValidation) -> Result<Vec<String>, ApiError> {
    let messages: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    match mode {
        FieldValidation::Strict if !messages.is_empty() => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
        FieldValidation::Warn => Ok(messages),
        FieldValidation::Strict | FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// Decodes an object of `r` through its typed form: type errors are a 400
/// BadRequest naming the field; unknown fields are dropped and, per `mode`,
/// rejected (`strict decoding error: unknown field "spec.foo", ...`), returned
/// as warnings (`unknown field "spec.foo"`), or ignored. Kinds without a typed
/// form keep their body; only their `metadata` is decoded as an `ObjectMeta`.
pub fn decode(
    r: &Resource,
    object: Value,
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let decoded = match codec(r.group, r.version, r.kind) {
        Some(f) => f(&object, ""),
        None => decode_metadata(object),
    };
    let (object, unknown) = decoded.map_err(|e| cannot_handle(r, e))?;
    Ok((object, unknown_fields(unknown, mode)?))
}

/// An untyped object with its `metadata` decoded as an `ObjectMeta`.
fn decode_metadata(mut object: Value) -> Result<(Value, Vec<String>), DecodeError> {
    let Some(metadata) = object.get("metadata").filter(|m| !m.is_null()) else {
        return Ok((object, Vec::new()));
    };
    let (metadata, unknown) = roundtrip::<ObjectMeta>(metadata, "metadata")?;
    if let Some(o) = object.as_object_mut() {
        o.insert("metadata".into(), metadata);
    }
    Ok((object, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::test_resource;
    use serde_json::json;

    fn pod_with_unknowns() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "web"}},
            "spec": {"foo": 1, "containers": [{"name": "c", "image": "nginx", "foo": "x"}]}
        })
    }

    #[test]
    fn decode_status_should_decode_the_status_only() {
        let r = test_resource("", "Pod", true);
        let mut body = pod_with_unknowns();
        body["status"] =
            json!({"phase": "Running", "bogus": 1, "podIPs": [{"ip": "10.0.0.1", "x": 2}]});
        let (object, warnings) =
            decode_status(&r, body, FieldValidation::Warn).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            warnings,
            vec![
                "unknown field \"status.bogus\"",
                "unknown field \"status.podIPs[0].x\""
            ]
        );
        assert_eq!(object.pointer("/status/bogus"), None);
        assert_eq!(object.pointer("/status/phase"), Some(&json!("Running")));
        assert_eq!(
            object.pointer("/spec/foo"),
            Some(&json!(1)),
            "the rest is left for the stored object to replace"
        );
        let e = decode_status(&r, pod_with_unknowns(), FieldValidation::Strict)
            .map(|(_, w)| w)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(e.is_empty(), "no status, nothing to say: {e:?}");
        let (object, _) = decode_status(&r, json!({"status": null}), FieldValidation::Strict)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            object,
            json!({}),
            "a null status is dropped as the typed form drops it"
        );
    }

    #[test]
    fn decode_status_should_refuse_type_errors_in_the_status_and_resource_version() {
        let r = test_resource("", "Pod", true);
        let bad = |body: Value| {
            decode_status(&r, body, FieldValidation::Ignore)
                .err()
                .map(|e| (e.code, e.message))
        };
        assert_eq!(
            bad(json!({"status": {"phase": 3}})),
            Some((400, "Pod in version \"v1\" cannot be handled as a Pod: status.phase: invalid type: integer `3`, expected a string".to_string()))
        );
        assert_eq!(
            bad(json!({"metadata": {"resourceVersion": 7}, "status": {}})),
            Some((400, "Pod in version \"v1\" cannot be handled as a Pod: metadata.resourceVersion: invalid type: integer `7`, expected a string".to_string()))
        );
    }

    #[test]
    fn decode_status_should_decode_whole_the_kinds_without_a_typed_status() {
        let r = test_resource("policy", "PodDisruptionBudget", true);
        let body = json!({"spec": {"foo": 1}, "status": {"currentHealthy": 1}});
        let (object, warnings) =
            decode_status(&r, body, FieldValidation::Warn).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(warnings, vec!["unknown field \"spec.foo\""]);
        assert_eq!(object.pointer("/spec/foo"), None);
    }

    #[test]
    fn decode_should_reject_unknown_fields_in_strict_mode() {
        let r = test_resource("", "Pod", true);
        let e = decode(&r, pod_with_unknowns(), FieldValidation::Strict)
            .err()
            .map(|e| (e.code, e.message));
        assert_eq!(
            e,
            Some((400, "strict decoding error: unknown field \"spec.containers[0].foo\", unknown field \"spec.foo\"".to_string()))
        );
    }

    #[test]
    fn decode_should_warn_and_drop_unknown_fields_in_warn_mode() {
        let r = test_resource("", "Pod", true);
        let (object, warnings) = decode(&r, pod_with_unknowns(), FieldValidation::Warn)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            warnings,
            vec![
                "unknown field \"spec.containers[0].foo\"",
                "unknown field \"spec.foo\""
            ]
        );
        assert_eq!(object.pointer("/spec/foo"), None);
        assert_eq!(object.pointer("/spec/containers/0/foo"), None);
        assert_eq!(
            object.pointer("/spec/containers/0/image"),
            Some(&json!("nginx"))
        );
        assert_eq!(object.pointer("/metadata/labels/app"), Some(&json!("web")));
    }

    #[test]
    fn decode_should_drop_unknown_fields_silently_in_ignore_mode() {
        let r = test_resource("", "Pod", true);
        let (object, warnings) = decode(&r, pod_with_unknowns(), FieldValidation::Ignore)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(warnings.is_empty());
        assert_eq!(object.pointer("/spec/foo"), None);
    }

    #[test]
    fn decode_should_report_type_errors_with_the_field_path() {
        let r = test_resource("apps", "Deployment", true);
        let body =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "three"}});
        let e = decode(&r, body, FieldValidation::Strict)
            .err()
            .map(|e| (e.code, e.message));
        assert_eq!(
            e,
            Some((400, "Deployment in version \"v1\" cannot be handled as a Deployment: spec.replicas: invalid type: string \"three\", expected i32".to_string()))
        );
    }

    #[test]
    fn decode_should_turn_numeric_quantities_into_strings() {
        let r = test_resource("", "Pod", true);
        let body = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}]}});
        let (object, _) =
            decode(&r, body, FieldValidation::Strict).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            object.pointer("/spec/containers/0/resources/limits/cpu"),
            Some(&json!("1"))
        );
    }

    #[test]
    fn decode_should_keep_untyped_kinds_but_check_their_metadata() {
        let r = test_resource("example.com", "Widget", true);
        let body = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "colour": "red"}, "spec": {"any": [1]}});
        let (object, warnings) =
            decode(&r, body, FieldValidation::Warn).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(warnings, vec!["unknown field \"metadata.colour\""]);
        assert_eq!(object.pointer("/spec/any/0"), Some(&json!(1)));
        assert_eq!(object.pointer("/metadata/colour"), None);
    }

    #[test]
    fn decode_should_map_every_listed_kind_to_a_type() {
        for (g, v, k) in [
            ("", "v1", "Pod"),
            ("events.k8s.io", "v1", "Event"),
            ("policy", "v1", "Eviction"),
            ("autoscaling", "v1", "Scale"),
            ("", "v1", "Binding"),
        ] {
            assert!(codec(g, v, k).is_some(), "{g}/{v} {k}");
        }
        assert!(codec("apps", "v1beta1", "Deployment").is_none());
    }

    #[test]
    fn decode_should_keep_server_fields_through_the_round_trip() {
        let r = test_resource("", "Secret", true);
        let body = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "creationTimestamp": "2024-05-01T10:00:00Z", "uid": "u-1", "resourceVersion": "7",
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}}}, "time": "2024-05-01T10:00:00Z"}]},
            "data": {"k": "aGk="}, "type": "Opaque"});
        let (object, warnings) =
            decode(&r, body.clone(), FieldValidation::Strict).unwrap_or_else(|e| panic!("{e}"));
        assert!(warnings.is_empty());
        assert_eq!(object, body);
        let bad = json!({"data": {"k": "not base64!"}});
        let e = decode(&r, bad, FieldValidation::Strict)
            .err()
            .map(|e| e.message);
        assert!(
            e.as_deref().is_some_and(|m| m
                .starts_with("Secret in version \"v1\" cannot be handled as a Secret: data[k]: ")),
            "{e:?}"
        );
    }

    #[test]
    fn decode_should_read_micro_times() {
        let r = test_resource("events.k8s.io", "Event", true);
        let body = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "eventTime": "2024-05-01T10:00:00.123456Z", "reportingController": "c", "reportingInstance": "i", "action": "A", "reason": "R"});
        let (object, _) =
            decode(&r, body, FieldValidation::Strict).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(object["eventTime"], json!("2024-05-01T10:00:00.123456Z"));
        let bad = json!({"eventTime": "yesterday"});
        assert_eq!(
            decode(&r, bad, FieldValidation::Ignore)
                .err()
                .map(|e| e.code),
            Some(400)
        );
    }
}
