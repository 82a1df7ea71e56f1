//! CertificateSigningRequests on create, as upstream's: the requester's identity
//! (`spec.username`, `uid`, `groups`, `extra`) is set by the server, the request
//! must be a valid PEM `CERTIFICATE REQUEST` and name a signer, and a new CSR
//! carries no status.

use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::status::{ApiError, Cause};

/// Sets who asked and checks the request.
pub fn admit(csr: &mut Value, user: &UserInfo) -> Result<(), ApiError> {
    let name = csr["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let invalid = |cause: Cause| {
        ApiError::invalid(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            &name,
            vec![cause],
        )
    };
    let request = csr["spec"]["request"].as_str().unwrap_or_default();
    if request.is_empty() {
        return Err(invalid(Cause::required("spec.request")));
    }
    // `request` is base64 of the PEM text (a []byte field).
    let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, request)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if let Err(e) = kubernel_pki::request_subject(&pem) {
        return Err(invalid(Cause::invalid(
            "spec.request",
            &json!("<binary>"),
            &format!("invalid certificate request: {e}"),
        )));
    }
    if csr["spec"]["signerName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(invalid(Cause::required("spec.signerName")));
    }
    let spec = &mut csr["spec"];
    spec["username"] = json!(user.name);
    spec["uid"] = json!(user.uid);
    spec["groups"] = json!(user.groups);
    if !user.extra.is_empty() {
        let mut extra = serde_json::Map::new();
        for (k, v) in &user.extra {
            extra.insert(k.clone(), json!([v]));
        }
        spec["extra"] = Value::Object(extra);
    }
    if let Some(meta) = csr.as_object_mut() {
        meta.remove("status");
    }
    Ok(())
}
