//! One ReplicaSet sync: claim pods, create or delete the difference (slow-start
//! batches, expectations), write the status.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubernel_client::{Api, ClientError, DeleteParams, EventRecorder};

use super::{compute_status, deletion_order, ReplicaSetController, BURST_REPLICAS};
use crate::controller::{key_of, split_key, Action};
use crate::owners::{adopt, claim, release, Claim};
use crate::pods::{controller_ref, is_active};
use crate::selector::{self, SelectorError};

/// Why a ReplicaSet sync failed; retrying helps unless the object itself is invalid.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API request failed.
    #[error("replicaset {key}: {source}")]
    Api {
        /// The ReplicaSet.
        key: String,
        /// The failed request.
        #[source]
        source: ClientError,
    },
    /// The selector is invalid.
    #[error("replicaset {key}: {source}")]
    Selector {
        /// The ReplicaSet.
        key: String,
        /// What is wrong.
        #[source]
        source: SelectorError,
    },
}

impl ReplicaSetController {
    /// Reconciles the ReplicaSet `key`.
    pub(super) async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        let Some(rs) = self.replica_sets.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::AwaitChange);
        };
        let api_err = |source| SyncError::Api {
            key: key.to_string(),
            source,
        };
        let spec = rs.spec.clone().unwrap_or_default();
        if let Err(source) = selector::validate(&spec.selector) {
            self.recorder.record(
                EventRecorder::reference(&*rs),
                "Warning",
                "SelectorParsingFailed",
                &source.to_string(),
            );
            return Err(SyncError::Selector {
                key: key.to_string(),
                source,
            });
        }
        let needs_sync = self.expectations.satisfied(key);
        let pods = self.claim_pods(&rs).await.map_err(api_err)?;
        let active: Vec<Arc<Pod>> = pods.into_iter().filter(|p| is_active(p)).collect();
        let manage = if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            self.manage_replicas(key, &rs, &active).await
        } else {
            Ok(())
        };
        let status = compute_status(&rs, &active, manage.as_ref().err(), crate::pods::now());
        let (ready, available) = (status.ready_replicas, status.available_replicas);
        if rs.status.as_ref() != Some(&status) {
            let mut updated = (*rs).clone();
            updated.status = Some(status);
            let (ns, name) = split_key(key);
            Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                .replace_status(name, &updated)
                .await
                .map_err(api_err)?;
        }
        manage.map_err(api_err)?;
        let replicas = spec.replicas.unwrap_or(1);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0 && ready == Some(replicas) && available != Some(replicas) {
            return Ok(Action::Requeue(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::AwaitChange)
    }

    /// The pods this ReplicaSet controls after adopting matching orphans and
    /// releasing pods it no longer selects.
    async fn claim_pods(&self, rs: &ReplicaSet) -> Result<Vec<Arc<Pod>>, ClientError> {
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let sel = rs
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut owned = Vec::new();
        let mut fresh_checked = false;
        for pod in self
            .pods
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            match claim(&uid, deleting, &sel, &pod.metadata) {
                Claim::Owned => owned.push(pod),
                Claim::Adopt => {
                    // Adopt only if the ReplicaSet still exists as cached (upstream `canAdopt`).
                    if !fresh_checked {
                        let fresh = Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
                            .get_opt(rs.metadata.name.as_deref().unwrap_or_default())
                            .await?;
                        let same = fresh.as_ref().is_some_and(|f| {
                            f.metadata.uid.as_deref() == Some(uid.as_str())
                                && f.metadata.deletion_timestamp.is_none()
                        });
                        if !same {
                            return Ok(owned);
                        }
                        fresh_checked = true;
                    }
                    match adopt(&api, &name, &pod_uid, &controller_ref(rs)).await {
                        Ok(p) => {
                            tracing::info!(replicaset = %key_of(rs), pod = %name, "adopted pod");
                            owned.push(Arc::new(p));
                        }
                        Err(e) if e.is_not_found() || e.code() == Some(409) => {}
                        Err(e) => return Err(e),
                    }
                }
                Claim::Release => match release(&api, &name, &pod_uid, &uid).await {
                    Ok(_) => tracing::info!(replicaset = %key_of(rs), pod = %name, "released pod"),
                    Err(e) if e.is_not_found() || e.code() == Some(409) => {}
                    Err(e) => return Err(e),
                },
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Creates or deletes pods so that `active` has `spec.replicas` pods.
    async fn manage_replicas(
        &self,
        key: &str,
        rs: &ReplicaSet,
        active: &[Arc<Pod>],
    ) -> Result<(), ClientError> {
        let spec = rs.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if active.len() < want {
            let missing = (want - active.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, missing);
            let pod = pod_from_template(rs);
            let (created, error) = slow_start(missing, || api.create(&pod)).await;
            for _ in created..missing {
                self.expectations.creation_observed(key);
            }
            tracing::debug!(replicaset = %key, created, "created pods");
            if created > 0 {
                self.recorder.record(
                    EventRecorder::reference(rs),
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created {created} pod(s)"),
                );
            }
            if let Some(e) = error {
                self.recorder.record(
                    EventRecorder::reference(rs),
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                );
                return Err(e);
            }
        } else if active.len() > want {
            let extra = (active.len() - want).min(BURST_REPLICAS);
            let victims: Vec<Arc<Pod>> = deletion_order(active).into_iter().take(extra).collect();
            self.expectations
                .expect_deletions(key, victims.iter().map(|p| key_of(&**p)));
            let results = join_all(victims.iter().map(|p| {
                let api = api.clone();
                async move {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    (p, api.delete(&name, &DeleteParams::default()).await)
                }
            }))
            .await;
            let mut first_error = None;
            for (pod, result) in results {
                match result {
                    Ok(true) => {
                        self.recorder.record(
                            EventRecorder::reference(rs),
                            "Normal",
                            "SuccessfulDelete",
                            &format!(
                                "Deleted pod: {}",
                                pod.metadata.name.as_deref().unwrap_or_default()
                            ),
                        );
                    }
                    Ok(false) => self.expectations.deletion_observed(key, &key_of(&**pod)),
                    Err(e) => {
                        self.expectations.deletion_observed(key, &key_of(&**pod));
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A new pod of `rs`'s template, named `<rs>-<random>` by the apiserver.
fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                rs.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Runs `count` calls of `call` in batches of 1, 2, 4, ... (upstream
/// `slowStartBatch`), stopping after the first batch with a failure; returns how
/// many succeeded and the first error.
pub async fn slow_start<F, Fut, T>(count: usize, call: F) -> (usize, Option<ClientError>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut done = 0;
    let mut batch = count.min(1);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| call())).await;
        let mut error = None;
        for r in results {
            match r {
                Ok(_) => done += 1,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        if error.is_some() {
            return (done, error);
        }
        batch = (batch * 2).min(count - done);
    }
    (done, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn slow_start_should_double_batches_and_stop_after_a_failed_one() {
        let calls = AtomicUsize::new(0);
        let (done, err) = slow_start(10, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ClientError>(())
        })
        .await;
        assert_eq!((done, err.is_none()), (10, true));
        let calls = AtomicUsize::new(0);
        let (done, err) = slow_start(10, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n >= 4 {
                    Err(ClientError::Config("quota".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // Batches 1, 2, then 4 of which only the first succeeds: 4 done, then stop.
        assert_eq!(done, 4);
        assert!(err.is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }
}
