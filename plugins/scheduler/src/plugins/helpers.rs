//! Helpers shared by in-tree plugins: tolerations, node affinity, score normalisation.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;

/// Whether `t` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
///
/// An empty effect matches every effect, an empty key with `Exists` every key;
/// `Equal` (or no operator) also compares the values.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// The first taint whose effect passes `relevant` and no toleration tolerates.
pub fn find_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    relevant: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| relevant(t))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// True for the effects the TaintToleration filter enforces.
pub fn is_hard_effect(taint: &Taint) -> bool {
    taint.effect == "NoSchedule" || taint.effect == "NoExecute"
}

/// Whether the node matches the pod's `nodeSelector` and required node affinity.
pub fn matches_node_affinity(pod: &PodInfo, node: &NodeInfo) -> bool {
    let labels = node.labels();
    pod.node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && pod
            .required_node_affinity
            .as_ref()
            .is_none_or(|s| s.matches(&node.name, labels))
}

/// Upstream `DefaultNormalizeScore`: scales to `0..=max` by the highest score,
/// reversed (`max - score`) when `reverse`; all `max` (reverse) or unchanged when
/// every score is 0.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0);
    if highest == 0 {
        if reverse {
            scores.fill(max);
        }
        return;
    }
    for s in scores {
        let v = max * *s / highest;
        *s = if reverse { max - v } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
        Toleration {
            key: s(key),
            operator: s(op),
            value: s(value),
            effect: s(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerates_should_follow_upstream_matching() {
        let t = taint("gpu", "true", "NoSchedule");
        assert!(tolerates(
            &toleration("gpu", "Equal", "true", "NoSchedule"),
            &t
        ));
        assert!(tolerates(&toleration("gpu", "", "true", ""), &t));
        assert!(!tolerates(&toleration("gpu", "Equal", "false", ""), &t));
        assert!(tolerates(&toleration("gpu", "Exists", "", ""), &t));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(
            &toleration("gpu", "Exists", "", "NoExecute"),
            &t
        ));
        assert!(!tolerates(&toleration("gpu", "Gt", "1", ""), &t));
    }

    #[test]
    fn default_normalize_score_should_scale_and_reverse() {
        // max·s/highest: 100·2/4 = 50; reversed: 100 - 50 = 50, 100 - 100 = 0.
        let mut s = vec![0, 2, 4];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 2, 4];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, vec![100, 100]);
    }
}
