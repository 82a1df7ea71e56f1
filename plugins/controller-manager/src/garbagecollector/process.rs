//! What the collector does with one object: delete it when its owners are gone,
//! finish a Foreground deletion once no dependent blocks it, orphan dependents.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubernel_client::{ClientError, Patch};
use serde_json::json;
use std::time::Duration;

use super::graph::{Identity, FOREGROUND, ORPHAN};
use super::GarbageCollector;
use crate::controller::Action;

/// How often an owner waiting for its dependents is checked even without events.
const FOREGROUND_RECHECK: Duration = Duration::from_secs(5);

/// Why the collector could not process an object. Retrying helps.
#[derive(Debug, thiserror::Error)]
#[error("garbage collector: {kind} {namespace}/{name} (uid {uid}): {source}")]
pub struct GcError {
    /// Kind of the object.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// The failed request.
    #[source]
    pub source: ClientError,
}

/// What the owner references of an object point at.
#[derive(Default)]
struct Owners {
    solid: Vec<OwnerReference>,
    dangling: Vec<OwnerReference>,
    waiting: Vec<OwnerReference>,
}

fn has(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

impl GarbageCollector {
    fn identity(&self, uid: &str) -> Option<(Identity, bool)> {
        let g = self.graph.lock();
        let n = g.get(uid)?;
        Some((n.identity.clone(), n.virtual_node))
    }

    fn error(&self, id: &Identity, source: ClientError) -> GcError {
        GcError {
            kind: id
                .kind
                .and_then(|k| self.kinds.get(k))
                .map_or("?", |k| k.kind())
                .to_string(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            uid: id.uid.clone(),
            source,
        }
    }

    /// Deletes `uid` when none of its owners exists any more (or finishes its Foreground deletion).
    pub(super) async fn attempt_to_delete(&self, uid: &str) -> Result<Action, GcError> {
        let Some((id, virtual_node)) = self.identity(uid) else {
            return Ok(Action::AwaitChange);
        };
        let Some(kind) = id.kind.and_then(|k| self.kinds.get(k)).cloned() else {
            return Ok(Action::AwaitChange);
        };
        if virtual_node {
            return Ok(Action::AwaitChange);
        }
        let err = |e| self.error(&id, e);
        let Some(latest) = kind.get(&id.namespace, &id.name).await.map_err(err)? else {
            return Ok(Action::AwaitChange);
        };
        if latest.uid.as_deref() != Some(uid) {
            return Ok(Action::AwaitChange);
        }
        if latest.deletion_timestamp.is_some() {
            if !has(&latest, FOREGROUND) {
                return Ok(Action::AwaitChange);
            }
            return self
                .process_deleting_dependents(&id, &latest)
                .await
                .map_err(err);
        }
        let refs = latest.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(Action::AwaitChange);
        }
        let owners = self.classify(&id, &refs).await.map_err(err)?;
        if !owners.solid.is_empty() {
            if owners.dangling.is_empty() && owners.waiting.is_empty() {
                return Ok(Action::AwaitChange);
            }
            // Keep the live owners; drop dangling references, unblock waiting owners.
            let mut patch: Vec<serde_json::Value> = owners
                .dangling
                .iter()
                .map(|o| json!({"$patch": "delete", "uid": o.uid}))
                .collect();
            patch.extend(owners.waiting.iter().map(|o| {
                let mut o = o.clone();
                o.block_owner_deletion = Some(false);
                json!(o)
            }));
            tracing::info!(kind = kind.kind(), object = %id.name, dangling = owners.dangling.len(), "removing dangling owner references");
            let body = json!({"metadata": {"ownerReferences": patch, "uid": uid}});
            kind.patch(&id.namespace, &id.name, Patch::Strategic(body))
                .await
                .map_err(err)?;
            return Ok(Action::AwaitChange);
        }
        let has_dependents = !self.graph.lock().dependents(uid).is_empty();
        let policy = if !owners.waiting.is_empty() && has_dependents {
            "Foreground"
        } else if has(&latest, ORPHAN) {
            "Orphan"
        } else if has(&latest, FOREGROUND) || !owners.waiting.is_empty() {
            "Foreground"
        } else {
            "Background"
        };
        tracing::info!(kind = kind.kind(), namespace = %id.namespace, object = %id.name, policy, "deleting object whose owners are gone");
        kind.delete(&id.namespace, &id.name, uid, policy)
            .await
            .map_err(err)?;
        Ok(Action::AwaitChange)
    }

    /// Sorts the owner references of `id` into existing, missing and waiting-for-dependents owners.
    async fn classify(
        &self,
        id: &Identity,
        refs: &[OwnerReference],
    ) -> Result<Owners, ClientError> {
        let mut owners = Owners::default();
        for r in refs {
            let Some(kind) = self.kind_of(r).and_then(|k| self.kinds.get(k)).cloned() else {
                // A type the collector does not watch: never assume it is gone.
                owners.solid.push(r.clone());
                continue;
            };
            let ns = if kind.namespaced() {
                id.namespace.as_str()
            } else {
                ""
            };
            match kind.get(ns, &r.name).await? {
                Some(o) if o.uid.as_deref() == Some(r.uid.as_str()) => {
                    if o.deletion_timestamp.is_some() && has(&o, FOREGROUND) {
                        owners.waiting.push(r.clone());
                    } else {
                        owners.solid.push(r.clone());
                    }
                }
                _ => owners.dangling.push(r.clone()),
            }
        }
        Ok(owners)
    }

    /// Foreground: removes `foregroundDeletion` once no dependent blocks the owner,
    /// else asks the blocking dependents to go first.
    async fn process_deleting_dependents(
        &self,
        id: &Identity,
        latest: &ObjectMeta,
    ) -> Result<Action, ClientError> {
        let blocking = self.graph.lock().blocking_dependents(&id.uid);
        if blocking.is_empty() {
            let Some(kind) = id.kind.and_then(|k| self.kinds.get(k)).cloned() else {
                return Ok(Action::AwaitChange);
            };
            let rest: Vec<&String> = latest
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FOREGROUND)
                .collect();
            tracing::info!(kind = kind.kind(), object = %id.name, "dependents gone: finishing foreground deletion");
            let body = json!({"metadata": {"finalizers": rest, "resourceVersion": latest.resource_version}});
            kind.patch(&id.namespace, &id.name, Patch::Merge(body))
                .await?;
            return Ok(Action::AwaitChange);
        }
        for dep in blocking.iter().filter(|d| !d.being_deleted) {
            self.attempt_to_delete.add(dep.identity.uid.clone());
        }
        Ok(Action::Requeue(FOREGROUND_RECHECK))
    }

    /// Orphan: removes the owner's reference from every dependent, then the `orphan` finalizer.
    pub(super) async fn attempt_to_orphan(&self, uid: &str) -> Result<Action, GcError> {
        let Some((id, _)) = self.identity(uid) else {
            return Ok(Action::AwaitChange);
        };
        let Some(kind) = id.kind.and_then(|k| self.kinds.get(k)).cloned() else {
            return Ok(Action::AwaitChange);
        };
        let err = |e| self.error(&id, e);
        let Some(latest) = kind.get(&id.namespace, &id.name).await.map_err(err)? else {
            return Ok(Action::AwaitChange);
        };
        if latest.uid.as_deref() != Some(uid)
            || latest.deletion_timestamp.is_none()
            || !has(&latest, ORPHAN)
        {
            return Ok(Action::AwaitChange);
        }
        let dependents = self.graph.lock().dependents(uid);
        for dep in dependents {
            let Some(dkind) = dep.identity.kind.and_then(|k| self.kinds.get(k)).cloned() else {
                continue;
            };
            let body = json!({"metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": uid}],
                "uid": dep.identity.uid,
            }});
            match dkind
                .patch(
                    &dep.identity.namespace,
                    &dep.identity.name,
                    Patch::Strategic(body),
                )
                .await
            {
                Ok(()) => {
                    tracing::info!(owner = %id.name, dependent = %dep.identity.name, "orphaned dependent")
                }
                Err(e) if e.code() == Some(409) => {}
                Err(e) => return Err(self.error(&dep.identity, e)),
            }
        }
        let rest: Vec<&String> = latest
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != ORPHAN)
            .collect();
        let body =
            json!({"metadata": {"finalizers": rest, "resourceVersion": latest.resource_version}});
        kind.patch(&id.namespace, &id.name, Patch::Merge(body))
            .await
            .map_err(err)?;
        Ok(Action::AwaitChange)
    }
}
