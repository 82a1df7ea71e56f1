//! NodeResourcesFit (Filter, Score) and NodeResourcesBalancedAllocation (Score).
//!
//! Fit's filter: the node must have room for the pod's requests (and one more pod).
//! Its score follows the configured strategy (see [`scoring`]).

pub mod balanced;
pub mod scoring;

use std::borrow::Cow;

use serde::Deserialize;

use crate::cache::NodeInfo;
use crate::framework::*;
use crate::pod_info::PodInfo;
use scoring::{node_vectors, ScoringStrategyArgs, Strategy};

/// Plugin name.
pub const NAME: &str = "NodeResourcesFit";

/// NodeResourcesFit args (`plugin_config`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitArgs {
    /// Extended resources the filter ignores.
    pub ignored_resources: Vec<String>,
    /// How nodes are scored.
    pub scoring_strategy: ScoringStrategyArgs,
}

/// Filters on free resources; scores by LeastAllocated, MostAllocated or RequestedToCapacityRatio.
#[derive(Debug)]
pub struct Fit {
    ignored: Vec<String>,
    strategy: Strategy,
}

impl Fit {
    /// Builds from args.
    pub fn new(args: &PluginArgs) -> Result<Fit, PluginError> {
        let a: FitArgs = PluginError::parse_args(NAME, args)?;
        let strategy =
            Strategy::new(&a.scoring_strategy).map_err(|message| PluginError::BadArgs {
                plugin: NAME.into(),
                message: format!("scoring_strategy.{message}"),
            })?;
        Ok(Fit {
            ignored: a.ignored_resources,
            strategy,
        })
    }

    /// The reasons the pod does not fit, and whether no amount of preemption could help.
    pub fn insufficient(&self, pod: &PodInfo, node: &NodeInfo) -> (Vec<Cow<'static, str>>, bool) {
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        let mut unresolvable = false;
        let (a, used, want) = (&node.allocatable, &node.requested, &pod.requests);
        if node.pods.len() as i64 + 1 > a.allowed_pod_number {
            reasons.push("Too many pods".into());
        }
        if want.is_zero() {
            return (reasons, false);
        }
        let mut check = |name: &'static str, req: i64, alloc: i64, in_use: i64| {
            if req > 0 && req > alloc - in_use {
                reasons.push(Cow::Borrowed(name));
                unresolvable |= req > alloc;
            }
        };
        check(
            "Insufficient cpu",
            want.milli_cpu,
            a.milli_cpu,
            used.milli_cpu,
        );
        check("Insufficient memory", want.memory, a.memory, used.memory);
        check(
            "Insufficient ephemeral-storage",
            want.ephemeral_storage,
            a.ephemeral_storage,
            used.ephemeral_storage,
        );
        for (name, req) in &want.scalar {
            if *req == 0 || self.ignored.iter().any(|i| i == name) {
                continue;
            }
            if *req > a.scalar(name) - used.scalar(name) {
                reasons.push(format!("Insufficient {name}").into());
                unresolvable |= *req > a.scalar(name);
            }
        }
        (reasons, unresolvable)
    }
}

impl Plugin for Fit {
    fn name(&self) -> &str {
        NAME
    }

    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::AssignedPodUpdate,
        ]
    }
}

impl FilterPlugin for Fit {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let (reasons, unresolvable) = self.insufficient(pod, node);
        match (reasons.is_empty(), unresolvable) {
            (true, _) => Status::success(),
            (false, true) => Status::with_reasons(Code::UnschedulableAndUnresolvable, reasons),
            (false, false) => Status::with_reasons(Code::Unschedulable, reasons),
        }
    }
}

impl ScorePlugin for Fit {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let (req, alloc) = node_vectors(node, pod, &self.strategy.resources, false);
        Ok(self.strategy.score(&req, &alloc))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn node(cpu: &str, pods: i64) -> NodeInfo {
        let mut n = NodeInfo::ghost("n");
        n.set_node(Arc::new(
            NodeBuilder::new("n")
                .cpu(cpu)
                .memory("4Gi")
                .pods(pods)
                .build(),
        ))
        .expect("node");
        n
    }

    fn fit(args: &str) -> Fit {
        let v: Option<toml::Value> =
            (!args.is_empty()).then(|| toml::from_str(args).expect("toml"));
        Fit::new(&v).expect("args")
    }

    #[test]
    fn filter_should_list_every_insufficient_resource() {
        let s = CycleState::new();
        let mut n = node("2", 1);
        n.add_pod(Arc::new(PodBuilder::new("a").cpu("1500m").build()));
        let pod = PodBuilder::new("p").cpu("1").memory("5Gi").build();
        let st = fit("").filter(&s, &pod, &n);
        // 5Gi > 4Gi allocatable: no preemption helps.
        assert_eq!(st.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(
            st.message(),
            "Too many pods, Insufficient cpu, Insufficient memory"
        );
        let small = PodBuilder::new("q").cpu("500m").build();
        assert!(fit("").filter(&s, &small, &node("2", 110)).is_success());
        let st = fit("").filter(&s, &PodBuilder::new("r").cpu("500m").build(), &n);
        assert_eq!(st, Status::unschedulable("Too many pods"));
    }

    #[test]
    fn score_should_use_non_zero_requests_and_the_strategy() {
        let s = CycleState::new();
        let n = node("4", 110);
        // No requests: 100m and 200 MiB. Least: cpu (4000−100)·100/4000 = 97,
        // memory (4096−200)·100/4096 = 95 (MiB); (97+95)/2 = 96.
        let pod = PodBuilder::new("p").build();
        assert_eq!(fit("").score(&s, &pod, &n), Ok(96));
        // Most: cpu 100·100/4000 = 2, memory 200·100/4096 = 4; (2+4)/2 = 3.
        let most = fit("scoring_strategy = { type = \"MostAllocated\" }");
        assert_eq!(most.score(&s, &pod, &n), Ok(3));
    }

    #[test]
    fn new_should_refuse_unknown_args_and_name_the_plugin() {
        let v = Some(toml::from_str::<toml::Value>("scoring = 1").expect("toml"));
        let err = Fit::new(&v).expect_err("refused").to_string();
        assert!(
            err.starts_with("plugin NodeResourcesFit: invalid args: unknown field `scoring`"),
            "{err}"
        );
    }
}
