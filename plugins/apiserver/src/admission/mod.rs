//! Admission of request bodies as kube-apiserver does it: parse, typed decode with `fieldValidation`, defaults, validation.
//!
//! A create runs [`parse_body`] -> [`decode`] -> [`apply_defaults`] -> (server-set
//! metadata; for pods [`default_toleration_seconds`]) -> [`validate_create`]; an update runs the same with
//! [`validate_update`] against the stored object. Messages, reasons and field
//! paths follow upstream (`pkg/apis/*/validation`, `pkg/apis/*/v1/defaults.go`).

mod body;
mod compare;
pub mod csr;
mod de;
mod decode;
mod defaults;
mod job;
mod kinds;
pub mod limit_ranger;
mod meta;
mod names;
pub mod plugins;
mod pod;
mod pod_defaults;
pub mod pod_security;
mod pod_update;
pub mod priority;
mod quantity;
pub mod quota;
mod render;
mod resources;
pub mod selector;
mod service;
pub mod service_account;
mod tolerations;
mod validation;
mod workload_defaults;
mod workloads;

pub use body::parse_body;
pub use decode::{decode, decode_status};
pub use defaults::apply_defaults;
pub(crate) use defaults::{default_value, ensure_object};
pub use plugins::AdmissionPlugins;
pub use tolerations::{default_toleration_seconds, TolerationSeconds};
pub use validation::{validate_create, validate_update};

use crate::status::ApiError;

/// How unknown fields in a request body are handled: the `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Reject the request (400 BadRequest) naming every unknown field.
    Strict,
    /// Drop unknown fields and return one warning per field (the default).
    #[default]
    Warn,
    /// Drop unknown fields silently.
    Ignore,
}

impl FieldValidation {
    /// The mode named by the query parameter; absent or empty means `Warn`, anything else unknown is a 400.
    pub fn parse(value: Option<&str>) -> Result<FieldValidation, ApiError> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Strict" => Ok(FieldValidation::Strict),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {}: supported values: \"Ignore\", \"Strict\", \"Warn\"",
                render::go_quote(other)
            ))),
        }
    }
}

/// `parent.name` (just `name` at the root).
fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[i]`.
fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `parent[key]`, the path of a map entry.
fn key(parent: &str, key: &str) -> String {
    format!("{parent}[{key}]")
}

/// The status code, message and (field, reason) causes of an expected error (unit tests).
#[cfg(test)]
fn err(r: Result<(), ApiError>) -> (u16, String, Vec<(String, &'static str)>) {
    match r {
        Ok(()) => panic!("expected an Invalid error"),
        Err(e) => (
            e.code,
            e.message,
            e.causes.into_iter().map(|c| (c.field, c.reason)).collect(),
        ),
    }
}

/// Defaults then validates a new object of `kind` (unit tests).
#[cfg(test)]
fn created(
    group: &'static str,
    kind: &'static str,
    namespaced: bool,
    mut object: serde_json::Value,
) -> Result<(), ApiError> {
    let r = test_resource(group, kind, namespaced);
    apply_defaults(&r, &mut object);
    validate_create(&r, &object)
}

/// `object` after the defaults of a namespaced `kind` (unit tests).
#[cfg(test)]
fn defaulted(
    group: &'static str,
    kind: &'static str,
    mut object: serde_json::Value,
) -> serde_json::Value {
    apply_defaults(&test_resource(group, kind, true), &mut object);
    object
}

/// A catalog-like entry for unit tests (every kind here is served at `v1`).
#[cfg(test)]
fn test_resource(
    group: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> kubernel_api::resources::Resource {
    kubernel_api::resources::Resource {
        group,
        version: "v1",
        kind,
        list_kind: "",
        plural: "",
        singular: "",
        short_names: &[],
        categories: &[],
        namespaced,
        verbs: &[],
        subresources: &[],
        columns: &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_validation_should_default_to_warn() {
        assert_eq!(FieldValidation::parse(None), Ok(FieldValidation::Warn));
        assert_eq!(FieldValidation::parse(Some("")), Ok(FieldValidation::Warn));
        assert_eq!(
            FieldValidation::parse(Some("Strict")),
            Ok(FieldValidation::Strict)
        );
        assert_eq!(
            FieldValidation::parse(Some("Ignore")),
            Ok(FieldValidation::Ignore)
        );
    }

    #[test]
    fn field_validation_should_reject_unknown_values_with_400() {
        let e = FieldValidation::parse(Some("strict"))
            .err()
            .map(|e| (e.code, e.message));
        assert_eq!(
            e,
            Some((400, "fieldValidation: Unsupported value: \"strict\": supported values: \"Ignore\", \"Strict\", \"Warn\"".to_string()))
        );
    }

    #[test]
    fn paths_should_follow_upstream_format() {
        assert_eq!(child("", "spec"), "spec");
        assert_eq!(index(&child("spec", "containers"), 0), "spec.containers[0]");
        assert_eq!(key("resources.limits", "cpu"), "resources.limits[cpu]");
    }

    /// The handler's create path: parse, decode, default, server metadata, validate.
    fn admit_create(
        r: &kubernel_api::resources::Resource,
        yaml: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let object = parse_body(r, Some("application/yaml"), yaml.as_bytes())?;
        let (mut object, warnings) = decode(r, object, FieldValidation::Strict)?;
        assert!(warnings.is_empty());
        apply_defaults(r, &mut object);
        object["metadata"]["namespace"] = serde_json::json!("default");
        validate_create(r, &object)?;
        Ok(object)
    }

    #[test]
    fn kubectl_create_deployment_output_should_be_admitted() {
        let r = test_resource("apps", "Deployment", true);
        let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  creationTimestamp: null\n  labels:\n    app: web\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  strategy: {}\n  template:\n    metadata:\n      creationTimestamp: null\n      labels:\n        app: web\n    spec:\n      containers:\n      - image: nginx\n        name: nginx\n        resources: {}\nstatus: {}\n";
        let object = admit_create(&r, yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            object.pointer("/spec/strategy/type"),
            Some(&serde_json::json!("RollingUpdate"))
        );
        assert_eq!(object.pointer("/metadata/creationTimestamp"), None);
        let again = {
            let (mut o, _) = decode(&r, object.clone(), FieldValidation::Strict)
                .unwrap_or_else(|e| panic!("{e}"));
            apply_defaults(&r, &mut o);
            o
        };
        assert_eq!(again, object, "decode and defaults should be idempotent");
    }

    #[test]
    fn applying_a_new_image_to_a_pod_should_be_admitted() {
        let r = test_resource("", "Pod", true);
        let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    ports:\n    - containerPort: 80\n";
        let old = admit_create(&r, manifest).unwrap_or_else(|e| panic!("{e}"));
        let changed =
            admit_create(&r, &manifest.replace("1.27", "1.28")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(validate_update(&r, &old, &changed), Ok(()));
        let port =
            admit_create(&r, &manifest.replace("80", "81")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            validate_update(&r, &old, &port).map_err(|e| e.code),
            Err(422)
        );
    }
}
