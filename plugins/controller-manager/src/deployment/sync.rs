//! One Deployment sync: claim ReplicaSets, then pause/scale/roll out, and
//! helpers that write ReplicaSets and the Deployment status.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use kubernel_client::{Api, ClientError, DeleteParams, EventRecorder, Patch};
use serde_json::json;

use super::conditions::{self, paused_condition};
use super::replicas::{desired, max_surge, rs_replicas};
use super::revisions::{
    self, new_replica_set, revision, set_annotations, split_new_old, DESIRED_REPLICAS,
    MAX_REPLICAS, REVISION,
};
use super::DeploymentController;
use crate::controller::{split_key, Action};
use crate::owners::{adopt, claim, release, Claim};
use crate::pods::{controller_ref, now};
use crate::selector;

/// Why a Deployment sync failed. Retrying helps (API errors, hash collisions).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API request failed.
    #[error("deployment {key}: {source}")]
    Api {
        /// The Deployment.
        key: String,
        /// The failed request.
        #[source]
        source: ClientError,
    },
    /// A ReplicaSet of the new template's name exists with another template; the
    /// collision count was raised and the next sync uses a new name.
    #[error("deployment {key}: ReplicaSet {name} exists with another template (hash collision)")]
    Collision {
        /// The Deployment.
        key: String,
        /// The ReplicaSet name taken.
        name: String,
    },
}

impl DeploymentController {
    /// Reconciles the Deployment `key`.
    pub(super) async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(Action::AwaitChange);
        };
        let mut d = (*d).clone();
        let err = |source| SyncError::Api {
            key: key.to_string(),
            source,
        };
        let spec = d.spec.clone().unwrap_or_default();
        if selector::is_empty(&spec.selector) {
            self.recorder.record(
                EventRecorder::reference(&d),
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::AwaitChange);
        }
        let rss = self.claim_replica_sets(&d).await.map_err(err)?;
        if d.metadata.deletion_timestamp.is_some() {
            let (new, old) = split_new_old(&d, rss);
            self.write_status(key, &d, &new, &old, false)
                .await
                .map_err(err)?;
            return Ok(Action::AwaitChange);
        }
        if let Some(c) = paused_condition(&d, now()) {
            let mut status = d.status.clone().unwrap_or_default();
            conditions::set(&mut status, c);
            d = self.replace_status(key, &d, status).await.map_err(err)?;
        }
        if spec.paused.unwrap_or(false) || self.is_scaling_event(&d, &rss) {
            return self.sync_scale(key, &d, rss).await;
        }
        self.rollout(key, &d, rss).await
    }

    /// The ReplicaSets this Deployment controls, adopting and releasing by selector.
    async fn claim_replica_sets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, ClientError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let sel = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let mut owned = Vec::new();
        for rs in self
            .replica_sets
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        {
            let name = rs.metadata.name.clone().unwrap_or_default();
            let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
            match claim(&uid, deleting, &sel, &rs.metadata) {
                Claim::Owned => owned.push((*rs).clone()),
                Claim::Adopt => match adopt(&api, &name, &rs_uid, &controller_ref(d)).await {
                    Ok(adopted) => owned.push(adopted),
                    Err(e) if e.is_not_found() || e.code() == Some(409) => {}
                    Err(e) => return Err(e),
                },
                Claim::Release => match release(&api, &name, &rs_uid, &uid).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() || e.code() == Some(409) => {}
                    Err(e) => return Err(e),
                },
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// True when an active ReplicaSet was last scaled for another replica count.
    fn is_scaling_event(&self, d: &Deployment, rss: &[ReplicaSet]) -> bool {
        let want = desired(d).to_string();
        rss.iter().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                != Some(&want)
        })
    }

    /// The new ReplicaSet (created when `create`), the old ones, with revisions synced.
    pub(super) async fn new_and_old(
        &self,
        key: &str,
        d: &Deployment,
        rss: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        let err = |source| SyncError::Api {
            key: key.to_string(),
            source,
        };
        let (new, old) = split_new_old(d, rss);
        let next_revision = old
            .iter()
            .map(|rs| revision(&rs.metadata))
            .max()
            .unwrap_or(0)
            + 1;
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let new = match new {
            Some(mut rs) => {
                let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
                let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
                let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
                if set_annotations(d, &mut annotations, next_revision, false)
                    || min_ready != rs_min_ready
                {
                    rs.metadata.annotations = Some(annotations);
                    if let Some(s) = rs.spec.as_mut() {
                        s.min_ready_seconds = min_ready;
                    }
                    let name = rs.metadata.name.clone().unwrap_or_default();
                    rs = api.replace(&name, &rs).await.map_err(err)?;
                }
                Some(rs)
            }
            None if create => {
                let replicas = super::replicas::new_rs_new_replicas(d, &old, 0);
                let fresh = new_replica_set(d, replicas, next_revision);
                let name = fresh.metadata.name.clone().unwrap_or_default();
                let created = match api.create(&fresh).await {
                    Ok(rs) => rs,
                    Err(e) if e.is_already_exists() => {
                        let existing = api.get(&name).await.map_err(err)?;
                        let ours = crate::pods::controlled_by(
                            &existing.metadata,
                            d.metadata.uid.as_deref().unwrap_or_default(),
                        );
                        let same = existing
                            .spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .zip(d.spec.as_ref())
                            .is_some_and(|(t, s)| revisions::equal_ignore_hash(t, &s.template));
                        if ours && same {
                            existing
                        } else {
                            let mut status = d.status.clone().unwrap_or_default();
                            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                            self.replace_status(key, d, status).await.map_err(err)?;
                            return Err(SyncError::Collision {
                                key: key.to_string(),
                                name,
                            });
                        }
                    }
                    Err(e) => return Err(err(e)),
                };
                tracing::info!(deployment = %key, replicaset = %name, replicas, "created new ReplicaSet");
                self.recorder.record(
                    EventRecorder::reference(d),
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {name} from 0 to {replicas}"),
                );
                Some(created)
            }
            None => None,
        };
        let current = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .cloned();
        let want = new
            .as_ref()
            .map_or(next_revision - 1, |rs| revision(&rs.metadata))
            .to_string();
        if new.is_some() && current.as_deref() != Some(want.as_str()) {
            let (ns, name) = split_key(key);
            Api::<Deployment>::namespaced(self.client.clone(), ns)
                .patch(
                    name,
                    &Patch::Merge(json!({"metadata": {"annotations": {REVISION: want}}})),
                )
                .await
                .map_err(err)?;
        }
        Ok((new, old))
    }

    /// Scales `rs` to `replicas` (and records the Deployment's size); returns the updated ReplicaSet.
    pub(super) async fn scale(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        replicas: i32,
    ) -> Result<ReplicaSet, ClientError> {
        let want_desired = desired(d).to_string();
        let want_max = (desired(d) + max_surge(d)).to_string();
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let same_annotations = annotations.get(DESIRED_REPLICAS) == Some(&want_desired)
            && annotations.get(MAX_REPLICAS) == Some(&want_max);
        let from = rs_replicas(rs);
        if from == replicas && same_annotations {
            return Ok(rs.clone());
        }
        let name = rs.metadata.name.clone().unwrap_or_default();
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: want_desired, MAX_REPLICAS: want_max},
                         "resourceVersion": rs.metadata.resource_version},
            "spec": {"replicas": replicas},
        });
        let updated = Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
            .patch(&name, &Patch::Merge(patch))
            .await?;
        if from != replicas {
            let verb = if replicas > from { "up" } else { "down" };
            tracing::info!(deployment = ?d.metadata.name, replicaset = %name, from, to = replicas, "scaled ReplicaSet");
            self.recorder.record(
                EventRecorder::reference(d),
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled {verb} replica set {name} from {from} to {replicas}"),
            );
        }
        Ok(updated)
    }

    /// Deletes old ReplicaSets beyond `revisionHistoryLimit`.
    pub(super) async fn cleanup(
        &self,
        d: &Deployment,
        old: &[ReplicaSet],
    ) -> Result<(), ClientError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        for rs in revisions::history_to_delete(d, old) {
            let name = rs.metadata.name.clone().unwrap_or_default();
            tracing::info!(deployment = ?d.metadata.name, replicaset = %name, "deleting old ReplicaSet beyond revisionHistoryLimit");
            api.delete(&name, &DeleteParams::default()).await?;
        }
        Ok(())
    }

    /// Writes the status computed from the ReplicaSets (and, when `progress`, the
    /// Progressing condition); asks for a requeue before the progress deadline.
    pub(super) async fn write_status(
        &self,
        key: &str,
        d: &Deployment,
        new: &Option<ReplicaSet>,
        old: &[ReplicaSet],
        progress: bool,
    ) -> Result<Action, ClientError> {
        let all: Vec<ReplicaSet> = new.iter().cloned().chain(old.iter().cloned()).collect();
        let t = now();
        let mut status = conditions::calculate(d, &all, new.as_ref(), t);
        if progress {
            let name = new.as_ref().and_then(|rs| rs.metadata.name.clone());
            conditions::progress(d, &mut status, name.as_deref(), t);
        }
        let requeue = conditions::time_to_deadline(d, &status, t);
        if d.status.as_ref() != Some(&status) {
            self.replace_status(key, d, status).await?;
        }
        Ok(requeue.map_or(Action::AwaitChange, Action::Requeue))
    }

    /// Replaces the status of `d` (optimistic concurrency on its resourceVersion).
    pub(super) async fn replace_status(
        &self,
        key: &str,
        d: &Deployment,
        status: DeploymentStatus,
    ) -> Result<Deployment, ClientError> {
        let mut updated = d.clone();
        updated.status = Some(status);
        let (ns, name) = split_key(key);
        Api::<Deployment>::namespaced(self.client.clone(), ns)
            .replace_status(name, &updated)
            .await
    }
}
