//! Content negotiation and response building: JSON, Tables, Status errors.
//!
//! JSON is the only wire format served; a request that accepts protobuf gets JSON
//! with a JSON `Content-Type`, which is what client-go decodes by.

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use kubernel_api::resources::table::IncludeObject;

use crate::status::ApiError;

/// `Content-Type` of a Table response.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// How to render objects for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The objects as JSON.
    Json,
    /// A `meta.k8s.io/v1` Table.
    Table(IncludeObject),
}

/// Chooses the output format from `Accept` (and `includeObject`).
pub fn output(headers: &HeaderMap, include_object: Option<&str>) -> Result<Output, ApiError> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    let mut plain_ok = false;
    for media in accept.split(',') {
        let media = media.trim();
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let base = params[0];
        let table = params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io");
        if table && matches!(base, "application/json" | "application/*" | "*/*") {
            return Ok(Output::Table(IncludeObject::parse(include_object)));
        }
        if params.iter().any(|p| p.starts_with("as=")) {
            // Another conversion (e.g. PartialObjectMetadata) we do not serve: try the next type.
            continue;
        }
        if matches!(
            base,
            "application/json"
                | "application/*"
                | "*/*"
                | "application/vnd.kubernetes.protobuf"
                | "application/yaml"
                | "text/plain"
                | "text/*"
        ) {
            plain_ok = true;
        }
    }
    if plain_ok {
        Ok(Output::Json)
    } else {
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io (got {accept:?})"
        )))
    }
}

/// A JSON response with `status` and `content_type`.
pub fn json(status: u16, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A `Status` error response.
pub fn error(e: &ApiError) -> Response {
    let mut resp = json(e.code, "application/json", e.to_status().to_string());
    if let Some(s) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::ACCEPT,
            HeaderValue::from_str(v).expect("header"),
        );
        h
    }

    #[test]
    fn output_should_follow_kubectl_accept_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            output(&accept(kubectl), None).expect("ok"),
            Output::Table(IncludeObject::Metadata)
        );
        assert_eq!(
            output(
                &accept("application/vnd.kubernetes.protobuf,application/json"),
                None
            )
            .expect("ok"),
            Output::Json
        );
        assert_eq!(output(&HeaderMap::new(), None).expect("ok"), Output::Json);
        assert_eq!(
            output(&accept("application/xml"), None)
                .expect_err("406")
                .code,
            406
        );
    }
}
