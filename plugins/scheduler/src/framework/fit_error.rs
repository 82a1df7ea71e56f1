//! The kube-scheduler `FitError` message: `0/5 nodes are available: 3 Insufficient cpu, ...`.

use std::collections::BTreeMap;
use std::fmt;

use super::Status;

/// Why a pod fits no node: the inputs of the `FailedScheduling` message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitError {
    /// Number of nodes in the cluster.
    pub num_all_nodes: usize,
    /// The PreFilter rejection, when the cycle stopped there.
    pub pre_filter_msg: Option<String>,
    /// How many nodes gave each reason (ignored when `pre_filter_msg` is set).
    pub reasons: BTreeMap<String, usize>,
    /// The PostFilter (preemption) message, if any.
    pub post_filter_msg: Option<String>,
}

impl FitError {
    /// Counts the reasons of every rejected node's status.
    pub fn new<'a>(num_all_nodes: usize, statuses: impl Iterator<Item = &'a Status>) -> Self {
        let mut reasons = BTreeMap::new();
        for s in statuses {
            for r in s.reasons() {
                *reasons.entry(r.to_string()).or_default() += 1;
            }
        }
        FitError {
            num_all_nodes,
            reasons,
            ..Default::default()
        }
    }
}

impl fmt::Display for FitError {
    /// Upstream `FitError.Error()`: `"0/N nodes are available:"`, then `" <msg>."` for
    /// the PreFilter message or the sorted `"<count> <reason>"` list, then for the
    /// PostFilter message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        match &self.pre_filter_msg {
            Some(m) => write!(f, " {m}.")?,
            None if !self.reasons.is_empty() => {
                let mut items: Vec<String> = self
                    .reasons
                    .iter()
                    .map(|(r, n)| format!("{n} {r}"))
                    .collect();
                items.sort();
                write!(f, " {}.", items.join(", "))?;
            }
            None => {}
        }
        if let Some(m) = &self.post_filter_msg {
            write!(f, " {m}.")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_should_format_like_kube_scheduler() {
        let statuses = [
            Status::unresolvable("node(s) had untolerated taint {default-worker: true}"),
            Status::unresolvable("node(s) had untolerated taint {default-worker: true}"),
            Status::unschedulable("Insufficient cpu"),
            Status::unschedulable("Insufficient cpu"),
            Status::unschedulable("Insufficient cpu"),
            Status::unschedulable("Insufficient cpu"),
            Status::unresolvable(
                "node(s) had untolerated taint {node-role.kubernetes.io/master: }",
            ),
            Status::unresolvable(
                "node(s) had untolerated taint {node-role.kubernetes.io/master: }",
            ),
            Status::unresolvable(
                "node(s) had untolerated taint {node-role.kubernetes.io/master: }",
            ),
        ];
        let mut e = FitError::new(9, statuses.iter());
        e.post_filter_msg = Some("preemption: 0/9 nodes are available: 4 No preemption victims found for incoming pod, 5 Preemption is not helpful for scheduling.".into());
        // As printed by kube-scheduler (sorted as strings, and the double period).
        assert_eq!(
            e.to_string(),
            "0/9 nodes are available: 2 node(s) had untolerated taint {default-worker: true}, \
             3 node(s) had untolerated taint {node-role.kubernetes.io/master: }, 4 Insufficient cpu. \
             preemption: 0/9 nodes are available: 4 No preemption victims found for incoming pod, \
             5 Preemption is not helpful for scheduling.."
        );
        let pre = FitError {
            num_all_nodes: 3,
            pre_filter_msg: Some("node(s) had no zone".into()),
            ..Default::default()
        };
        assert_eq!(
            pre.to_string(),
            "0/3 nodes are available: node(s) had no zone."
        );
    }
}
