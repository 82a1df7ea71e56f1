//! Authorization: the privileged group, the bus components, RBAC, and the
//! SelfSubjectAccessReview behind `kubectl auth can-i`.
//!
//! RBAC reads the bindings and roles from the store on each decision (the store
//! serves them from memory): ClusterRoleBindings first, then the RoleBindings of the
//! request's namespace, as upstream's `RBACAuthorizer`.

use serde_json::{json, Value};

use super::{node, UserInfo, AUTHENTICATED, MASTERS};
use crate::status::ApiError;
use crate::store::{ListOptions, Store};

/// What a request asks to do (upstream's `authorizer.Attributes`).
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, ...
    pub verb: String,
    /// API group, `""` for core.
    pub group: String,
    /// Resource plural; empty for a non-resource request.
    pub resource: String,
    /// Subresource, empty for none.
    pub subresource: String,
    /// Namespace, empty for cluster scope.
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
    /// Path of a non-resource request.
    pub path: String,
}

impl Attributes {
    fn is_resource(&self) -> bool {
        !self.resource.is_empty()
    }

    fn resource_with_sub(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The configured authorizers, tried in order until one allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Modes {
    /// `AlwaysAllow`: everything is allowed.
    pub always_allow: bool,
    /// `RBAC`.
    pub rbac: bool,
    /// `Node`: the Node authorizer for `system:node:<name>` users.
    pub node: bool,
    /// `ABAC`: the policy file (see `auth::abac`, consulted by the request handler).
    pub abac: bool,
}

impl Modes {
    /// Parses `authorization_modes`.
    pub fn parse(modes: &[String]) -> Result<Modes, String> {
        let mut m = Modes::default();
        if modes.is_empty() {
            return Err("config: key authorization_modes: at least one mode is needed (RBAC, Node, ABAC, AlwaysAllow)".into());
        }
        for mode in modes {
            match mode.as_str() {
                "RBAC" => m.rbac = true,
                "AlwaysAllow" => m.always_allow = true,
                "Node" => m.node = true,
                "ABAC" => m.abac = true,
                other => {
                    return Err(format!(
                        "config: key authorization_modes: unknown mode {other:?} (RBAC, Node, ABAC, AlwaysAllow)"
                    ))
                }
            }
        }
        Ok(m)
    }
}

/// Whether `user` may do `attrs`: `Ok(())` or the 403 to answer.
pub fn authorize(
    store: &dyn Store,
    modes: Modes,
    user: &UserInfo,
    attrs: &Attributes,
) -> Result<(), ApiError> {
    if allowed(store, modes, user, attrs) {
        return Ok(());
    }
    let reason = match (modes.node, node::node_name(user)) {
        (true, Some(name)) => match node::decide(store, name, attrs) {
            node::Decision::NoOpinion(reason) => reason,
            node::Decision::Allow => None,
        },
        _ => None,
    };
    Err(forbidden_because(user, attrs, reason.as_deref()))
}

/// The decision alone.
pub fn allowed(store: &dyn Store, modes: Modes, user: &UserInfo, attrs: &Attributes) -> bool {
    if user.in_group(MASTERS) || user.bus || modes.always_allow {
        return true;
    }
    if !attrs.is_resource() {
        // system:public-info-viewer for everyone, system:discovery and
        // system:basic-user's paths for the authenticated.
        let public = matches!(
            attrs.path.as_str(),
            "/healthz" | "/livez" | "/readyz" | "/version"
        ) || attrs.path.starts_with("/healthz/")
            || attrs.path.starts_with("/livez/")
            || attrs.path.starts_with("/readyz/");
        if public && attrs.verb == "get" {
            return true;
        }
        if user.in_group(AUTHENTICATED)
            && attrs.verb == "get"
            && (matches!(
                attrs.path.as_str(),
                "/api" | "/apis" | "/openapi/v2" | "/openapi/v3"
            ) || attrs.path.starts_with("/api/")
                || attrs.path.starts_with("/apis/")
                || attrs.path.starts_with("/openapi/"))
        {
            return true;
        }
    }
    if modes.node {
        if let Some(name) = node::node_name(user) {
            if node::decide(store, name, attrs) == node::Decision::Allow {
                return true;
            }
        }
    }
    modes.rbac && rbac_allows(store, user, attrs)
}

/// `<resource> "<name>" is forbidden: User "u" cannot <verb> resource ...`, upstream's text.
pub fn forbidden(user: &UserInfo, attrs: &Attributes) -> ApiError {
    forbidden_because(user, attrs, None)
}

/// [`forbidden`] with an authorizer's reason after the text, as upstream joins them.
fn forbidden_because(user: &UserInfo, attrs: &Attributes, why: Option<&str>) -> ApiError {
    if !attrs.is_resource() {
        return ApiError::forbidden(
            "",
            "",
            "",
            format!(
                "forbidden: User {:?} cannot {} path {:?}",
                user.name, attrs.verb, attrs.path
            ),
        );
    }
    let reason = if attrs.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name,
            attrs.verb,
            attrs.resource_with_sub(),
            attrs.group
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name,
            attrs.verb,
            attrs.resource_with_sub(),
            attrs.group,
            attrs.namespace
        )
    };
    let qualified = if attrs.group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.group)
    };
    let reason = match why {
        Some(why) => format!("{reason}: {why}"),
        None => reason,
    };
    let message = if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {reason}")
    } else {
        format!("{qualified} {:?} is forbidden: {reason}", attrs.name)
    };
    ApiError::forbidden(&attrs.group, &attrs.resource, &attrs.name, message)
}

const RBAC: &str = "rbac.authorization.k8s.io";

fn list(store: &dyn Store, prefix: String) -> Vec<std::sync::Arc<Value>> {
    match store.list(&ListOptions {
        prefix,
        ..ListOptions::default()
    }) {
        Ok(r) => r.items.into_iter().map(|s| s.object).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "RBAC: reading bindings failed; denying");
            Vec::new()
        }
    }
}

fn get(store: &dyn Store, key: String) -> Option<std::sync::Arc<Value>> {
    store.get(&key).ok().flatten().map(|s| s.object)
}

fn rbac_allows(store: &dyn Store, user: &UserInfo, attrs: &Attributes) -> bool {
    for binding in list(store, format!("clusterrolebindings.{RBAC}/")) {
        if !binds(&binding, user, "") {
            continue;
        }
        let role = binding["roleRef"]["name"].as_str().unwrap_or("");
        if binding["roleRef"]["kind"] == "ClusterRole"
            && get(store, format!("clusterroles.{RBAC}/{role}"))
                .is_some_and(|r| role_allows(&r, attrs))
        {
            return true;
        }
    }
    if attrs.namespace.is_empty() {
        return false;
    }
    let ns = &attrs.namespace;
    for binding in list(store, format!("rolebindings.{RBAC}/{ns}/")) {
        if !binds(&binding, user, ns) {
            continue;
        }
        let role = binding["roleRef"]["name"].as_str().unwrap_or("");
        let key = match binding["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => format!("clusterroles.{RBAC}/{role}"),
            Some("Role") => format!("roles.{RBAC}/{ns}/{role}"),
            _ => continue,
        };
        if get(store, key).is_some_and(|r| role_allows(&r, attrs)) {
            return true;
        }
    }
    false
}

/// Whether a binding names `user` (a ServiceAccount subject without a namespace
/// takes the binding's).
fn binds(binding: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let Some(subjects) = binding["subjects"].as_array() else {
        return false;
    };
    subjects.iter().any(|s| {
        let name = s["name"].as_str().unwrap_or("");
        match s["kind"].as_str() {
            Some("User") => name == user.name,
            Some("Group") => user.in_group(name),
            Some("ServiceAccount") => {
                let ns = s["namespace"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_ns);
                user.name == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

fn role_allows(role: &Value, attrs: &Attributes) -> bool {
    role["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|r| rule_allows(r, attrs)))
}

fn has(list: &Value, item: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == item))
}

fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    if !has(&rule["verbs"], &attrs.verb) {
        return false;
    }
    if !attrs.is_resource() {
        return rule["nonResourceURLs"].as_array().is_some_and(|urls| {
            urls.iter().filter_map(Value::as_str).any(|u| {
                u == "*"
                    || u == attrs.path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| attrs.path.starts_with(prefix))
            })
        });
    }
    if !has(&rule["apiGroups"], &attrs.group) {
        return false;
    }
    let wanted = attrs.resource_with_sub();
    let resource_ok = rule["resources"].as_array().is_some_and(|l| {
        l.iter().filter_map(Value::as_str).any(|r| {
            r == "*"
                || r == wanted
                || (!attrs.subresource.is_empty()
                    && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
        })
    });
    if !resource_ok {
        return false;
    }
    match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names.iter().any(|n| n == attrs.name.as_str()),
        _ => true,
    }
}

/// Answers a `SelfSubjectAccessReview` (`kubectl auth can-i`): may `user` do what
/// the spec's attributes say.
pub fn self_subject_access_review(
    store: &dyn Store,
    modes: Modes,
    user: &UserInfo,
    body: &[u8],
) -> Result<Value, ApiError> {
    access_review(
        store,
        modes,
        "SelfSubjectAccessReview",
        Some(user),
        None,
        body,
    )
}

/// Answers a `SubjectAccessReview`, or with `namespace` a
/// `LocalSubjectAccessReview`: may the user the spec names (`user`, `groups`,
/// `uid`, `extra`) do what its attributes say. A local review's attributes must be
/// in its own namespace.
pub fn subject_access_review(
    store: &dyn Store,
    modes: Modes,
    namespace: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let kind = if namespace.is_some() {
        "LocalSubjectAccessReview"
    } else {
        "SubjectAccessReview"
    };
    access_review(store, modes, kind, None, namespace, body)
}

/// Answers a `SelfSubjectRulesReview` (`kubectl auth can-i --list`): the rules RBAC
/// grants `user` in `spec.namespace` (cluster-wide bindings included), split into
/// resource and non-resource rules. `incomplete` when another authorizer may grant
/// more (the Node authorizer for a node, ABAC).
pub fn self_subject_rules_review(
    store: &dyn Store,
    modes: Modes,
    abac: bool,
    user: &UserInfo,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut review = decode_review("SelfSubjectRulesReview", body)?;
    let ns = review["spec"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let rules: Vec<Value> = if user.in_group(crate::auth::MASTERS) || modes.always_allow {
        vec![
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
        ]
    } else if modes.rbac {
        let mut rules = Vec::new();
        let mut add = |role: Option<std::sync::Arc<Value>>| {
            for r in role
                .iter()
                .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
            {
                if !rules.contains(&r) {
                    rules.push(r);
                }
            }
        };
        for binding in list(store, format!("clusterrolebindings.{RBAC}/")) {
            if binds(&binding, user, "") && binding["roleRef"]["kind"] == "ClusterRole" {
                let role = binding["roleRef"]["name"].as_str().unwrap_or("");
                add(get(store, format!("clusterroles.{RBAC}/{role}")));
            }
        }
        if !ns.is_empty() {
            for binding in list(store, format!("rolebindings.{RBAC}/{ns}/")) {
                if !binds(&binding, user, &ns) {
                    continue;
                }
                let role = binding["roleRef"]["name"].as_str().unwrap_or("");
                match binding["roleRef"]["kind"].as_str() {
                    Some("ClusterRole") => add(get(store, format!("clusterroles.{RBAC}/{role}"))),
                    Some("Role") => add(get(store, format!("roles.{RBAC}/{ns}/{role}"))),
                    _ => {}
                }
            }
        }
        rules
    } else {
        Vec::new()
    };
    let field = |r: &Value, f: &str| r[f].as_array().cloned().unwrap_or_default();
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in &rules {
        if !field(r, "resources").is_empty() {
            let mut rule = json!({
                "verbs": field(r, "verbs"),
                "apiGroups": field(r, "apiGroups"),
                "resources": field(r, "resources"),
            });
            if !field(r, "resourceNames").is_empty() {
                rule["resourceNames"] = json!(field(r, "resourceNames"));
            }
            resource_rules.push(rule);
        }
        if !field(r, "nonResourceURLs").is_empty() {
            non_resource_rules.push(json!({
                "verbs": field(r, "verbs"),
                "nonResourceURLs": field(r, "nonResourceURLs"),
            }));
        }
    }
    let incomplete = abac || (modes.node && crate::auth::node::node_name(user).is_some());
    review["kind"] = json!("SelfSubjectRulesReview");
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": incomplete,
    });
    Ok(review)
}

/// What an access review's spec asks about: its `resourceAttributes`, else its
/// `nonResourceAttributes`; `None` when it has neither.
pub fn review_attributes(spec: &Value) -> Option<Attributes> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        Some(Attributes {
            verb: text(&r["verb"]),
            group: text(&r["group"]),
            resource: text(&r["resource"]),
            subresource: text(&r["subresource"]),
            namespace: text(&r["namespace"]),
            name: text(&r["name"]),
            path: String::new(),
        })
    } else {
        spec.get("nonResourceAttributes")
            .filter(|v| v.is_object())
            .map(|n| Attributes {
                verb: text(&n["verb"]),
                path: text(&n["path"]),
                ..Attributes::default()
            })
    }
}

/// The user a (Local)SubjectAccessReview's spec names: `user`, `uid`, `groups`.
pub fn review_subject(review: &Value) -> UserInfo {
    let spec = &review["spec"];
    UserInfo {
        name: spec["user"].as_str().unwrap_or_default().to_string(),
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups: spec["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        extra: Vec::new(),
        bus: false,
    }
}

/// A review's body as JSON: kubectl sends protobuf, other clients JSON.
fn decode_review(kind: &str, body: &[u8]) -> Result<Value, ApiError> {
    let decoded = if body.starts_with(b"k8s\0") {
        crate::protobuf::decode(body)
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    let review: Value =
        decoded.map_err(|e| ApiError::bad_request(format!("decoding the {kind}: {e}")))?;
    if !review.is_object() {
        return Err(ApiError::bad_request(format!(
            "a {kind} must be a JSON object"
        )));
    }
    Ok(review)
}

/// The access reviews: `subject` is the requester for a self review, else the
/// user comes from the spec.
fn access_review(
    store: &dyn Store,
    modes: Modes,
    kind: &str,
    subject: Option<&UserInfo>,
    namespace: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut review = decode_review(kind, body)?;
    let invalid = |cause: crate::status::Cause| {
        ApiError::invalid("authorization.k8s.io", kind, "", vec![cause])
    };
    let Some(attrs) = review_attributes(&review["spec"]) else {
        return Err(invalid(crate::status::Cause::required(
            "spec.resourceAttributes",
        )));
    };
    if let Some(ns) = namespace {
        if attrs.namespace != ns || !attrs.path.is_empty() {
            return Err(invalid(crate::status::Cause::invalid(
                "spec.resourceAttributes.namespace",
                &json!(attrs.namespace),
                "must match metadata.namespace",
            )));
        }
    }
    let named;
    let user = match subject {
        Some(u) => u,
        None => {
            named = review_subject(&review);
            if named.name.is_empty() && named.groups.is_empty() {
                return Err(invalid(crate::status::Cause::required_because(
                    "spec.user",
                    "at least one of user or group must be specified",
                )));
            }
            &named
        }
    };
    let allowed = allowed(store, modes, user, &attrs);
    review["kind"] = json!(kind);
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    if let Some(ns) = namespace {
        review["metadata"]["namespace"] = json!(ns);
    }
    review["status"] = if allowed {
        json!({ "allowed": true, "reason": "allowed" })
    } else {
        json!({ "allowed": false })
    };
    Ok(review)
}

/// Escalation prevention for a Role/ClusterRole or RoleBinding/ClusterRoleBinding
/// being created or replaced with `object`, as upstream: a role's rules must all be
/// held by the user (or the user may `escalate` it); a binding's role must be held
/// whole (or the user may `bind` it).
pub fn check_escalation(
    store: &dyn Store,
    modes: Modes,
    user: &UserInfo,
    attrs: &Attributes,
    object: &Value,
) -> Result<(), ApiError> {
    if user.in_group(MASTERS) || user.bus || modes.always_allow {
        return Ok(());
    }
    let ns = attrs.namespace.as_str();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or(attrs.name.as_str())
        .to_string();
    let (exempt_verb, role_resource, role_name, rules) = match attrs.resource.as_str() {
        "roles" | "clusterroles" => (
            "escalate",
            attrs.resource.clone(),
            name.clone(),
            object["rules"].clone(),
        ),
        "rolebindings" | "clusterrolebindings" => {
            let role = object["roleRef"]["name"].as_str().unwrap_or("").to_string();
            let (resource, key) = match object["roleRef"]["kind"].as_str() {
                Some("Role") if attrs.resource == "rolebindings" => {
                    ("roles", format!("roles.{RBAC}/{ns}/{role}"))
                }
                Some("ClusterRole") => ("clusterroles", format!("clusterroles.{RBAC}/{role}")),
                // Validation answers a bad roleRef.
                _ => return Ok(()),
            };
            let rules = get(store, key).map_or(Value::Null, |r| r["rules"].clone());
            ("bind", resource.to_string(), role, rules)
        }
        _ => return Ok(()),
    };
    let exempt = Attributes {
        verb: exempt_verb.into(),
        group: RBAC.into(),
        resource: role_resource,
        namespace: ns.to_string(),
        name: role_name,
        ..Attributes::default()
    };
    if allowed(store, modes, user, &exempt) {
        return Ok(());
    }
    let missing: Vec<String> = rules
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter(|r| !rule_covered(store, modes, user, ns, r))
                .map(describe_rule)
                .collect()
        })
        .unwrap_or_default();
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    Err(ApiError::forbidden(
        &attrs.group,
        &attrs.resource,
        &name,
        format!(
            "{}.{RBAC} {name:?} is forbidden: user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            attrs.resource,
            user.name,
            groups.join(" "),
            missing.join("\n")
        ),
    ))
}

/// Whether `user` holds every permission `rule` grants, in namespace `ns`.
fn rule_covered(store: &dyn Store, modes: Modes, user: &UserInfo, ns: &str, rule: &Value) -> bool {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let verbs = strings(&rule["verbs"]);
    let urls = strings(&rule["nonResourceURLs"]);
    if !urls.is_empty() {
        return verbs.iter().all(|verb| {
            urls.iter().all(|path| {
                let attrs = Attributes {
                    verb: verb.clone(),
                    path: path.clone(),
                    ..Attributes::default()
                };
                allowed(store, modes, user, &attrs)
            })
        });
    }
    let groups = strings(&rule["apiGroups"]);
    let resources = strings(&rule["resources"]);
    let mut names = strings(&rule["resourceNames"]);
    if names.is_empty() {
        names.push(String::new());
    }
    verbs.iter().all(|verb| {
        groups.iter().all(|group| {
            resources.iter().all(|resource| {
                let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
                names.iter().all(|name| {
                    let attrs = Attributes {
                        verb: verb.clone(),
                        group: group.clone(),
                        resource: resource.to_string(),
                        subresource: sub.to_string(),
                        namespace: ns.to_string(),
                        name: name.clone(),
                        path: String::new(),
                    };
                    allowed(store, modes, user, &attrs)
                })
            })
        })
    })
}

/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["create"]}`, as upstream prints a rule.
fn describe_rule(rule: &Value) -> String {
    let list = |key: &str| -> Option<String> {
        let items: Vec<String> = rule[key]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(|s| format!("{s:?}"))
            .collect();
        Some(items.join(" "))
    };
    let mut parts = Vec::new();
    for (key, label) in [
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("resourceNames", "ResourceNames"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("verbs", "Verbs"),
    ] {
        if let Some(items) = list(key).filter(|i| !i.is_empty()) {
            parts.push(format!("{label}:[{items}]"));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn rules_should_match_like_upstream() {
        let rule =
            json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]});
        assert!(rule_allows(&rule, &attrs("get", "", "pods", "", "d")));
        assert!(!rule_allows(&rule, &attrs("create", "", "pods", "", "d")));
        assert!(!rule_allows(&rule, &attrs("get", "", "pods", "log", "d")));
        assert!(rule_allows(&rule, &attrs("get", "", "nodes", "status", "")));
        assert!(!rule_allows(&rule, &attrs("get", "apps", "pods", "", "d")));
        let named =
            json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": ["a"]});
        let mut a = attrs("get", "apps", "deployments", "", "d");
        assert!(!rule_allows(&named, &a));
        a.name = "a".into();
        assert!(rule_allows(&named, &a));
    }

    #[test]
    fn forbidden_should_use_upstream_text() {
        let user = UserInfo {
            name: "alice".into(),
            uid: String::new(),
            groups: vec![],
            extra: Vec::new(),
            bus: false,
        };
        let e = forbidden(&user, &attrs("list", "", "pods", "", "default"));
        assert_eq!(e.message, "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"");
        let mut a = attrs("get", "apps", "deployments", "scale", "");
        a.name = "web".into();
        assert_eq!(forbidden(&user, &a).message, "deployments.apps \"web\" is forbidden: User \"alice\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope");
        let np = Attributes {
            verb: "get".into(),
            path: "/api".into(),
            ..Attributes::default()
        };
        assert_eq!(
            forbidden(&user, &np).message,
            "forbidden: User \"alice\" cannot get path \"/api\""
        );
    }
}
