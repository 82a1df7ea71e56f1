//! Fuzzes request decoding: arbitrary bytes as create bodies, PATCH bodies and selectors; any panic is a bug.
//!
//! Each input goes through what the handlers run on it: for a few resources, a create
//! body as JSON and as YAML through `parse_body` -> `decode` (every `fieldValidation`
//! mode) -> `apply_defaults` -> `prepare_create` -> `validate_create`; a PATCH body of
//! every patch type against a stored pod (and a server-side apply creating one) through
//! `apply_patch` -> `decode` -> `apply_defaults` -> `prepare_update` -> `validate_update`;
//! and, as UTF-8, a `labelSelector` and a `fieldSelector`.

#![no_main]

use std::sync::OnceLock;

use kubernel_api::resources::{self, Resource};
use kubernel_apiserver::admission::{self, FieldValidation};
use kubernel_apiserver::objects;
use kubernel_apiserver::patch::{self, PatchType};
use kubernel_apiserver::request::{RequestInfo, Verb};
use kubernel_apiserver::selectors::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Resources whose create bodies are decoded: `(group, plural)`, all at `v1`.
const RESOURCES: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "configmaps"),
    ("", "namespaces"),
    ("apps", "deployments"),
    ("batch", "jobs"),
];

const CONTENT_TYPES: &[&str] = &["application/json", "application/yaml"];

const MODES: &[FieldValidation] = &[
    FieldValidation::Strict,
    FieldValidation::Warn,
    FieldValidation::Ignore,
];

const PATCH_TYPES: &[PatchType] = &[
    PatchType::Json,
    PatchType::Merge,
    PatchType::Strategic,
    PatchType::Apply,
];

/// The stored pod that PATCH bodies apply to.
const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"app":"web"},"annotations":{"a":"b"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}],"env":[{"name":"MODE","value":"x"}]}]}}"#;

fn resource(group: &str, plural: &str) -> &'static Resource {
    resources::find(group, "v1", plural).expect("resource in the catalog")
}

/// A request of `verb` on `r` in namespace `default` (when namespaced).
fn info(r: &'static Resource, verb: Verb, name: &str) -> RequestInfo {
    RequestInfo {
        verb,
        resource: r,
        subresource: String::new(),
        namespace: if r.namespaced {
            "default".into()
        } else {
            String::new()
        },
        name: name.into(),
    }
}

/// The create path of the handler, from body bytes to a validated object.
fn create(r: &'static Resource, content_type: &str, mode: FieldValidation, body: &[u8]) {
    let Ok(object) = admission::parse_body(r, Some(content_type), body) else {
        return;
    };
    let Ok((mut object, _warnings)) = admission::decode(r, object, mode) else {
        return;
    };
    admission::apply_defaults(r, &mut object);
    if objects::prepare_create(&info(r, Verb::Create, ""), &mut object).is_ok() {
        let _ = admission::validate_create(r, &object);
    }
}

/// The stored pod, admitted as a create would.
fn stored_pod() -> &'static Value {
    static POD_OBJECT: OnceLock<Value> = OnceLock::new();
    POD_OBJECT.get_or_init(|| {
        let r = resource("", "pods");
        let object = admission::parse_body(r, Some("application/json"), POD.as_bytes())
            .expect("the fixed pod parses");
        let (mut object, _) =
            admission::decode(r, object, FieldValidation::Strict).expect("the fixed pod decodes");
        admission::apply_defaults(r, &mut object);
        objects::prepare_create(&info(r, Verb::Create, ""), &mut object)
            .expect("the fixed pod gets server metadata");
        admission::validate_create(r, &object).expect("the fixed pod is valid");
        object
    })
}

/// The PATCH path of the handler against the stored pod.
fn patch_pod(patch_type: PatchType, body: &[u8]) {
    let r = resource("", "pods");
    let pod = stored_pod();
    let _ = patch::apply_patch("Pod", &Value::Null, PatchType::Apply, body, "fuzz", false);
    let Ok(patched) = patch::apply_patch("Pod", pod, patch_type, body, "fuzz", false) else {
        return;
    };
    let Ok((mut new, _warnings)) = admission::decode(r, patched, FieldValidation::Warn) else {
        return;
    };
    admission::apply_defaults(r, &mut new);
    if objects::prepare_update(&info(r, Verb::Patch, "web"), pod, &mut new, true).is_ok() {
        let _ = admission::validate_update(r, pod, &new);
    }
}

fuzz_target!(|data: &[u8]| {
    for (group, plural) in RESOURCES {
        let r = resource(group, plural);
        for content_type in CONTENT_TYPES {
            for mode in MODES {
                create(r, content_type, *mode, data);
            }
        }
    }
    for patch_type in PATCH_TYPES {
        patch_pod(*patch_type, data);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = LabelSelector::parse(s);
        let _ = FieldSelector::parse(s, "Pod");
    }
});
