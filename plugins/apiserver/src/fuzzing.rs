//! The request-decoding entry point shared by the cargo-fuzz target (`fuzz/`) and the stable fuzz test run in CI.
//!
//! [`decode_request_body`] puts one input through what the handlers run on a
//! request body: for a few resources, a create body as JSON and as YAML through
//! `parse_body` -> `decode` (every `fieldValidation` mode, on one parse) -> `apply_defaults` ->
//! `prepare_create` -> `validate_create`; a PATCH body of every patch type against a
//! stored pod (and a server-side apply creating one) through `apply_patch` ->
//! `decode` -> `apply_defaults` -> `prepare_update` -> `validate_update`; and, as
//! UTF-8, a `labelSelector` and a `fieldSelector`. An error answer is fine (it must
//! be a 4xx `Status`); a panic is a bug.

use std::sync::OnceLock;

use kubernel_api::resources::{self, Resource};
use serde_json::Value;

use crate::admission::{self, FieldValidation};
use crate::objects;
use crate::patch::{self, PatchType};
use crate::request::{RequestInfo, Verb};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;

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

/// What one decoding path answered for an input.
#[derive(Debug)]
pub struct Outcome {
    /// The path, e.g. `create pods application/yaml Strict` or `patch Merge`.
    pub path: String,
    /// `Ok` when the input got through every step; else the error it was answered.
    pub result: Result<(), ApiError>,
}

/// Runs `data` through every decoding path; one [`Outcome`] per path.
pub fn decode_request_body(data: &[u8]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (group, plural) in RESOURCES {
        let Some(r) = resources::find(group, "v1", plural) else {
            continue;
        };
        for content_type in CONTENT_TYPES {
            // Parsing does not depend on the mode: once per resource and media type.
            let parsed = admission::parse_body(r, Some(content_type), data);
            for mode in MODES {
                outcomes.push(Outcome {
                    path: format!("create {plural} {content_type} {mode:?}"),
                    result: parsed.clone().and_then(|object| create(r, object, *mode)),
                });
            }
        }
    }
    if let Some(pod) = stored_pod() {
        outcomes.push(Outcome {
            path: "apply creating a pod".into(),
            result: patch::apply_patch("Pod", &Value::Null, PatchType::Apply, data, "fuzz", false)
                .map(drop),
        });
        for patch_type in PATCH_TYPES {
            outcomes.push(Outcome {
                path: format!("patch {patch_type:?}"),
                result: patch_pod(pod, *patch_type, data),
            });
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        outcomes.push(Outcome {
            path: "labelSelector".into(),
            result: LabelSelector::parse(s).map(drop),
        });
        outcomes.push(Outcome {
            path: "fieldSelector".into(),
            result: FieldSelector::parse(s, "Pod").map(drop),
        });
    }
    outcomes
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

/// The create path of the handler after parsing the body, to a validated object.
fn create(r: &'static Resource, object: Value, mode: FieldValidation) -> Result<(), ApiError> {
    let (mut object, _warnings) = admission::decode(r, object, mode)?;
    admission::apply_defaults(r, &mut object);
    objects::prepare_create(&info(r, Verb::Create, ""), &mut object)?;
    admission::validate_create(r, &object)
}

/// The stored pod, admitted as a create would; `None` if the fixed pod is refused
/// (a bug the tests of the create path report).
fn stored_pod() -> Option<&'static Value> {
    static POD_OBJECT: OnceLock<Option<Value>> = OnceLock::new();
    POD_OBJECT
        .get_or_init(|| {
            let r = resources::find("", "v1", "pods")?;
            let object = admission::parse_body(r, Some("application/json"), POD.as_bytes()).ok()?;
            let (mut object, _) = admission::decode(r, object, FieldValidation::Strict).ok()?;
            admission::apply_defaults(r, &mut object);
            objects::prepare_create(&info(r, Verb::Create, ""), &mut object).ok()?;
            admission::validate_create(r, &object).ok()?;
            Some(object)
        })
        .as_ref()
}

/// The PATCH path of the handler against the stored pod.
fn patch_pod(pod: &Value, patch_type: PatchType, body: &[u8]) -> Result<(), ApiError> {
    let Some(r) = resources::find("", "v1", "pods") else {
        return Ok(());
    };
    let patched = patch::apply_patch("Pod", pod, patch_type, body, "fuzz", false)?;
    let (mut new, _warnings) = admission::decode(r, patched, FieldValidation::Warn)?;
    admission::apply_defaults(r, &mut new);
    objects::prepare_update(&info(r, Verb::Patch, "web"), pod, &mut new, true)?;
    admission::validate_update(r, pod, &new)
}

/// What the credential checks need: a static token file and the service-account
/// token issuer of a freshly made PKI (in `dir`).
pub struct AuthFixture {
    tokens: crate::auth::TokenFile,
    issuer: crate::auth::serviceaccount::TokenIssuer,
}

impl AuthFixture {
    /// Makes a PKI in `dir` and the checks' settings.
    pub fn new(dir: &std::path::Path) -> Result<AuthFixture, String> {
        let pki = kubernel_pki::ensure(dir, &kubernel_pki::ServingNames::default())?;
        Ok(AuthFixture {
            tokens: crate::auth::TokenFile::parse("static-token,alice,1001,\"dev,ops\"\n")?,
            issuer: crate::auth::serviceaccount::TokenIssuer::load(
                &pki.dir,
                crate::auth::serviceaccount::DEFAULT_ISSUER,
            )?,
        })
    }
}

/// Puts `data` through what authentication does with a request's credentials:
/// as the `Authorization` header (raw, and after `Bearer `), as a service-account
/// JWT, as a bootstrap token, as a static token file, and as a client certificate
/// (DER). Each path answers `Ok` or the 401 a client would get; a panic is a bug.
pub fn authenticate_credentials(fixture: &AuthFixture, data: &[u8]) -> Vec<Outcome> {
    use crate::auth::{authenticate, user_from_certificate, Caller};

    // The reason goes to the log; the client gets a bare 401 `Status`.
    let refused = |path: &str, _reason: String| Outcome {
        path: path.to_string(),
        result: Err(ApiError::unauthorized()),
    };
    let answered = |path: &str, result: Result<crate::auth::UserInfo, String>| match result {
        Ok(_) => Outcome {
            path: path.to_string(),
            result: Ok(()),
        },
        Err(reason) => refused(path, reason),
    };
    let mut outcomes = Vec::new();
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(data);
    for (path, value) in [("header", data), ("bearer header", &bearer[..])] {
        let mut headers = axum::http::HeaderMap::new();
        match axum::http::HeaderValue::from_bytes(value) {
            Ok(v) => {
                headers.insert(axum::http::header::AUTHORIZATION, v);
                let user = authenticate(&Caller::Tls(None), &headers, &fixture.tokens, None, true);
                outcomes.push(answered(path, user.map_err(|e| e.0)));
            }
            // The HTTP server refuses such a header before authentication.
            Err(e) => outcomes.push(refused(path, e.to_string())),
        }
    }
    let text = String::from_utf8_lossy(data);
    outcomes.push(answered(
        "service-account token",
        fixture
            .issuer
            .verify(&text)
            .map(|_| crate::auth::UserInfo::anonymous()),
    ));
    outcomes.push(answered(
        "bootstrap token",
        crate::auth::bootstrap_token::parse(&text)
            .map(|_| crate::auth::UserInfo::anonymous())
            .ok_or_else(|| "not a bootstrap token".to_string()),
    ));
    outcomes.push(answered(
        "token file",
        crate::auth::TokenFile::parse(&text).map(|_| crate::auth::UserInfo::anonymous()),
    ));
    outcomes.push(answered("client certificate", user_from_certificate(data)));
    outcomes
}
