//! ABAC: attribute-based authorization from a policy file (`--authorization-policy-file`).
//!
//! Kubernetes' format: one JSON object per line,
//! `{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy",
//! "spec": {...}}`; blank lines and lines starting with `#` are skipped. A request is
//! allowed when some policy matches it, as upstream's `PolicyList`:
//!
//! - the subject: `user` (a name or `*`) and/or `group` (one of the user's groups or
//!   `*`); a policy naming neither matches nobody;
//! - `readonly: true` limits it to `get`, `list` and `watch`;
//! - a resource request: `namespace`, `resource` (without subresource) and `apiGroup`,
//!   each exact or `*` (an unset one matches only the empty value: cluster scope, the
//!   core group);
//! - a non-resource request: `nonResourcePath`, exact, `*`, or a prefix ending in `*`.
//!
//! Otherwise ABAC has no opinion (`No policy matched.`) and the next mode decides.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::rbac::Attributes;
use super::UserInfo;
use crate::status::ApiError;

/// The `apiVersion` of a policy line.
const API_VERSION: &str = "abac.authorization.kubernetes.io/v1beta1";

/// ABAC's reason when no policy matched (upstream's text).
pub const NO_MATCH: &str = "No policy matched.";

/// One line of the policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Line {
    api_version: String,
    kind: String,
    spec: Spec,
}

/// What a policy allows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    user: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    readonly: bool,
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    non_resource_path: String,
}

/// The policies of a file, each with its line number.
#[derive(Debug, Clone, Default)]
pub struct PolicyList {
    policies: Vec<(usize, Spec)>,
}

/// The ABAC policy `authorization_modes` and `authorization_policy_file` ask for:
/// loaded when `ABAC` is a mode; either one without the other is an error.
pub fn from_config(
    modes: &[String],
    file: Option<&Path>,
) -> Result<Option<Arc<PolicyList>>, String> {
    let abac = modes.iter().any(|m| m == "ABAC");
    match (abac, file) {
        (false, None) => Ok(None),
        (false, Some(file)) => Err(format!(
            "config: key authorization_policy_file: {} is set but authorization_modes has no \"ABAC\"",
            file.display()
        )),
        (true, None) => Err(
            "config: key authorization_modes: mode \"ABAC\" needs authorization_policy_file"
                .into(),
        ),
        (true, Some(file)) => PolicyList::load(file).map(|p| Some(Arc::new(p))),
    }
}

impl PolicyList {
    /// Reads a policy file; an error names the file and the line.
    pub fn load(path: &Path) -> Result<PolicyList, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "config: key authorization_policy_file: {}: {e}",
                path.display()
            )
        })?;
        PolicyList::parse(&text).map_err(|e| {
            format!(
                "config: key authorization_policy_file: {}: {e}",
                path.display()
            )
        })
    }

    /// Parses the text of a policy file.
    pub fn parse(text: &str) -> Result<PolicyList, String> {
        let mut policies = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed: Line =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            if parsed.api_version != API_VERSION || parsed.kind != "Policy" {
                return Err(format!(
                    "line {}: apiVersion {:?} kind {:?}, want apiVersion {API_VERSION:?} kind \"Policy\"",
                    n + 1,
                    parsed.api_version,
                    parsed.kind
                ));
            }
            if parsed.spec.user.is_empty() && parsed.spec.group.is_empty() {
                return Err(format!(
                    "line {}: a policy needs a user or a group (\"*\" for everyone)",
                    n + 1
                ));
            }
            policies.push((n + 1, parsed.spec));
        }
        Ok(PolicyList { policies })
    }

    /// Asks ABAC after the other modes answered `result` (they only allow or have no
    /// opinion, so the order does not change the decision): allows what they denied
    /// when a policy matches, else adds ABAC's reason to the 403 as upstream's union
    /// authorizer joins reasons. The reason for the audit annotation.
    pub fn after(
        &self,
        result: &mut Result<(), ApiError>,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> String {
        let Err(denied) = result else {
            return String::new();
        };
        if let Some(line) = self.allows(user, attrs) {
            *result = Ok(());
            return format!("ABAC: allowed by policy line {line}");
        }
        // The first reason follows ": ", the next ones a newline.
        let sep = if denied.message == super::rbac::forbidden(user, attrs).message {
            ": "
        } else {
            "\n"
        };
        denied.message = format!("{}{sep}{NO_MATCH}", denied.message);
        NO_MATCH.to_string()
    }

    /// Completes a SelfSubjectAccessReview (`kubectl auth can-i`) that the other
    /// modes did not allow: allowed when a policy matches what its spec asks.
    pub fn review(&self, user: &UserInfo, review: &mut Value) {
        if review["status"]["allowed"] == true {
            return;
        }
        let Some(attrs) = super::rbac::review_attributes(&review["spec"]) else {
            return;
        };
        if let Some(line) = self.allows(user, &attrs) {
            review["status"] = serde_json::json!({
                "allowed": true,
                "reason": format!("ABAC: allowed by policy line {line}"),
            });
        }
    }

    /// The line of the first policy that allows `attrs` to `user`, or none (no opinion).
    pub fn allows(&self, user: &UserInfo, attrs: &Attributes) -> Option<usize> {
        self.policies
            .iter()
            .find(|(_, p)| p.matches(user, attrs))
            .map(|(line, _)| *line)
    }
}

impl Spec {
    fn matches(&self, user: &UserInfo, attrs: &Attributes) -> bool {
        self.subject_matches(user)
            && (!self.readonly || matches!(attrs.verb.as_str(), "get" | "list" | "watch"))
            && (self.resource_matches(attrs) || self.non_resource_matches(attrs))
    }

    fn subject_matches(&self, user: &UserInfo) -> bool {
        let mut matched = false;
        if !self.user.is_empty() {
            if self.user != "*" && self.user != user.name {
                return false;
            }
            matched = true;
        }
        if !self.group.is_empty() {
            if self.group != "*" && !user.in_group(&self.group) {
                return false;
            }
            matched = true;
        }
        matched
    }

    fn resource_matches(&self, attrs: &Attributes) -> bool {
        let is = |want: &str, have: &str| want == "*" || want == have;
        !attrs.resource.is_empty()
            && is(&self.namespace, &attrs.namespace)
            && is(&self.resource, &attrs.resource)
            && is(&self.api_group, &attrs.group)
    }

    fn non_resource_matches(&self, attrs: &Attributes) -> bool {
        attrs.resource.is_empty()
            && !self.non_resource_path.is_empty()
            && crate::audit::policy::path_matches(&attrs.path, &self.non_resource_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
# alice reads pods in team-a
{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "alice", "namespace": "team-a", "resource": "pods", "apiGroup": "", "readonly": true}}
{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"group": "ops", "namespace": "*", "resource": "*", "apiGroup": "*"}}
{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "*", "nonResourcePath": "/metrics*", "readonly": true}}
"#;

    use crate::auth::test_user as user;

    fn pods(verb: &str, ns: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: "pods".into(),
            namespace: ns.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn abac_should_match_as_upstream() {
        let p = PolicyList::parse(FILE).expect("parse");
        let alice = user("alice", &["system:authenticated"]);
        assert_eq!(p.allows(&alice, &pods("get", "team-a")), Some(3));
        assert_eq!(p.allows(&alice, &pods("watch", "team-a")), Some(3));
        assert_eq!(p.allows(&alice, &pods("create", "team-a")), None);
        assert_eq!(p.allows(&alice, &pods("get", "team-b")), None);
        let mut log = pods("get", "team-a");
        log.subresource = "log".into();
        assert_eq!(
            p.allows(&alice, &log),
            Some(3),
            "subresources are not matched"
        );
        let mut deploy = pods("get", "team-a");
        deploy.group = "apps".into();
        assert_eq!(p.allows(&alice, &deploy), None);
        let ops = user("carol", &["ops"]);
        assert_eq!(p.allows(&ops, &deploy), Some(4));
        let mut nodes = pods("delete", "");
        nodes.resource = "nodes".into();
        assert_eq!(p.allows(&ops, &nodes), Some(4));
        let metrics = Attributes {
            verb: "get".into(),
            path: "/metrics/slis".into(),
            ..Attributes::default()
        };
        assert_eq!(p.allows(&user("bob", &[]), &metrics), Some(5));
        assert_eq!(p.allows(&user("bob", &[]), &pods("get", "team-a")), None);
    }

    #[test]
    fn after_should_allow_or_add_the_reason_to_the_403() {
        let p = PolicyList::parse(FILE).expect("parse");
        let alice = user("alice", &[]);
        let create = pods("create", "team-a");
        let mut r = Err(crate::auth::rbac::forbidden(&alice, &create));
        assert_eq!(p.after(&mut r, &alice, &create), NO_MATCH);
        let message = r.expect_err("denied").message;
        assert_eq!(
            message,
            r#"pods is forbidden: User "alice" cannot create resource "pods" in API group "" in the namespace "team-a": No policy matched."#
        );
        let get = pods("get", "team-a");
        let mut r = Err(crate::auth::rbac::forbidden(&alice, &get));
        assert_eq!(
            p.after(&mut r, &alice, &get),
            "ABAC: allowed by policy line 3"
        );
        assert!(r.is_ok());
        let mut r = Ok(());
        assert_eq!(p.after(&mut r, &alice, &create), "");
        assert!(r.is_ok());
    }

    #[test]
    fn review_should_allow_what_a_policy_matches() {
        let p = PolicyList::parse(FILE).expect("parse");
        let alice = user("alice", &[]);
        let ask = |verb: &str| {
            serde_json::json!({
                "spec": {"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": "team-a"}},
                "status": {"allowed": false},
            })
        };
        let mut get = ask("get");
        p.review(&alice, &mut get);
        assert_eq!(get["status"]["allowed"], true);
        let mut create = ask("create");
        p.review(&alice, &mut create);
        assert_eq!(create["status"]["allowed"], false);
        let mut garbage = serde_json::json!({"spec": 3});
        p.review(&alice, &mut garbage);
        assert!(garbage["status"].is_null());
    }

    #[test]
    fn abac_should_name_the_bad_line() {
        let good = r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "a"}}"#;
        for (bad, want) in [
            ("{not json", "line 3"),
            (
                r#"{"apiVersion": "v1", "kind": "Policy", "spec": {"user": "a"}}"#,
                "line 3: apiVersion",
            ),
            (
                r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"usr": "a"}}"#,
                "unknown field",
            ),
            (
                r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"resource": "*"}}"#,
                "needs a user or a group",
            ),
        ] {
            let err = PolicyList::parse(&format!("{good}\n\n{bad}\n")).expect_err(bad);
            assert!(err.contains(want) && err.contains("line 3"), "{err}");
        }
    }

    #[test]
    fn from_config_should_want_the_mode_and_the_file_together() {
        let modes = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(from_config(&modes(&["RBAC"]), None)
            .expect("none")
            .is_none());
        assert!(from_config(&modes(&["ABAC"]), None).is_err());
        assert!(from_config(&modes(&["RBAC"]), Some(Path::new("/p"))).is_err());
        let err =
            from_config(&modes(&["ABAC"]), Some(Path::new("/no/such/file"))).expect_err("missing");
        assert!(err.contains("/no/such/file"), "{err}");
    }
}
