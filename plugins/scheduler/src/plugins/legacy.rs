//! The legacy priority functions of our source notes, as Score plugins.
//!
//! They compute the original formulas with `MaxPriority = 10` and integer maths,
//! then scale by `MaxNodeScore / MaxPriority = 10` into the framework's 0..=100
//! range. Requested resources are the node's non-zero requests plus the pod's
//! (unset requests count as 100m CPU / 200 MiB).

use serde::Deserialize;

use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Highest legacy priority.
pub const MAX_PRIORITY: i64 = 10;

/// Name of [`LeastRequestedPriority`].
pub const LEAST_REQUESTED: &str = "LeastRequestedPriority";
/// Name of [`BalancedResourceAllocation`].
pub const BALANCED: &str = "BalancedResourceAllocation";
/// Name of [`NodeLabelPriority`].
pub const NODE_LABEL: &str = "NodeLabelPriority";

fn cpu_mem(pod: &PodInfo, node: &NodeInfo) -> [(i64, i64); 2] {
    [
        (
            node.non_zero_milli_cpu + pod.non_zero_milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.non_zero_memory + pod.non_zero_memory,
            node.allocatable.memory,
        ),
    ]
}

/// `(capacity − requested)·10/capacity`, 0 when `capacity` is 0 or `requested > capacity`.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_PRIORITY / capacity
}

/// LeastRequestedPriority = `((cap_cpu−req_cpu)·10/cap_cpu + (cap_mem−req_mem)·10/cap_mem)/2`.
#[derive(Debug, Default)]
pub struct LeastRequestedPriority;

impl Plugin for LeastRequestedPriority {
    fn name(&self) -> &str {
        LEAST_REQUESTED
    }
}

impl ScorePlugin for LeastRequestedPriority {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let [(cpu, cpu_cap), (mem, mem_cap)] = cpu_mem(pod, node);
        let legacy = (least_requested(cpu, cpu_cap) + least_requested(mem, mem_cap)) / 2;
        Ok(legacy * (MAX_NODE_SCORE / MAX_PRIORITY))
    }
}

/// BalancedResourceAllocation = `(1 − |cpuFraction − memFraction|)·10`, 0 when either fraction is ≥ 1.
///
/// Meant to be used together with LeastRequestedPriority.
#[derive(Debug, Default)]
pub struct BalancedResourceAllocation;

impl Plugin for BalancedResourceAllocation {
    fn name(&self) -> &str {
        BALANCED
    }
}

fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity == 0 {
        1.0
    } else {
        requested as f64 / capacity as f64
    }
}

impl ScorePlugin for BalancedResourceAllocation {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let [(cpu, cpu_cap), (mem, mem_cap)] = cpu_mem(pod, node);
        let (c, m) = (fraction(cpu, cpu_cap), fraction(mem, mem_cap));
        let legacy = if c >= 1.0 || m >= 1.0 {
            0
        } else {
            ((1.0 - (c - m).abs()) * MAX_PRIORITY as f64) as i64
        };
        Ok(legacy * (MAX_NODE_SCORE / MAX_PRIORITY))
    }
}

/// NodeLabelPriority args: the label and whether its presence is preferred.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLabelArgs {
    /// Label key.
    pub label: String,
    /// True: prefer nodes with the label; false: prefer nodes without it.
    #[serde(default = "yes")]
    pub presence: bool,
}

fn yes() -> bool {
    true
}

/// NodeLabelPriority = 10 if `(exists && presence) || (!exists && !presence)`, else 0.
#[derive(Debug)]
pub struct NodeLabelPriority {
    args: NodeLabelArgs,
}

impl NodeLabelPriority {
    /// Builds from args; `label` is required.
    pub fn new(args: &PluginArgs) -> Result<Self, PluginError> {
        let a: Option<NodeLabelArgs> = match args {
            None => None,
            Some(_) => Some(PluginError::parse_args(NODE_LABEL, args)?),
        };
        match a {
            Some(args) if !args.label.is_empty() => Ok(NodeLabelPriority { args }),
            _ => Err(PluginError::BadArgs {
                plugin: NODE_LABEL.into(),
                message: "label is required".into(),
            }),
        }
    }
}

impl Plugin for NodeLabelPriority {
    fn name(&self) -> &str {
        NODE_LABEL
    }
}

impl ScorePlugin for NodeLabelPriority {
    fn score(&self, _state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let exists = node.labels().contains_key(&self.args.label);
        let legacy = if exists == self.args.presence {
            MAX_PRIORITY
        } else {
            0
        };
        Ok(legacy * (MAX_NODE_SCORE / MAX_PRIORITY))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn node(cpu: &str, mem: &str, used: Option<(&str, &str)>) -> NodeInfo {
        let mut n = NodeInfo::ghost("n");
        n.set_node(Arc::new(
            NodeBuilder::new("n")
                .cpu(cpu)
                .memory(mem)
                .label("ssd", "")
                .build(),
        ))
        .expect("node");
        if let Some((c, m)) = used {
            n.add_pod(Arc::new(PodBuilder::new("x").cpu(c).memory(m).build()));
        }
        n
    }

    #[test]
    fn least_requested_should_match_the_legacy_formula() {
        let s = CycleState::new();
        // node 4000m / 10000 bytes, used 2000m / 5000, pod 1000m / 1000:
        // ((4000−3000)·10/4000 + (10000−6000)·10/10000)/2 = (2 + 4)/2 = 3 -> 30.
        let n = node("4", "10000", Some(("2", "5000")));
        let pod = PodBuilder::new("p").cpu("1").memory("1000").build();
        assert_eq!(LeastRequestedPriority.score(&s, &pod, &n), Ok(30));
        // Over capacity on memory: (2 + 0)/2 = 1 -> 10.
        let big = PodBuilder::new("q").cpu("1").memory("6000").build();
        assert_eq!(LeastRequestedPriority.score(&s, &big, &n), Ok(10));
    }

    #[test]
    fn balanced_resource_allocation_should_match_the_legacy_formula() {
        let s = CycleState::new();
        // cpu 3000/4000 = 0.75, memory 6000/10000 = 0.6: (1 − 0.15)·10 = 8.5 -> 8 -> 80.
        let n = node("4", "10000", Some(("2", "5000")));
        let pod = PodBuilder::new("p").cpu("1").memory("1000").build();
        assert_eq!(BalancedResourceAllocation.score(&s, &pod, &n), Ok(80));
        // A full resource scores 0.
        let full = PodBuilder::new("q").cpu("2").memory("1000").build();
        assert_eq!(BalancedResourceAllocation.score(&s, &full, &n), Ok(0));
    }

    #[test]
    fn node_label_priority_should_score_presence_or_absence() {
        let s = CycleState::new();
        let n = node("4", "1Gi", None);
        let pod = PodBuilder::new("p").build();
        let args = |t: &str| Some(toml::from_str::<toml::Value>(t).expect("toml"));
        let present = NodeLabelPriority::new(&args("label = \"ssd\"")).expect("args");
        let absent =
            NodeLabelPriority::new(&args("label = \"ssd\"\npresence = false")).expect("args");
        assert_eq!(present.score(&s, &pod, &n), Ok(100));
        assert_eq!(absent.score(&s, &pod, &n), Ok(0));
        assert!(NodeLabelPriority::new(&None).is_err());
    }
}
