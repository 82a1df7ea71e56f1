//! Kubernetes `Status` errors: every failed request answers one, with the upstream code, reason and message.

use serde_json::{json, Value};

/// One field error of an `Invalid` status (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Machine reason, e.g. `FieldValueRequired`, `FieldValueInvalid`.
    pub reason: &'static str,
    /// Human message, e.g. `Required value`.
    pub message: String,
    /// Field path, e.g. `spec.containers[0].image`.
    pub field: String,
}

impl Cause {
    /// `FieldValueRequired`: `<field>: Required value`.
    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        }
    }

    /// `FieldValueInvalid`: `<field>: Invalid value: <value>: <detail>`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", render_value(value)),
            field: field.into(),
        }
    }

    /// `FieldValueNotSupported`: `<field>: Unsupported value: <value>: supported values: ...`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                list.join(", ")
            ),
            field: field.into(),
        }
    }

    /// `FieldValueDuplicate`: `<field>: Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
        Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", render_value(value)),
            field: field.into(),
        }
    }

    /// `FieldValueForbidden`: `<field>: Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        }
    }

    /// `FieldValueTooLong`: `<field>: Too long: may not be more than <max> bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
            field: field.into(),
        }
    }

    /// `FieldValueNotFound`: `<field>: Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: &Value) -> Cause {
        Cause {
            reason: "FieldValueNotFound",
            message: format!("Not found: {}", render_value(value)),
            field: field.into(),
        }
    }

    /// `FieldValueRequired` with a detail: `<field>: Required value: <detail>`.
    pub fn required_because(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            message: format!("Required value: {detail}"),
            field: field.into(),
        }
    }

    /// `FieldValueInvalid` for a value already rendered as Go prints it (e.g.
    /// `map[string]string{"app":"web"}`): `<field>: Invalid value: <rendered>: <detail>`.
    pub fn invalid_rendered(field: impl Into<String>, rendered: &str, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {rendered}: {detail}"),
            field: field.into(),
        }
    }
}

/// Renders a value the way Kubernetes field errors quote it: strings in quotes, others as JSON.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// A failed API request, answered as a `Status` object with `code`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `details.name`.
    pub name: String,
    /// `details.group`.
    pub group: String,
    /// `details.kind`.
    pub kind: String,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds` (and a `Retry-After` header).
    pub retry_after: Option<u32>,
    /// `metadata.continue`: a token the client may continue an expired list with.
    pub continue_token: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            causes: Vec::new(),
            retry_after: None,
            continue_token: String::new(),
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> ApiError {
        self.group = group.to_string();
        self.kind = kind.to_string();
        self.name = name.to_string();
        self
    }

    /// 404 NotFound: `<qualified plural> "<name>" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 409 AlreadyExists: `<qualified plural> "<name>" already exists`.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 409 Conflict on a stale `resourceVersion`.
    pub fn conflict(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, plural)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 409 Conflict with a custom message (e.g. a namespace being terminated).
    pub fn conflict_message(
        group: &str,
        plural: &str,
        name: &str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(409, "Conflict", message).with_details(group, plural, name)
    }

    /// 422 Invalid: `<Kind> "<name>" is invalid: <field>: <message>` (several in `[...]`).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {joined}"),
        )
        .with_details(group, kind, name);
        e.causes = causes;
        e
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 410 Expired: `too old resource version: <requested> (<oldest>)`.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 410 Expired for a list continued at a compacted revision, with
    /// `metadata.continue` set to `token` (which continues it inconsistently, at the
    /// current revision), in upstream's words.
    pub fn continue_expired(token: String) -> ApiError {
        let mut e = ApiError::new(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.");
        e.continue_token = token;
        e
    }

    /// 504 Timeout: a read asked for a revision this apiserver has not reached yet.
    pub fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
        let mut e = ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        );
        e.causes = vec![Cause {
            reason: "ResourceVersionTooLarge",
            message: "Too large resource version".into(),
            field: String::new(),
        }];
        e.retry_after = Some(1);
        e
    }

    /// 401 Unauthorized (the reason is logged, never sent).
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(
        group: &str,
        plural: &str,
        name: &str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(403, "Forbidden", message).with_details(group, plural, name)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    /// 504 Timeout: the request did not finish in time.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json; got {content_type:?}"))
    }

    /// 429 TooManyRequests, retry after `seconds`.
    pub fn too_many_requests(message: impl Into<String>, seconds: u32) -> ApiError {
        let mut e = ApiError::new(429, "TooManyRequests", message);
        e.retry_after = Some(seconds);
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.message = message.into();
        self
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if !self.name.is_empty() {
            details.insert("name".into(), json!(self.name));
        }
        if !self.group.is_empty() {
            details.insert("group".into(), json!(self.group));
        }
        if !self.kind.is_empty() {
            details.insert("kind".into(), json!(self.kind));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(s) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(s));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        if !self.continue_token.is_empty() {
            status["metadata"]["continue"] = json!(self.continue_token);
        }
        status
    }
}

/// `pods` for core, `deployments.apps` for groups.
fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_should_format_like_kubernetes() {
        let e = ApiError::invalid(
            "",
            "Pod",
            "x",
            vec![Cause::required("spec.containers[0].image")],
        );
        assert_eq!(
            e.message,
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
    }

    #[test]
    fn not_found_should_name_the_qualified_resource() {
        let e = ApiError::not_found("apps", "deployments", "x");
        assert_eq!(e.message, "deployments.apps \"x\" not found");
        assert_eq!(e.to_status()["details"]["kind"], "deployments");
    }
}
