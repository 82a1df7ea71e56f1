//! Query parameters and bodies of list, watch, delete and patch requests.

use std::fmt::Write;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

/// Selects which objects a list or watch returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// `labelSelector`, e.g. `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// `fieldSelector`, e.g. `spec.nodeName=n1`.
    pub field_selector: Option<String>,
    /// `limit`: page size of a list (0: no paging).
    pub limit: u32,
}

impl ListParams {
    /// Selects by label.
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    /// Selects by field.
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }

    /// Appends the selectors as query parameters to `query` (which starts empty or with `?...`).
    pub(crate) fn append(&self, query: &mut String) {
        if let Some(s) = &self.label_selector {
            push(query, "labelSelector", s);
        }
        if let Some(s) = &self.field_selector {
            push(query, "fieldSelector", s);
        }
    }
}

/// Appends `key=value` (value percent-encoded) to a query string.
pub(crate) fn push(query: &mut String, key: &str, value: &str) {
    query.push(if query.is_empty() { '?' } else { '&' });
    let _ = write!(
        query,
        "{key}={}",
        utf8_percent_encode(value, NON_ALPHANUMERIC)
    );
}

/// Options of a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteParams {
    /// `gracePeriodSeconds`; `Some(0)` deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`: `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    /// Only delete when the object still has this uid.
    pub precondition_uid: Option<String>,
}

impl DeleteParams {
    /// The `DeleteOptions` body.
    pub(crate) fn body(&self) -> Value {
        let mut body = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(g) = self.grace_period_seconds {
            body["gracePeriodSeconds"] = g.into();
        }
        if let Some(p) = &self.propagation_policy {
            body["propagationPolicy"] = p.clone().into();
        }
        if let Some(uid) = &self.precondition_uid {
            body["preconditions"] = serde_json::json!({ "uid": uid });
        }
        body
    }
}

/// The `Content-Type` of a strategic merge patch.
pub(crate) const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// A patch body and its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/strategic-merge-patch+json`.
    Strategic(Value),
    /// `application/json-patch+json` (RFC 6902 operations).
    Json(Value),
}

impl Patch {
    /// The `Content-Type` of this patch.
    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Strategic(_) => STRATEGIC_MERGE_PATCH,
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    /// The patch document.
    pub(crate) fn value(&self) -> &Value {
        match self {
            Patch::Merge(v) | Patch::Strategic(v) | Patch::Json(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_should_percent_encode_selectors() {
        let mut q = String::new();
        ListParams::default()
            .labels("app in (a,b)")
            .fields("spec.nodeName=")
            .append(&mut q);
        assert_eq!(
            q,
            "?labelSelector=app%20in%20%28a%2Cb%29&fieldSelector=spec%2EnodeName%3D"
        );
    }
}
