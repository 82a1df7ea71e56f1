//! Label and field selectors: parsing (Kubernetes syntax and errors) and matching against objects.

use std::borrow::Cow;
use std::collections::BTreeSet;

use kubernel_api::pointer::Pointer;
use serde_json::Value;

use crate::status::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (`app=web,tier!=db,env in (a,b),!legacy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    });
    name_ok && prefix_ok
}

fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter; errors are 400 BadRequest.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let bad = |m: String| ApiError::bad_request(format!("unable to parse requirement: {m}"));
        let mut reqs = Vec::new();
        for term in split_top(s)
            .into_iter()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let key_check = |k: &str| -> Result<String, ApiError> {
                let k = k.trim();
                if valid_key(k) {
                    Ok(k.to_string())
                } else {
                    Err(bad(format!("invalid label key \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")))
                }
            };
            let value_check = |v: &str| -> Result<String, ApiError> {
                let v = v.trim();
                if valid_value(v) {
                    Ok(v.to_string())
                } else {
                    Err(bad(format!("invalid label value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")))
                }
            };
            let set = |rest: &str| -> Result<BTreeSet<String>, ApiError> {
                let rest = rest.trim();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad(format!("found '{rest}', expected: '('")))?;
                inner.split(',').map(value_check).collect()
            };
            let req = if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(key_check(k)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEq(key_check(k)?, value_check(v)?)
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Eq(key_check(k)?, value_check(v)?)
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Eq(key_check(k)?, value_check(v)?)
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                LabelReq::NotIn(key_check(k)?, set(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                LabelReq::In(key_check(k)?, set(rest)?)
            } else {
                LabelReq::Exists(key_check(term)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `object`'s labels satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let labels = object.at("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, set) => get(k).is_some_and(|x| set.contains(x)),
            LabelReq::NotIn(k, set) => get(k).is_none_or(|x| !set.contains(x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector (`metadata.name=x,spec.nodeName!=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Fields every resource supports.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Extra fields a resource supports, as kube-apiserver's field label conversions.
fn resource_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Node" => &["spec.unschedulable"],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter for a resource of `kind`.
    pub fn parse(s: &str, kind: &str) -> Result<FieldSelector, ApiError> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !COMMON_FIELDS.contains(&field) && !resource_fields(kind).contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `metadata.name=<x>` when the selector pins one name.
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, eq, _)| f == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    /// True when `object` satisfies every requirement (a missing field reads as "").
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, eq, want)| {
            let found = field
                .split('.')
                .try_fold(object, |value, step| value.get(step));
            let have: Cow<'_, str> = match found {
                Some(Value::String(s)) => Cow::Borrowed(s),
                Some(Value::Null) | None => Cow::Borrowed(""),
                Some(Value::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
                Some(other) => Cow::Owned(other.to_string()),
            };
            (have == want.as_str()) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_should_parse_and_match_every_operator() {
        let pod = json!({"metadata": {"labels": {"app": "web", "env": "prod"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,env=prod", true),
            ("app!=web", false),
            ("env in (prod, dev)", true),
            ("env notin (prod)", false),
            ("app", true),
            ("!legacy", true),
            ("!app", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).expect(sel).matches(&pod),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a b=c").is_err());
        assert!(LabelSelector::parse("app=we b").is_err());
    }

    #[test]
    fn field_selector_should_match_known_fields_and_refuse_others() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse(
            "metadata.name=p,spec.nodeName!=n2,status.phase=Running",
            "Pod",
        )
        .expect("valid");
        assert!(s.matches(&pod));
        assert_eq!(s.pinned_name(), Some("p"));
        assert!(FieldSelector::parse("spec.nodeName=", "Pod")
            .expect("valid")
            .matches(&json!({})));
        let host = json!({"spec": {"nodeName": "n1", "hostNetwork": true}});
        for (sel, want) in [
            ("spec.nodeName!=", true),
            ("spec.nodeName=", false),
            ("spec.hostNetwork=true", true),
            ("spec.hostNetwork!=true", false),
            ("status.phase=", true),
        ] {
            let s = FieldSelector::parse(sel, "Pod").expect(sel);
            assert_eq!(s.matches(&host), want, "{sel}");
        }
        let err = FieldSelector::parse("spec.foo=x", "Pod").expect_err("unsupported");
        assert_eq!(err.message, "field label not supported: spec.foo");
    }
}
