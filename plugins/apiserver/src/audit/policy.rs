//! The audit policy (`audit.k8s.io/v1` `Policy`): which level each request is logged at.
//!
//! Rules are tried in order and the first that matches gives the level, as upstream's
//! policy checker; a request no rule matches is not logged (`None`). A rule matches
//! when every list it sets matches: `users`, `userGroups` (any of the user's groups),
//! `verbs`, `namespaces` (the empty string for cluster-scoped resources), `resources`
//! (`{group, resources, resourceNames}` with `*`, `resource/*`, `*/subresource`) and
//! `nonResourceURLs` (exact or a trailing `*`).

use std::path::Path;

use serde::Deserialize;

use crate::auth::rbac::Attributes;
use crate::auth::UserInfo;

/// How much of a request is logged (upstream's audit levels, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    /// Not logged.
    None,
    /// User, verb, object reference, response code and timestamps.
    Metadata,
    /// Metadata and the request body (`requestObject`).
    Request,
    /// `Request` and the response body (`responseObject`) when it is not a stream.
    RequestResponse,
}

impl Level {
    /// The name in the event's `level` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// An audit policy file (other top-level fields, such as `metadata`, are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `audit.k8s.io/v1`.
    #[serde(default)]
    api_version: String,
    /// `Policy`.
    #[serde(default)]
    kind: String,
    /// Stages no event is written for (`ResponseStarted`, `ResponseComplete`, ...).
    #[serde(default)]
    omit_stages: Vec<String>,
    /// Whether `metadata.managedFields` is left out of logged objects.
    #[serde(default)]
    omit_managed_fields: bool,
    /// The rules, first match wins.
    #[serde(default)]
    rules: Vec<Rule>,
}

/// One rule of a policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

/// What the policy says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The level.
    pub level: Level,
    /// Stages not logged (the policy's and the rule's).
    pub omit_stages: Vec<String>,
    /// Whether `metadata.managedFields` is left out of the logged request object.
    pub omit_managed_fields: bool,
}

impl Decision {
    /// Every request at `level`, every stage logged.
    pub fn at(level: Level) -> Decision {
        Decision {
            level,
            omit_stages: Vec::new(),
            omit_managed_fields: false,
        }
    }

    /// Whether an event of `stage` is written.
    pub fn logs(&self, stage: &str) -> bool {
        self.level > Level::None && !self.omit_stages.iter().any(|s| s == stage)
    }
}

/// Resources of one API group in a rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

impl Policy {
    /// Reads a policy file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("config: key audit_policy_file: {}: {e}", path.display()))?;
        Policy::parse(&text)
            .map_err(|e| format!("config: key audit_policy_file: {}: {e}", path.display()))
    }

    /// Parses the text of a policy (YAML, of which JSON is a subset).
    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if policy.kind != "Policy" {
            return Err(format!("kind {:?}, want \"Policy\"", policy.kind));
        }
        if !matches!(
            policy.api_version.as_str(),
            "audit.k8s.io/v1" | "audit.k8s.io/v1beta1"
        ) {
            return Err(format!(
                "apiVersion {:?}, want \"audit.k8s.io/v1\"",
                policy.api_version
            ));
        }
        Ok(policy)
    }

    /// What to log of a request by `user` (none when it was not authenticated).
    pub fn decide(&self, user: Option<&UserInfo>, attrs: &Attributes) -> Decision {
        let Some(rule) = self.rules.iter().find(|r| r.matches(user, attrs)) else {
            return Decision::at(Level::None);
        };
        let mut omit_stages = self.omit_stages.clone();
        omit_stages.extend(rule.omit_stages.iter().cloned());
        Decision {
            level: rule.level,
            omit_stages,
            omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
        }
    }

    /// The level of a request by `user`.
    pub fn level(&self, user: Option<&UserInfo>, attrs: &Attributes) -> Level {
        self.decide(user, attrs).level
    }
}

impl Rule {
    fn matches(&self, user: Option<&UserInfo>, attrs: &Attributes) -> bool {
        if !self.users.is_empty() && !user.is_some_and(|u| self.users.contains(&u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !user.is_some_and(|u| u.groups.iter().any(|g| self.user_groups.contains(g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&attrs.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(attrs);
        }
        if !self.non_resource_urls.is_empty() {
            return !attrs.path.is_empty()
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(&attrs.path, spec));
        }
        true
    }

    fn matches_resource(&self, attrs: &Attributes) -> bool {
        if attrs.resource.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&attrs.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let sub = attrs.subresource.as_str();
        let combined = if sub.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{sub}", attrs.resource)
        };
        self.resources
            .iter()
            .filter(|gr| gr.group == attrs.group)
            .any(|gr| {
                if gr.resources.is_empty() {
                    return true;
                }
                if !gr.resource_names.is_empty() && !gr.resource_names.contains(&attrs.name) {
                    return false;
                }
                gr.resources.iter().any(|res| {
                    res == "*"
                        || *res == combined
                        || (!sub.is_empty() && res.strip_prefix("*/") == Some(sub))
                        || res.strip_suffix("/*") == Some(attrs.resource.as_str())
                })
            })
    }
}

/// Upstream's non-resource URL match: `*`, the exact path, or a prefix ending in `*`.
pub(crate) fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::auth::test_user as user;

    fn pods(verb: &str, ns: &str, sub: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: "pods".into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: "web".into(),
            ..Attributes::default()
        }
    }

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-proxy"]
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  - level: Request
    resources:
      - group: ""
        resources: ["configmaps", "*/status"]
    namespaces: ["team-a"]
  - level: Metadata
    userGroups: ["devs"]
    verbs: ["get", "list"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods/*"]
"#;

    #[test]
    fn policy_should_take_the_first_matching_rule() {
        let p = Policy::parse(POLICY).expect("parse");
        assert!(!p
            .decide(None, &pods("get", "x", "log"))
            .logs("RequestReceived"));
        let alice = user("alice", &["devs"]);
        let proxy = user("system:kube-proxy", &[]);
        assert_eq!(
            p.level(Some(&proxy), &pods("get", "team-a", "")),
            Level::None
        );
        let mut cm = pods("create", "team-a", "");
        cm.resource = "configmaps".into();
        assert_eq!(p.level(Some(&alice), &cm), Level::Request);
        cm.namespace = "other".into();
        assert_eq!(p.level(Some(&alice), &cm), Level::None);
        assert_eq!(
            p.level(Some(&alice), &pods("update", "team-a", "status")),
            Level::Request
        );
        assert_eq!(
            p.level(Some(&alice), &pods("list", "x", "")),
            Level::Metadata
        );
        assert_eq!(
            p.level(Some(&user("bob", &[])), &pods("get", "x", "log")),
            Level::RequestResponse
        );
        // `pods/*` covers the pods themselves too, as upstream.
        assert_eq!(p.level(None, &pods("get", "x", "")), Level::RequestResponse);
        let mut nodes = pods("get", "", "");
        nodes.resource = "nodes".into();
        assert_eq!(p.level(None, &nodes), Level::None);
        let health = Attributes {
            verb: "get".into(),
            path: "/healthz/ping".into(),
            ..Attributes::default()
        };
        assert_eq!(p.level(Some(&alice), &health), Level::None);
    }

    #[test]
    fn policy_should_read_json_and_refuse_garbage() {
        let p = Policy::parse(
            r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata"}]}"#,
        )
        .expect("json");
        assert!(p
            .decide(None, &pods("get", "a", ""))
            .logs("ResponseComplete"));
        assert_eq!(p.level(None, &pods("delete", "a", "")), Level::Metadata);
        for bad in [
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  user: [a]\n",
            "apiVersion: v1\nkind: Policy\n",
            "kind: Pod\napiVersion: audit.k8s.io/v1\n",
            "[[[",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
