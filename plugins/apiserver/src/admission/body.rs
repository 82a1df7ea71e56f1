//! Request bodies: JSON, YAML or Kubernetes protobuf into one JSON object of the URL's kind.

use kubernel_api::resources::Resource;
use serde_json::{Map, Value};

use crate::status::ApiError;

/// Parses a create or update body: JSON, YAML when `content_type` is
/// `application/yaml`, protobuf for `application/vnd.kubernetes.protobuf` (a missing content type is JSON, as the Python client
/// sends none). Missing `apiVersion`/`kind` are filled from the resource;
/// a body that is not an object, does not parse, or names another version or
/// kind is a 400 BadRequest.
pub fn parse_body(
    r: &Resource,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let parsed = match media.as_str() {
        "" | "application/json" => {
            serde_json::from_slice::<Value>(body).map_err(|e| format!("json parse error: {e}"))
        }
        "application/yaml" => {
            crate::yaml::from_slice(body).map_err(|e| format!("error converting YAML to JSON: {e}"))
        }
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body),
        _ => return Err(ApiError::unsupported_media_type(content_type.unwrap_or(""))),
    };
    let value =
        parsed.map_err(|e| unrecognized(r, &format!("couldn't get version/kind; {e}"), body))?;
    let Value::Object(mut object) = value else {
        let detail = format!(
            "couldn't get version/kind; json parse error: expected a JSON object, got {}",
            describe(&value)
        );
        return Err(unrecognized(r, &detail, body));
    };
    let kind = string_field(r, &object, "kind", body)?;
    let api_version = string_field(r, &object, "apiVersion", body)?;
    let expected = r.api_version();
    if let Some(kind) = kind.as_deref().filter(|k| *k != r.kind) {
        let version = api_version.as_deref().unwrap_or(&expected);
        let version = version.rsplit('/').next().unwrap_or(version);
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {0}: the kind in the data ({kind}) does not match the expected kind ({0})",
            r.kind
        )));
    }
    if let Some(av) = api_version.as_deref().filter(|av| *av != expected) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({expected})"
        )));
    }
    object.insert("apiVersion".into(), Value::String(expected));
    object.insert("kind".into(), Value::String(r.kind.to_string()));
    Ok(Value::Object(object))
}

/// A `kind`/`apiVersion` field: `None` when absent, null or empty; an error when not a string.
fn string_field(
    r: &Resource,
    object: &Map<String, Value>,
    field: &str,
    body: &[u8],
) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(unrecognized(
            r,
            &format!(
                "couldn't get version/kind; json parse error: {field} must be a string, got {}",
                describe(other)
            ),
            body,
        )),
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// upstream `transformDecodeError` for a body without a usable kind: the message and the start of the body.
fn unrecognized(r: &Resource, detail: &str, body: &[u8]) -> ApiError {
    ApiError::bad_request(format!(
        "the object provided is unrecognized (must be of type {}): {detail} ({})",
        r.kind,
        summarize(body)
    ))
}

/// upstream `summarizeData`: at most 30 bytes of the body.
fn summarize(body: &[u8]) -> String {
    if body.is_empty() {
        return "<empty>".to_string();
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(30)]).into_owned();
    if body.len() > 30 {
        format!("{head} ...")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::test_resource;
    use serde_json::json;

    fn message(r: Result<Value, ApiError>) -> (u16, String) {
        match r {
            Ok(v) => panic!("expected an error, got {v}"),
            Err(e) => (e.code, e.message),
        }
    }

    #[test]
    fn parse_body_should_accept_json_without_content_type() {
        let r = test_resource("", "Pod", true);
        let v = parse_body(&r, None, br#"{"metadata":{"name":"a"}}"#).ok();
        assert_eq!(
            v,
            Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}))
        );
    }

    #[test]
    fn parse_body_should_parse_yaml() {
        let r = test_resource("apps", "Deployment", true);
        let body = b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n";
        let v = parse_body(&r, Some("application/yaml; charset=utf-8"), body).ok();
        assert_eq!(
            v.as_ref().and_then(|v| v.pointer("/spec/replicas")),
            Some(&json!(2))
        );
    }

    #[test]
    fn parse_body_should_reject_a_wrong_api_version() {
        let r = test_resource("", "Pod", true);
        let got = message(parse_body(
            &r,
            Some("application/json"),
            br#"{"apiVersion":"apps/v1","kind":"Pod"}"#,
        ));
        assert_eq!(got, (400, "the API version in the data (apps/v1) does not match the expected API version (v1)".to_string()));
    }

    #[test]
    fn parse_body_should_reject_a_wrong_kind() {
        let r = test_resource("", "Pod", true);
        let got = message(parse_body(
            &r,
            None,
            br#"{"apiVersion":"v1","kind":"Service"}"#,
        ));
        assert_eq!(
            got,
            (400, "Service in version \"v1\" cannot be handled as a Pod: the kind in the data (Service) does not match the expected kind (Pod)".to_string())
        );
    }

    #[test]
    fn parse_body_should_reject_syntax_errors_and_non_objects() {
        let r = test_resource("", "Pod", true);
        let (code, msg) = message(parse_body(&r, None, b"{\"kind\":"));
        assert_eq!(code, 400);
        assert!(msg.starts_with("the object provided is unrecognized (must be of type Pod): couldn't get version/kind; json parse error: EOF"), "{msg}");
        let (_, msg) = message(parse_body(&r, None, b"[1,2]"));
        assert_eq!(msg, "the object provided is unrecognized (must be of type Pod): couldn't get version/kind; json parse error: expected a JSON object, got an array ([1,2])");
        let (_, msg) = message(parse_body(&r, Some("application/yaml"), b"a: [1\n"));
        assert!(msg.contains("error converting YAML to JSON"), "{msg}");
        let (_, msg) = message(parse_body(&r, None, b""));
        assert!(msg.ends_with("(<empty>)"), "{msg}");
    }

    #[test]
    fn parse_body_should_refuse_deeply_nested_yaml_with_400() {
        let r = test_resource("", "Pod", true);
        let body = "[".repeat(1_000_000);
        let (code, msg) = message(parse_body(&r, Some("application/yaml"), body.as_bytes()));
        assert_eq!(code, 400);
        assert!(
            msg.contains("error converting YAML to JSON: yaml: collections nest deeper than 100 levels at line 1, column 101"),
            "{msg}"
        );
    }

    #[test]
    fn parse_body_should_refuse_unknown_media_types() {
        let r = test_resource("", "Pod", true);
        let (code, _) = message(parse_body(&r, Some("application/cbor"), b"\xa0"));
        assert_eq!(code, 415);
    }
}
