//! The rollout strategies (RollingUpdate, Recreate) and proportional scaling of a
//! paused or resized Deployment.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::conditions;
use super::replicas::{
    available_above_minimum, desired, is_rolling, max_surge, new_rs_new_replicas,
    old_scale_down_budget, rs_replicas,
};
use super::sync::SyncError;
use super::DeploymentController;
use crate::controller::Action;
use crate::pods::{controlled_by, now};

impl DeploymentController {
    /// Moves the rollout one step with the Deployment's strategy.
    pub(super) async fn rollout(
        &self,
        key: &str,
        d: &Deployment,
        rss: Vec<ReplicaSet>,
    ) -> Result<Action, SyncError> {
        let err = |source| SyncError::Api {
            key: key.to_string(),
            source,
        };
        if !is_rolling(d) {
            return self.recreate(key, d, rss).await;
        }
        let (new, mut old) = self.new_and_old(key, d, rss, true).await?;
        let mut all: Vec<ReplicaSet> = new.iter().cloned().chain(old.iter().cloned()).collect();
        // Scale the new ReplicaSet up within maxSurge.
        if let Some(rs) = &new {
            let target = if rs_replicas(rs) > desired(d) {
                desired(d)
            } else {
                new_rs_new_replicas(d, &all, rs_replicas(rs))
            };
            if target != rs_replicas(rs) {
                let scaled = self.scale(d, rs, target).await.map_err(err)?;
                return self
                    .write_status(key, d, &Some(scaled), &old, true)
                    .await
                    .map_err(err);
            }
        }
        // Scale old ReplicaSets down within maxUnavailable: unhealthy pods first.
        let mut budget = old_scale_down_budget(d, &all, new.as_ref());
        let mut scaled_down = false;
        if budget > 0 && old.iter().any(|rs| rs_replicas(rs) > 0) {
            old.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
            for rs in old.iter_mut() {
                let available = rs
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0);
                let unhealthy = (rs_replicas(rs) - available).min(budget);
                if unhealthy > 0 {
                    *rs = self
                        .scale(d, rs, rs_replicas(rs) - unhealthy)
                        .await
                        .map_err(err)?;
                    budget -= unhealthy;
                    scaled_down = true;
                }
            }
            all = new.iter().cloned().chain(old.iter().cloned()).collect();
            let mut healthy = available_above_minimum(d, &all).min(budget.max(0));
            for rs in old.iter_mut() {
                let step = rs_replicas(rs).min(healthy);
                if step > 0 {
                    *rs = self
                        .scale(d, rs, rs_replicas(rs) - step)
                        .await
                        .map_err(err)?;
                    healthy -= step;
                    scaled_down = true;
                }
            }
        }
        if !scaled_down {
            let status = conditions::calculate(d, &all, new.as_ref(), now());
            if conditions::is_complete(d, &status) {
                self.cleanup(d, &old).await.map_err(err)?;
            }
        }
        self.write_status(key, d, &new, &old, true)
            .await
            .map_err(err)
    }

    /// Recreate: every old pod goes before the new ReplicaSet is scaled up.
    async fn recreate(
        &self,
        key: &str,
        d: &Deployment,
        rss: Vec<ReplicaSet>,
    ) -> Result<Action, SyncError> {
        let err = |source| SyncError::Api {
            key: key.to_string(),
            source,
        };
        let (new, mut old) = self.new_and_old(key, d, rss.clone(), false).await?;
        let mut scaled = false;
        for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            *rs = self.scale(d, rs, 0).await.map_err(err)?;
            scaled = true;
        }
        if scaled || self.old_pods_running(&old) {
            return self
                .write_status(key, d, &new, &old, true)
                .await
                .map_err(err);
        }
        let new = match new {
            Some(rs) => Some(rs),
            None => self.new_and_old(key, d, rss, true).await?.0,
        };
        let new = match new {
            Some(rs) if rs_replicas(&rs) != desired(d) => {
                Some(self.scale(d, &rs, desired(d)).await.map_err(err)?)
            }
            other => other,
        };
        let all: Vec<ReplicaSet> = new.iter().cloned().chain(old.iter().cloned()).collect();
        if conditions::is_complete(d, &conditions::calculate(d, &all, new.as_ref(), now())) {
            self.cleanup(d, &old).await.map_err(err)?;
        }
        self.write_status(key, d, &new, &old, true)
            .await
            .map_err(err)
    }

    /// True while a pod of an old ReplicaSet still exists and has not finished.
    fn old_pods_running(&self, old: &[ReplicaSet]) -> bool {
        old.iter().any(|rs| {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let ns = rs.metadata.namespace.clone();
            !self
                .pods
                .filter(|p| {
                    p.metadata.namespace == ns
                        && controlled_by(&p.metadata, &uid)
                        && !matches!(
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded" | "Failed")
                        )
                })
                .is_empty()
        })
    }

    /// A paused or resized Deployment: resize its ReplicaSets (proportionally
    /// during a rollout) without rolling out a new template.
    pub(super) async fn sync_scale(
        &self,
        key: &str,
        d: &Deployment,
        rss: Vec<ReplicaSet>,
    ) -> Result<Action, SyncError> {
        let err = |source| SyncError::Api {
            key: key.to_string(),
            source,
        };
        let (mut new, mut old) = self.new_and_old(key, d, rss, false).await?;
        let want = desired(d);
        let active: Vec<usize> = old
            .iter()
            .enumerate()
            .filter(|(_, rs)| rs_replicas(rs) > 0)
            .map(|(i, _)| i)
            .collect();
        let new_active = new.as_ref().is_some_and(|rs| rs_replicas(rs) > 0);
        if active.len() + usize::from(new_active) <= 1 {
            // One active (or no active: the newest) ReplicaSet takes every replica.
            if new_active || active.is_empty() {
                if let Some(rs) = new.as_mut() {
                    *rs = self.scale(d, rs, want).await.map_err(err)?;
                } else if let Some(rs) = old
                    .iter_mut()
                    .max_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0))
                {
                    *rs = self.scale(d, rs, want).await.map_err(err)?;
                }
            } else if let Some(&i) = active.first() {
                old[i] = self.scale(d, &old[i], want).await.map_err(err)?;
            }
        } else if is_rolling(d) {
            let total: i32 = old.iter().chain(new.iter()).map(rs_replicas).sum();
            let to_add = want + max_surge(d) - total;
            if to_add != 0 && total > 0 {
                let mut left = to_add;
                let mut targets: Vec<&mut ReplicaSet> = old
                    .iter_mut()
                    .chain(new.iter_mut())
                    .filter(|rs| rs_replicas(rs) > 0)
                    .collect();
                targets.sort_by_key(|rs| std::cmp::Reverse(rs_replicas(rs)));
                let mut sizes: Vec<i32> = targets.iter().map(|rs| rs_replicas(rs)).collect();
                for size in sizes.iter_mut() {
                    let part = (i64::from(*size) * i64::from(to_add) / i64::from(total)) as i32;
                    *size = (*size + part).max(0);
                    left -= part;
                }
                if let Some(first) = sizes.first_mut() {
                    *first = (*first + left).max(0);
                }
                for (rs, size) in targets.into_iter().zip(sizes) {
                    *rs = self.scale(d, rs, size).await.map_err(err)?;
                }
            }
        }
        if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(d, &old).await.map_err(err)?;
        }
        self.write_status(key, d, &new, &old, false)
            .await
            .map_err(err)
    }
}
