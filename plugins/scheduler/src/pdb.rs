//! PodDisruptionBudgets as preemption sees them (upstream `filterPodsWithPDBViolation`).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::pod_info::PodInfo;
use crate::selectors::LabelSelector;

/// A PodDisruptionBudget compiled for preemption.
#[derive(Clone, Debug)]
pub struct PdbInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.selector`; a null or empty selector matches nothing, as upstream.
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed` (0 until the disruption controller sets it).
    pub disruptions_allowed: i32,
    /// `status.disruptedPods` names: evictions the apiserver already counted.
    pub disrupted_pods: BTreeSet<String>,
}

impl PdbInfo {
    /// Compiles the API object.
    pub fn new(pdb: &PodDisruptionBudget) -> Self {
        let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let empty = sel.is_none_or(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        let status = pdb.status.as_ref();
        PdbInfo {
            namespace: pdb
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pdb.metadata.name.clone().unwrap_or_default(),
            selector: if empty {
                LabelSelector::nothing()
            } else {
                LabelSelector::new(sel)
            },
            disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted_pods: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn covers(&self, pod: &PodInfo) -> bool {
        self.namespace == pod.namespace
            && !pod.labels().is_empty()
            && self.selector.matches(pod.labels())
            && !self.disrupted_pods.contains(&pod.name)
    }
}

/// Splits `pods` (most important first) into those whose eviction would violate a
/// budget and the others, spending each budget's allowed disruptions in order
/// (upstream `filterPodsWithPDBViolation`).
pub fn split_by_pdb_violation(
    pods: Vec<Arc<PodInfo>>,
    pdbs: &[Arc<PdbInfo>],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    let (mut violating, mut other) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violated = false;
        for (pdb, left) in pdbs.iter().zip(allowed.iter_mut()) {
            if pdb.covers(&pod) {
                *left -= 1;
                violated |= *left < 0;
            }
        }
        if violated {
            violating.push(pod);
        } else {
            other.push(pod);
        }
    }
    (violating, other)
}
