//! The Node authorizer: a kubelet identified as `system:node:<name>` in the group
//! `system:nodes` may read what the pods bound to its node need and write its own
//! Node, its own Lease and the status of its own pods, as upstream's
//! `NodeAuthorizer` together with the `NodeRestriction` admission.
//!
//! The relations between a node and the secrets, config maps and claims it may read
//! are found by scanning the pods bound to it (the store serves them from memory)
//! rather than kept in a graph as upstream does.

use std::sync::Arc;

use serde_json::Value;

use super::rbac::Attributes;
use super::UserInfo;
use crate::store::{ListOptions, Store};

/// The group of node identities.
pub const NODES_GROUP: &str = "system:nodes";
/// The user name prefix of node identities.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The namespace of the nodes' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the Node authorizer says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Left to the next authorizer; the reason is added to a denial's message.
    NoOpinion(Option<String>),
}

/// The node name of a node identity (`system:node:<name>` in `system:nodes`).
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.in_group(NODES_GROUP) {
        return None;
    }
    user.name
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

const READ: &[&str] = &["get", "list", "watch"];

/// Decides a request of the node `node`.
pub fn decide(store: &dyn Store, node: &str, attrs: &Attributes) -> Decision {
    if attrs.resource.is_empty() {
        return Decision::NoOpinion(None);
    }
    let verb = attrs.verb.as_str();
    let sub = attrs.subresource.as_str();
    let allow = match (attrs.group.as_str(), attrs.resource.as_str()) {
        ("", "nodes") => match sub {
            "" | "status" if READ.contains(&verb) => true,
            // The name of a created Node is checked on its body (NodeRestriction).
            "" if verb == "create" => true,
            "" | "status" => matches!(verb, "update" | "patch" | "delete") && attrs.name == node,
            _ => false,
        },
        ("coordination.k8s.io", "leases") => {
            sub.is_empty()
                && attrs.namespace == NODE_LEASE_NAMESPACE
                && match verb {
                    "create" => true,
                    "get" | "update" | "patch" | "delete" => attrs.name == node,
                    _ => false,
                }
        }
        ("", "services" | "endpoints") => sub.is_empty() && READ.contains(&verb),
        ("", "pods") => match sub {
            "" | "status" if READ.contains(&verb) => true,
            "" if verb == "delete" => pod_bound_to(store, node, attrs),
            "status" if matches!(verb, "update" | "patch") => pod_bound_to(store, node, attrs),
            _ => false,
        },
        ("" | "events.k8s.io", "events") => {
            sub.is_empty() && matches!(verb, "create" | "update" | "patch")
        }
        // A token for the ServiceAccount of a pod bound to the node (the kubelet's
        // projected ServiceAccount volumes).
        ("", "serviceaccounts") if sub == "token" && verb == "create" => {
            if runs_as(store, node, &attrs.namespace, &attrs.name) {
                return Decision::Allow;
            }
            return Decision::NoOpinion(Some(format!(
                "no relationship found between node '{node}' and this object"
            )));
        }
        ("", kind @ ("secrets" | "configmaps" | "persistentvolumeclaims")) => {
            if sub.is_empty() && verb == "get" && !attrs.name.is_empty() {
                if referenced(store, node, kind, &attrs.namespace, &attrs.name) {
                    return Decision::Allow;
                }
                return Decision::NoOpinion(Some(format!(
                    "no relationship found between node '{node}' and this object"
                )));
            }
            false
        }
        _ => false,
    };
    if allow {
        Decision::Allow
    } else {
        Decision::NoOpinion(None)
    }
}

/// Whether the named pod exists and its `spec.nodeName` is `node`.
fn pod_bound_to(store: &dyn Store, node: &str, attrs: &Attributes) -> bool {
    if attrs.name.is_empty() {
        return false;
    }
    let key = format!("pods/{}/{}", attrs.namespace, attrs.name);
    match store.get(&key) {
        Ok(Some(pod)) => pod.object["spec"]["nodeName"] == node,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "Node authorizer: reading the pod failed; no opinion");
            false
        }
    }
}

/// Labels a kubelet may set on its Node in the `kubernetes.io`/`k8s.io` domains.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
];

/// The label keys of `new` (added, changed or, against `old`, removed) that a
/// kubelet may not set on its Node, sorted: the `node-restriction.kubernetes.io`
/// domain, and `kubernetes.io`/`k8s.io` ones other than [`KUBELET_LABELS`] and the
/// `kubelet.kubernetes.io` and `node.kubernetes.io` domains.
pub fn forbidden_labels(new: &Value, old: &Value) -> Vec<String> {
    let keys = |v: &Value| {
        v.as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut touched: Vec<String> = keys(new)
        .into_iter()
        .chain(keys(old))
        .filter(|k| new[k.as_str()] != old[k.as_str()])
        .filter(|k| reserved(k))
        .collect();
    touched.sort();
    touched.dedup();
    touched
}

/// Whether a kubelet may not set the label `key` on its Node.
fn reserved(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return false;
    };
    let within = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
    if within("node-restriction.kubernetes.io") {
        return true;
    }
    if !(within("kubernetes.io") || within("k8s.io")) {
        return false;
    }
    !(KUBELET_LABELS.contains(&key)
        || within("kubelet.kubernetes.io")
        || within("node.kubernetes.io"))
}

/// The pods in `namespace` bound to `node` (none when the store cannot list them:
/// the authorizer then has no opinion).
fn pods_on(store: &dyn Store, node: &str, namespace: &str) -> Vec<Arc<Value>> {
    match store.list(&ListOptions {
        prefix: format!("pods/{namespace}/"),
        ..ListOptions::default()
    }) {
        Ok(r) => r
            .items
            .into_iter()
            .map(|p| p.object)
            .filter(|p| p["spec"]["nodeName"] == node)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "Node authorizer: listing pods failed; no opinion");
            Vec::new()
        }
    }
}

/// Whether a pod bound to `node` in `namespace` runs as the ServiceAccount `name`.
fn runs_as(store: &dyn Store, node: &str, namespace: &str, name: &str) -> bool {
    !name.is_empty()
        && pods_on(store, node, namespace).iter().any(|p| {
            p["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                == name
        })
}

/// Whether a pod bound to `node` in `namespace` refers to the `kind` named `name`.
fn referenced(store: &dyn Store, node: &str, kind: &str, namespace: &str, name: &str) -> bool {
    pods_on(store, node, namespace)
        .iter()
        .any(|p| references(&p["spec"], kind).any(|n| n == name))
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// The names of the `kind` objects a pod spec refers to.
fn references<'a>(spec: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let containers = items(&spec["containers"])
        .chain(items(&spec["initContainers"]))
        .chain(items(&spec["ephemeralContainers"]));
    let (volume_field, volume_name, env_ref, env_from, projected) = match kind {
        "secrets" => (
            "secret",
            "secretName",
            "secretKeyRef",
            "secretRef",
            "secret",
        ),
        "configmaps" => (
            "configMap",
            "name",
            "configMapKeyRef",
            "configMapRef",
            "configMap",
        ),
        _ => ("persistentVolumeClaim", "claimName", "", "", ""),
    };
    let volumes = items(&spec["volumes"]).flat_map(move |v| {
        let direct = text(&v[volume_field][volume_name]);
        let projected = items(&v["projected"]["sources"])
            .filter_map(move |s| text(&s[projected]["name"]).filter(|_| !projected.is_empty()));
        direct.into_iter().chain(projected)
    });
    let env = containers.flat_map(move |c| {
        let values = items(&c["env"]).filter_map(move |e| {
            text(&e["valueFrom"][env_ref]["name"]).filter(|_| !env_ref.is_empty())
        });
        let from = items(&c["envFrom"])
            .filter_map(move |e| text(&e[env_from]["name"]).filter(|_| !env_from.is_empty()));
        values.chain(from)
    });
    let pull = items(&spec["imagePullSecrets"])
        .filter(move |_| kind == "secrets")
        .filter_map(|s| text(&s["name"]));
    volumes.chain(env).chain(pull)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forbidden_labels_should_follow_upstreams_domains() {
        let new = json!({
            "kubernetes.io/hostname": "n1",
            "topology.kubernetes.io/zone": "a",
            "node.kubernetes.io/exclude-from-external-load-balancers": "",
            "node-restriction.kubernetes.io/pool": "gpu",
            "node-role.kubernetes.io/control-plane": "",
            "example.com/team": "x",
        });
        assert_eq!(
            forbidden_labels(&new, &Value::Null),
            [
                "node-restriction.kubernetes.io/pool",
                "node-role.kubernetes.io/control-plane"
            ]
        );
        // Unchanged ones are not the kubelet's doing; a removal is.
        let old = json!({"node-role.kubernetes.io/control-plane": "", "node-restriction.kubernetes.io/pool": "gpu", "node-restriction.kubernetes.io/gone": "y"});
        assert_eq!(
            forbidden_labels(&new, &old),
            ["node-restriction.kubernetes.io/gone"]
        );
    }

    fn names<'a>(spec: &'a Value, kind: &'a str) -> Vec<&'a str> {
        references(spec, kind).collect()
    }

    #[test]
    fn references_should_cover_volumes_env_and_pull_secrets() {
        let spec = json!({
            "volumes": [
                {"name": "a", "secret": {"secretName": "s-vol"}},
                {"name": "b", "configMap": {"name": "cm-vol"}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}},
                {"name": "d", "projected": {"sources": [
                    {"secret": {"name": "s-proj"}}, {"configMap": {"name": "cm-proj"}}
                ]}}
            ],
            "containers": [{
                "name": "c",
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}}
                ],
                "envFrom": [{"secretRef": {"name": "s-from"}}, {"configMapRef": {"name": "cm-from"}}]
            }],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s-init"}}]}],
            "imagePullSecrets": [{"name": "s-pull"}]
        });
        assert_eq!(
            names(&spec, "secrets"),
            ["s-vol", "s-proj", "s-env", "s-from", "s-init", "s-pull"]
        );
        assert_eq!(
            names(&spec, "configmaps"),
            ["cm-vol", "cm-proj", "cm-env", "cm-from"]
        );
        assert_eq!(names(&spec, "persistentvolumeclaims"), ["claim"]);
    }

    #[test]
    fn node_name_should_need_the_group_and_the_prefix() {
        let user = |name: &str, groups: &[&str]| {
            UserInfo::new(name, "", groups.iter().map(|g| g.to_string()).collect())
        };
        assert_eq!(
            node_name(&user("system:node:n1", &[NODES_GROUP])),
            Some("n1")
        );
        assert_eq!(node_name(&user("system:node:n1", &[])), None);
        assert_eq!(node_name(&user("system:kubelet", &[NODES_GROUP])), None);
        assert_eq!(node_name(&user("system:node:", &[NODES_GROUP])), None);
    }
}
