//! A Deployment's status: replica counts from its ReplicaSets and the
//! `Available` and `Progressing` conditions (progressDeadlineSeconds, pause).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::replicas::{desired, max_unavailable, rs_replicas};

/// Reason of a Progressing condition once the new ReplicaSet is available.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Reason of a Progressing=False condition after progressDeadlineSeconds without progress.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Reason of the Progressing condition while paused.
const PAUSED: &str = "DeploymentPaused";

/// A condition dated `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`, if any.
pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Sets `c` (upstream `SetDeploymentCondition`): nothing changes when status and
/// reason are the same; the transition time is kept while the status is.
pub fn set(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(old) = conditions.iter().find(|o| o.type_ == c.type_) {
        if old.status == c.status && old.reason == c.reason {
            return;
        }
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    conditions.retain(|o| o.type_ != c.type_);
    conditions.push(c);
}

/// Removes the condition of `type_`.
pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// Counts from the ReplicaSets and the `Available` condition (upstream `calculateStatus`).
pub fn calculate(
    d: &Deployment,
    all: &[ReplicaSet],
    new: Option<&ReplicaSet>,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(f).sum::<i32>();
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let available = sum(&|rs| st(rs).available_replicas.unwrap_or(0));
    let spec_total = sum(&rs_replicas);
    let mut status = d.status.clone().unwrap_or_default();
    status.observed_generation = d.metadata.generation;
    status.replicas = Some(sum(&|rs| st(rs).replicas));
    status.updated_replicas = Some(new.map_or(0, |rs| st(rs).replicas));
    status.ready_replicas = Some(sum(&|rs| st(rs).ready_replicas.unwrap_or(0)));
    status.available_replicas = Some(available);
    status.unavailable_replicas = Some((spec_total - available).max(0));
    if available >= desired(d) - max_unavailable(d) {
        set(
            &mut status,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set(
            &mut status,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

/// `spec.progressDeadlineSeconds` when set and not "forever".
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// True when every desired replica is updated and available (upstream `DeploymentComplete`).
pub fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = desired(d);
    s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.observed_generation >= d.metadata.generation
}

/// True when `new` shows progress over the Deployment's recorded status.
fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    n(new.updated_replicas) > n(old.updated_replicas)
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
        || n(old.replicas) - n(old.updated_replicas) > n(new.replicas) - n(new.updated_replicas)
}

/// Updates the `Progressing` condition of `status` (upstream `syncRolloutStatus`).
pub fn progress(
    d: &Deployment,
    status: &mut DeploymentStatus,
    new_rs: Option<&str>,
    now: jiff::Timestamp,
) {
    let Some(deadline) = progress_deadline(d) else {
        remove(status, "Progressing");
        return;
    };
    let name = d.metadata.name.clone().unwrap_or_default();
    let recorded = d.status.clone().unwrap_or_default();
    let current = get(&recorded, "Progressing").cloned();
    let rollout_done = status.replicas == status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if rollout_done {
        return;
    }
    let subject = |what: &str| match new_rs {
        Some(rs) => format!("ReplicaSet {rs:?} {what}"),
        None => format!("Deployment {name:?} {what}"),
    };
    if is_complete(d, status) {
        set(
            status,
            condition(
                "Progressing",
                "True",
                NEW_RS_AVAILABLE,
                subject("has successfully progressed."),
                now,
            ),
        );
    } else if is_progressing(d, status) {
        let mut c = condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            subject("is progressing."),
            now,
        );
        if let Some(old) = current.as_ref().filter(|o| o.status == "True") {
            c.last_transition_time = old.last_transition_time.clone();
        }
        remove(status, "Progressing");
        set(status, c);
    } else if timed_out(current.as_ref(), deadline, now) {
        set(
            status,
            condition(
                "Progressing",
                "False",
                TIMED_OUT,
                subject("has timed out progressing."),
                now,
            ),
        );
    }
}

/// True when the last progress is older than `deadline` seconds.
fn timed_out(current: Option<&DeploymentCondition>, deadline: i32, now: jiff::Timestamp) -> bool {
    let Some(c) = current else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| now.duration_since(t.0).as_secs() > i64::from(deadline)),
    }
}

/// How long until the rollout would time out, when it is still progressing.
pub fn time_to_deadline(
    d: &Deployment,
    status: &DeploymentStatus,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let deadline = progress_deadline(d)?;
    let c = get(status, "Progressing")?;
    if c.status != "True" || c.reason.as_deref() == Some(NEW_RS_AVAILABLE) || is_complete(d, status)
    {
        return None;
    }
    let since = c.last_update_time.as_ref()?.0;
    let left = i64::from(deadline) - now.duration_since(since).as_secs();
    Some(std::time::Duration::from_secs(left.max(0) as u64 + 1))
}

/// The Progressing condition for a paused or resumed Deployment, when it must
/// change (upstream `checkPausedConditions`).
pub fn paused_condition(d: &Deployment, now: jiff::Timestamp) -> Option<DeploymentCondition> {
    progress_deadline(d)?;
    let recorded = d.status.clone().unwrap_or_default();
    let current = get(&recorded, "Progressing");
    let reason = current.and_then(|c| c.reason.as_deref());
    if reason == Some(TIMED_OUT) {
        return None;
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    match (paused, reason == Some(PAUSED)) {
        (true, false) => Some(condition(
            "Progressing",
            "Unknown",
            PAUSED,
            "Deployment is paused".into(),
            now,
        )),
        (false, true) => Some(condition(
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            now,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}, "progressDeadlineSeconds": 10},
            "status": status
        }))
        .expect("deployment")
    }

    #[test]
    fn progress_should_time_out_after_the_deadline_without_progress() {
        let t0: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().expect("t0");
        let d = deployment(
            json!({"replicas": 2, "updatedReplicas": 1, "availableReplicas": 1, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
             "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}),
        );
        let mut s = d.status.clone().unwrap_or_default();
        s.observed_generation = Some(2);
        progress(
            &d,
            &mut s,
            Some("web-1"),
            t0 + jiff::SignedDuration::from_secs(5),
        );
        assert_eq!(
            get(&s, "Progressing").and_then(|c| c.reason.as_deref()),
            Some("ReplicaSetUpdated")
        );
        progress(
            &d,
            &mut s,
            Some("web-1"),
            t0 + jiff::SignedDuration::from_secs(11),
        );
        let c = get(&s, "Progressing").cloned().unwrap_or_default();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some(TIMED_OUT))
        );
    }

    #[test]
    fn progress_should_report_a_complete_rollout() {
        let now = crate::pods::now();
        let d = deployment(json!({}));
        let mut s = DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..DeploymentStatus::default()
        };
        progress(&d, &mut s, Some("web-1"), now);
        assert_eq!(
            get(&s, "Progressing").and_then(|c| c.reason.as_deref()),
            Some(NEW_RS_AVAILABLE)
        );
    }
}
