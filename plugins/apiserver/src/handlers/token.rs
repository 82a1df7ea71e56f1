//! `POST .../serviceaccounts/<name>/token`: the TokenRequest subresource
//! (`kubectl create token`, and the kubelet's projected service-account tokens).

use serde_json::{json, Value};

use super::read::fetch;
use super::ApiState;
use crate::auth::serviceaccount::{
    Ref, TokenSpec, DEFAULT_EXPIRATION_SECONDS, MIN_EXPIRATION_SECONDS,
};
use crate::negotiate::json;
use crate::request::RequestInfo;
use crate::status::{ApiError, Cause};
use axum::response::Response;

/// Longest lifetime a TokenRequest may ask for (upstream: 2^32 seconds).
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// Issues a token for the ServiceAccount `info` names, as the TokenRequest `body`
/// asks: audiences, lifetime, and the Pod or Secret it is bound to.
pub async fn create(
    state: &ApiState,
    info: &RequestInfo,
    body: &Value,
) -> Result<Response, ApiError> {
    let Some(issuer) = state.auth.service_accounts.as_deref() else {
        return Err(ApiError::method_not_allowed(
            "this apiserver issues no service account tokens",
        ));
    };
    let main = RequestInfo {
        subresource: String::new(),
        ..info.clone()
    };
    let account = fetch(state, &main)?;
    let uid = account.object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &body["spec"];
    let invalid = |causes: Vec<Cause>| {
        ApiError::invalid("authentication.k8s.io", "TokenRequest", &info.name, causes)
    };
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v.as_i64().ok_or_else(|| {
            invalid(vec![Cause::invalid(
                "spec.expirationSeconds",
                v,
                "must be an integer",
            )])
        })?,
    };
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(vec![Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration_seconds),
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(vec![Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration_seconds),
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let (pod, secret) = bound_object(state, info, &spec["boundObjectRef"])?;
    let token_spec = TokenSpec {
        namespace: info.namespace.clone(),
        serviceaccount: Ref {
            name: info.name.clone(),
            uid,
        },
        audiences,
        expiration_seconds,
        pod,
        secret,
    };
    let now = jiff::Timestamp::now().as_second();
    let issued = issuer.issue(&token_spec, now).map_err(ApiError::internal)?;
    let expires = jiff::Timestamp::from_second(issued.expires)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .map_err(|e| ApiError::internal(format!("token expiry: {e}")))?;
    let mut out_spec = spec.clone();
    if !out_spec.is_object() {
        out_spec = json!({});
    }
    out_spec["audiences"] = json!(issued.audiences);
    out_spec["expirationSeconds"] = json!(expiration_seconds);
    let created = jiff::Timestamp::from_second(now)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let review = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": info.name,
            "namespace": info.namespace,
            "creationTimestamp": created,
        },
        "spec": out_spec,
        "status": {
            "token": issued.token,
            "expirationTimestamp": expires,
        },
    });
    Ok(json(201, "application/json", review.to_string()))
}

/// The Pod or Secret a token is to be bound to, checked to exist with the UID
/// given (when one is given).
fn bound_object(
    state: &ApiState,
    info: &RequestInfo,
    r: &Value,
) -> Result<(Option<Ref>, Option<Ref>), ApiError> {
    if r.is_null() {
        return Ok((None, None));
    }
    let kind = r["kind"].as_str().unwrap_or_default();
    let name = r["name"].as_str().unwrap_or_default();
    let uid = r["uid"].as_str().unwrap_or_default();
    let resource = match kind {
        "Pod" => "pods",
        "Secret" => "secrets",
        other => {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                &info.name,
                vec![Cause::invalid(
                    "spec.boundObjectRef.kind",
                    &json!(other),
                    "supported values: \"Pod\", \"Secret\"",
                )],
            ))
        }
    };
    let key = format!("{resource}/{}/{name}", info.namespace);
    let found = state
        .store
        .get(&key)
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::not_found("", resource, name))?;
    let actual = found.object["metadata"]["uid"].as_str().unwrap_or_default();
    if !uid.is_empty() && uid != actual {
        return Err(ApiError::conflict_message(
            "",
            resource,
            name,
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let bound = Ref {
        name: name.to_string(),
        uid: actual.to_string(),
    };
    Ok(if kind == "Pod" {
        (Some(bound), None)
    } else {
        (None, Some(bound))
    })
}
