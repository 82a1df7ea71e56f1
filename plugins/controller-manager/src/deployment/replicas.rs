//! Replica arithmetic of a rollout: maxSurge and maxUnavailable, how far the new
//! ReplicaSet may grow and how far the old ones may shrink.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `spec.replicas` of a Deployment (default 1).
pub fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// True for the RollingUpdate strategy (the default).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// An int or a percentage of `total`, rounded up or down.
fn resolve(value: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let p: i64 = s
                .trim_end_matches('%')
                .parse()
                .unwrap_or(i64::from(default_percent));
            let scaled = p * i64::from(total);
            (if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            }) as i32
        }
        None => {
            let scaled = i64::from(default_percent) * i64::from(total);
            (if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            }) as i32
        }
    }
}

fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let total = desired(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), 25, total, true).max(0);
    let mut unavailable = resolve(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        25,
        total,
        false,
    )
    .max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(total))
}

/// Pods a rolling update may run above `replicas` (maxSurge, rounded up).
pub fn max_surge(d: &Deployment) -> i32 {
    surge_and_unavailable(d).0
}

/// Pods a rolling update may have unavailable (maxUnavailable, rounded down; 1
/// when both are 0; at most `replicas`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    surge_and_unavailable(d).1
}

/// How many replicas the new ReplicaSet (`new_replicas` now) should have, given
/// every ReplicaSet's `spec.replicas` (upstream `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_replicas: i32) -> i32 {
    if !is_rolling(d) {
        return desired(d);
    }
    let current: i32 = all.iter().map(rs_replicas).sum();
    let max_total = desired(d) + max_surge(d);
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(desired(d) - new_replicas).max(0);
    new_replicas + up
}

/// How many old pods may be scaled down now (upstream `reconcileOldReplicaSets`):
/// keep `replicas - maxUnavailable` available, counting the new ReplicaSet's
/// unavailable pods against the budget.
pub fn old_scale_down_budget(d: &Deployment, all: &[ReplicaSet], new: Option<&ReplicaSet>) -> i32 {
    let all_pods: i32 = all.iter().map(rs_replicas).sum();
    let min_available = desired(d) - max_unavailable(d);
    let new_unavailable = new.map_or(0, |rs| {
        rs_replicas(rs)
            - rs.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
    });
    all_pods - min_available - new_unavailable
}

/// Available pods above the minimum, which old ReplicaSets may give up.
pub fn available_above_minimum(d: &Deployment, all: &[ReplicaSet]) -> i32 {
    let available: i32 = all
        .iter()
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
        })
        .sum();
    (available - (desired(d) - max_unavailable(d))).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {}, "template": {},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}
        }))
        .expect("deployment")
    }

    fn rs(replicas: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "rs"},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "availableReplicas": available}
        }))
        .expect("rs")
    }

    #[test]
    fn percentages_should_round_surge_up_and_unavailable_down() {
        let d = deployment(10, json!("25%"), json!("25%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
        let d = deployment(3, json!(0), json!(0));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 1));
    }

    #[test]
    fn new_replica_set_should_grow_by_at_most_max_surge() {
        let d = deployment(3, json!(1), json!(0));
        let all = [rs(3, 3), rs(0, 0)];
        assert_eq!(new_rs_new_replicas(&d, &all, 0), 1);
        let all = [rs(3, 3), rs(1, 0)];
        assert_eq!(
            new_rs_new_replicas(&d, &all, 1),
            1,
            "at 4 = 3 + maxSurge already"
        );
    }

    #[test]
    fn old_replica_sets_should_shrink_only_within_max_unavailable() {
        let d = deployment(3, json!(1), json!(0));
        let new = rs(1, 0);
        let all = [rs(3, 3), new.clone()];
        assert_eq!(old_scale_down_budget(&d, &all, Some(&new)), 0);
        let new = rs(1, 1);
        let all = [rs(3, 3), new.clone()];
        assert_eq!(old_scale_down_budget(&d, &all, Some(&new)), 1);
        assert_eq!(available_above_minimum(&d, &all), 1);
    }
}
