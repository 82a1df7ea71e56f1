//! The ownership graph: every watched object by uid, its owners and dependents;
//! owners not seen yet are virtual nodes.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Finalizer that makes an owner wait for its blocking dependents (Foreground).
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer that makes the collector orphan an owner's dependents (Orphan).
pub const ORPHAN: &str = "orphan";

/// Which object a node stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Index of its kind in the collector's kind table (`None`: a type not watched).
    pub kind: Option<usize>,
    /// Namespace (empty when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// One object of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// The object.
    pub identity: Identity,
    /// Its owner references.
    pub owners: Vec<OwnerReference>,
    /// UIDs of the objects that name it as an owner.
    pub dependents: HashSet<String>,
    /// True while deleted with the `foregroundDeletion` finalizer.
    pub deleting_dependents: bool,
    /// True once it has a deletionTimestamp.
    pub being_deleted: bool,
    /// True for an owner only known from a reference.
    pub virtual_node: bool,
}

/// What the collector must look at after a graph change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// UIDs to check for deletion.
    pub attempt_to_delete: Vec<String>,
    /// UIDs whose dependents must be orphaned.
    pub attempt_to_orphan: Vec<String>,
}

/// The ownership graph.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    /// The node of `uid`.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Dependents of `uid` that block its deletion (`blockOwnerDeletion: true`).
    pub fn blocking_dependents(&self, uid: &str) -> Vec<Node> {
        self.dependents(uid)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .collect()
    }

    /// Every dependent of `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<Node> {
        self.nodes
            .get(uid)
            .map(|n| {
                n.dependents
                    .iter()
                    .filter_map(|d| self.nodes.get(d).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records an added or updated object (`kind` is its kind index, `owner_kind`
    /// finds the kind index of an owner reference).
    pub fn upsert(
        &mut self,
        kind: usize,
        meta: &ObjectMeta,
        owner_kind: impl Fn(&OwnerReference) -> Option<usize>,
    ) -> Work {
        let mut work = Work::default();
        let Some(uid) = meta.uid.clone() else {
            return work;
        };
        let owners = meta.owner_references.clone().unwrap_or_default();
        let old_owners = match self.nodes.get(&uid) {
            Some(n) if !n.virtual_node => n.owners.clone(),
            _ => Vec::new(),
        };
        let being_deleted = meta.deletion_timestamp.is_some();
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let deleting_dependents = being_deleted && finalizers.iter().any(|f| f == FOREGROUND);
        let node = self.nodes.entry(uid.clone()).or_insert_with(|| Node {
            identity: Identity {
                kind: Some(kind),
                namespace: String::new(),
                name: String::new(),
                uid: uid.clone(),
            },
            owners: Vec::new(),
            dependents: HashSet::new(),
            deleting_dependents: false,
            being_deleted: false,
            virtual_node: false,
        });
        node.identity = Identity {
            kind: Some(kind),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: uid.clone(),
        };
        node.virtual_node = false;
        node.owners = owners.clone();
        node.being_deleted = being_deleted;
        let started_deleting_dependents = deleting_dependents && !node.deleting_dependents;
        node.deleting_dependents = deleting_dependents;
        let namespace = node.identity.namespace.clone();
        for gone in old_owners
            .iter()
            .filter(|o| !owners.iter().any(|n| n.uid == o.uid))
        {
            if let Some(owner) = self.nodes.get_mut(&gone.uid) {
                owner.dependents.remove(&uid);
                if owner.deleting_dependents {
                    work.attempt_to_delete.push(gone.uid.clone());
                }
            }
        }
        for added in owners
            .iter()
            .filter(|o| !old_owners.iter().any(|n| n.uid == o.uid))
        {
            let owner = self.nodes.entry(added.uid.clone()).or_insert_with(|| Node {
                identity: Identity {
                    kind: owner_kind(added),
                    namespace: namespace.clone(),
                    name: added.name.clone(),
                    uid: added.uid.clone(),
                },
                owners: Vec::new(),
                dependents: HashSet::new(),
                deleting_dependents: false,
                being_deleted: false,
                virtual_node: true,
            });
            owner.dependents.insert(uid.clone());
            if owner.virtual_node && !work.attempt_to_delete.contains(&uid) {
                // The owner may not exist: check the dependent against the API.
                work.attempt_to_delete.push(uid.clone());
            }
        }
        if being_deleted && finalizers.iter().any(|f| f == ORPHAN) {
            work.attempt_to_orphan.push(uid.clone());
        }
        if deleting_dependents {
            work.attempt_to_delete.push(uid.clone());
            if started_deleting_dependents {
                work.attempt_to_delete.extend(
                    self.nodes
                        .get(&uid)
                        .map(|n| n.dependents.iter().cloned().collect::<Vec<_>>())
                        .unwrap_or_default(),
                );
            }
        }
        work
    }

    /// Records a deleted object: its dependents are checked (their owner is
    /// gone), owners waiting for their dependents are checked again.
    pub fn remove(&mut self, meta: &ObjectMeta) -> Work {
        let mut work = Work::default();
        let Some(uid) = meta.uid.as_deref() else {
            return work;
        };
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        work.attempt_to_delete
            .extend(node.dependents.iter().cloned());
        if !node.dependents.is_empty() {
            // Keep a virtual node so the remaining dependents stay linked.
            let mut v = node.clone();
            v.virtual_node = true;
            v.owners.clear();
            self.nodes.insert(uid.to_string(), v);
        }
        for owner in &node.owners {
            if let Some(o) = self.nodes.get_mut(&owner.uid) {
                o.dependents.remove(uid);
                if o.deleting_dependents {
                    work.attempt_to_delete.push(owner.uid.clone());
                }
                if o.virtual_node && o.dependents.is_empty() {
                    self.nodes.remove(&owner.uid);
                }
            }
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, owners: &[&str]) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("obj-{uid}")),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|o| OwnerReference {
                        uid: o.to_string(),
                        name: format!("obj-{o}"),
                        block_owner_deletion: Some(true),
                        ..OwnerReference::default()
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn graph_should_check_dependents_of_unknown_and_deleted_owners() {
        let mut g = Graph::default();
        let w = g.upsert(0, &meta("pod", &["rs"]), |_| Some(1));
        assert_eq!(
            w.attempt_to_delete,
            vec!["pod".to_string()],
            "owner not seen yet"
        );
        let w = g.upsert(1, &meta("rs", &[]), |_| None);
        assert!(w.attempt_to_delete.is_empty());
        assert_eq!(g.blocking_dependents("rs").len(), 1);
        let w = g.remove(&meta("rs", &[]));
        assert_eq!(w.attempt_to_delete, vec!["pod".to_string()]);
        let w = g.remove(&meta("pod", &["rs"]));
        assert!(w.attempt_to_delete.is_empty());
        assert!(
            g.get("rs").is_none(),
            "virtual owner without dependents dropped"
        );
    }

    #[test]
    fn graph_should_queue_foreground_and_orphan_deletions() {
        let mut g = Graph::default();
        g.upsert(1, &meta("rs", &[]), |_| None);
        g.upsert(0, &meta("pod", &["rs"]), |_| Some(1));
        let mut deleting = meta("rs", &[]);
        deleting.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            crate::pods::now(),
        ));
        deleting.finalizers = Some(vec![FOREGROUND.into()]);
        let w = g.upsert(1, &deleting, |_| None);
        assert_eq!(
            w.attempt_to_delete,
            vec!["rs".to_string(), "pod".to_string()]
        );
        deleting.finalizers = Some(vec![ORPHAN.into()]);
        let w = g.upsert(1, &deleting, |_| None);
        assert_eq!(w.attempt_to_orphan, vec!["rs".to_string()]);
    }
}
