//! Resource scoring strategies of NodeResourcesFit and their arguments.
//!
//! Formulas (MaxNodeScore = 100; `req` includes the incoming pod):
//! - LeastAllocated: `Σ w·(alloc−req)·100/alloc / Σ w`, a resource scoring 0 when
//!   `req > alloc` (least_allocated.go).
//! - MostAllocated: `Σ w·min(req,alloc)·100/alloc / Σ w` (most_allocated.go).
//! - RequestedToCapacityRatio: a broken-linear shape over utilisation 0..100 with
//!   scores 0..10 scaled ×10; `round(Σ w·s / Σ w)` over resources scoring above 0
//!   (requested_to_capacity_ratio.go).
//!
//! Resources a node does not offer (allocatable 0) are left out of the sums.

use serde::Deserialize;

use crate::cache::NodeInfo;
use crate::framework::MAX_NODE_SCORE;
use crate::pod_info::PodInfo;

/// Highest score of a RequestedToCapacityRatio shape point (`MaxCustomPriorityScore`).
pub const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;

/// Most resources a strategy may score (they are scored from stack arrays).
pub const MAX_SCORED_RESOURCES: usize = 8;

/// A resource and its weight in a score.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Resource name (`cpu`, `memory`, `ephemeral-storage`, or an extended resource).
    pub name: String,
    /// Weight, 1..=100 (0 or unset means 1).
    #[serde(default)]
    pub weight: i64,
}

/// The default scored resources: cpu and memory, weight 1 each.
pub fn default_resources() -> Vec<ResourceSpec> {
    ["cpu", "memory"]
        .iter()
        .map(|n| ResourceSpec {
            name: n.to_string(),
            weight: 1,
        })
        .collect()
}

/// A point of the RequestedToCapacityRatio shape.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShapePoint {
    /// Utilisation, 0..=100.
    pub utilization: i64,
    /// Score at that utilisation, 0..=10.
    pub score: i64,
}

/// `requested_to_capacity_ratio` args.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequestedToCapacityRatioArgs {
    /// The shape, by increasing utilisation.
    pub shape: Vec<ShapePoint>,
}

/// Strategy names as in `scoringStrategy.type`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum StrategyType {
    /// Prefer the emptiest node (the default).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node (bin packing).
    MostAllocated,
    /// Score by a configurable utilisation curve.
    RequestedToCapacityRatio,
}

/// `scoring_strategy` args.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringStrategyArgs {
    /// Strategy.
    #[serde(rename = "type")]
    pub kind: StrategyType,
    /// Scored resources (default cpu and memory, weight 1).
    pub resources: Vec<ResourceSpec>,
    /// Shape for RequestedToCapacityRatio.
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioArgs>,
}

/// A validated scoring strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strategy {
    kind: StrategyType,
    /// Shape with scores already scaled to 0..=100.
    shape: Vec<ShapePoint>,
    /// Scored resources with weights.
    pub resources: Vec<ResourceSpec>,
}

impl Strategy {
    /// Validates args; the error says which field is wrong.
    pub fn new(args: &ScoringStrategyArgs) -> Result<Strategy, String> {
        let mut resources = if args.resources.is_empty() {
            default_resources()
        } else {
            args.resources.clone()
        };
        if resources.len() > MAX_SCORED_RESOURCES {
            return Err(format!(
                "resources: at most {MAX_SCORED_RESOURCES} resources can be scored, got {}",
                resources.len()
            ));
        }
        for r in &mut resources {
            if r.weight == 0 {
                r.weight = 1;
            }
            if !(1..=100).contains(&r.weight) {
                return Err(format!(
                    "resources[{}].weight: {} is not in 1..=100",
                    r.name, r.weight
                ));
            }
        }
        let mut shape = Vec::new();
        if args.kind == StrategyType::RequestedToCapacityRatio {
            let points = args
                .requested_to_capacity_ratio
                .as_ref()
                .map(|r| r.shape.as_slice())
                .unwrap_or_default();
            if points.is_empty() {
                return Err(
                    "requested_to_capacity_ratio.shape: at least one point is required".into(),
                );
            }
            for (i, p) in points.iter().enumerate() {
                if !(0..=100).contains(&p.utilization)
                    || !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&p.score)
                {
                    return Err(format!("requested_to_capacity_ratio.shape[{i}]: utilization must be 0..=100 and score 0..=10"));
                }
                if i > 0 && points[i - 1].utilization >= p.utilization {
                    return Err(format!("requested_to_capacity_ratio.shape[{i}]: utilization values must be increasing"));
                }
                shape.push(ShapePoint {
                    utilization: p.utilization,
                    score: p.score * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
                });
            }
        }
        Ok(Strategy {
            kind: args.kind,
            shape,
            resources,
        })
    }

    /// Scores per-resource `requested`/`allocatable` pairs (entries with allocatable 0 are skipped).
    pub fn score(&self, requested: &[i64], allocatable: &[i64]) -> i64 {
        let (mut sum, mut weights) = (0i64, 0i64);
        for ((r, &req), &alloc) in self.resources.iter().zip(requested).zip(allocatable) {
            if alloc == 0 {
                continue;
            }
            let s = match self.kind {
                StrategyType::LeastAllocated => least_requested_score(req, alloc),
                StrategyType::MostAllocated => most_requested_score(req, alloc),
                StrategyType::RequestedToCapacityRatio => {
                    let s = if req > alloc {
                        broken_linear(&self.shape, 100)
                    } else {
                        broken_linear(&self.shape, req * 100 / alloc)
                    };
                    if s <= 0 {
                        continue;
                    }
                    s
                }
            };
            sum += s * r.weight;
            weights += r.weight;
        }
        match (weights, self.kind) {
            (0, _) => 0,
            (w, StrategyType::RequestedToCapacityRatio) => (sum as f64 / w as f64).round() as i64,
            (w, _) => sum / w,
        }
    }
}

/// `(capacity − requested)·100/capacity`, 0 when over capacity (least_allocated.go).
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// `min(requested, capacity)·100/capacity` (most_allocated.go).
pub fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// Upstream `BuildBrokenLinearFunction` evaluated at utilisation `p`.
pub fn broken_linear(shape: &[ShapePoint], p: i64) -> i64 {
    for (i, pt) in shape.iter().enumerate() {
        if p <= pt.utilization {
            if i == 0 {
                return pt.score;
            }
            let prev = shape[i - 1];
            return prev.score
                + (pt.score - prev.score) * (p - prev.utilization)
                    / (pt.utilization - prev.utilization);
        }
    }
    shape.last().map_or(0, |p| p.score)
}

/// Per-resource `(requested, allocatable)` arrays of a node for `resources`.
pub fn node_vectors(
    node: &NodeInfo,
    pod: &PodInfo,
    resources: &[ResourceSpec],
    use_requested: bool,
) -> ([i64; MAX_SCORED_RESOURCES], [i64; MAX_SCORED_RESOURCES]) {
    let mut req = [0; MAX_SCORED_RESOURCES];
    let mut alloc = [0; MAX_SCORED_RESOURCES];
    for (i, r) in resources.iter().take(MAX_SCORED_RESOURCES).enumerate() {
        let (a, q) = allocatable_and_requested(node, pod, &r.name, use_requested);
        if a != 0 {
            alloc[i] = a;
            req[i] = q;
        }
    }
    (req, alloc)
}

/// `(allocatable, requested including the pod)` of one resource on a node.
///
/// With `use_requested` false (Fit scoring) CPU and memory use the non-zero sums;
/// an extended resource the pod does not request gives `(0, 0)` (skipped).
pub fn allocatable_and_requested(
    node: &NodeInfo,
    pod: &PodInfo,
    resource: &str,
    use_requested: bool,
) -> (i64, i64) {
    let (a, r) = (&node.allocatable, &node.requested);
    match resource {
        "cpu" if use_requested => (a.milli_cpu, r.milli_cpu + pod.requests.milli_cpu),
        "cpu" => (
            a.milli_cpu,
            node.non_zero_milli_cpu + pod.non_zero_milli_cpu,
        ),
        "memory" if use_requested => (a.memory, r.memory + pod.requests.memory),
        "memory" => (a.memory, node.non_zero_memory + pod.non_zero_memory),
        "ephemeral-storage" => (
            a.ephemeral_storage,
            r.ephemeral_storage + pod.requests.ephemeral_storage,
        ),
        name => match pod.requests.scalar(name) {
            0 => (0, 0),
            req => (a.scalar(name), r.scalar(name) + req),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(kind: StrategyType, shape: &[(i64, i64)]) -> Strategy {
        let args = ScoringStrategyArgs {
            kind,
            resources: vec![],
            requested_to_capacity_ratio: Some(RequestedToCapacityRatioArgs {
                shape: shape
                    .iter()
                    .map(|&(utilization, score)| ShapePoint { utilization, score })
                    .collect(),
            }),
        };
        Strategy::new(&args).expect("valid")
    }

    #[test]
    fn least_allocated_should_match_hand_computed_values() {
        // cpu (4000−3000)·100/4000 = 25, memory (10−5)·100/10 = 50; (25+50)/2 = 37.
        let s = strategy(StrategyType::LeastAllocated, &[]);
        assert_eq!(s.score(&[3000, 5], &[4000, 10]), 37);
        // Over capacity scores 0 for that resource: (0 + 50)/2 = 25.
        assert_eq!(s.score(&[5000, 5], &[4000, 10]), 25);
    }

    #[test]
    fn most_allocated_should_match_hand_computed_values() {
        // cpu 3000·100/4000 = 75, memory 5·100/10 = 50; (75+50)/2 = 62.
        let s = strategy(StrategyType::MostAllocated, &[]);
        assert_eq!(s.score(&[3000, 5], &[4000, 10]), 62);
        // A resource the node does not offer is left out: 75/1.
        assert_eq!(s.score(&[3000, 5], &[4000, 0]), 75);
    }

    #[test]
    fn requested_to_capacity_ratio_should_interpolate_the_shape() {
        // Shape (0,0) (100,10) scaled to (0,0) (100,100): cpu 75% -> 75, memory 50% -> 50; round(125/2) = 63.
        let s = strategy(StrategyType::RequestedToCapacityRatio, &[(0, 0), (100, 10)]);
        assert_eq!(s.score(&[3000, 5], &[4000, 10]), 63);
        // Shape (0,10) (100,0): 25 and 50; round(75/2) = 38.
        let s = strategy(StrategyType::RequestedToCapacityRatio, &[(0, 10), (100, 0)]);
        assert_eq!(s.score(&[3000, 5], &[4000, 10]), 38);
        assert_eq!(
            broken_linear(
                &[ShapePoint {
                    utilization: 50,
                    score: 40
                }],
                10
            ),
            40
        );
    }

    #[test]
    fn strategy_should_refuse_bad_args() {
        let args = ScoringStrategyArgs {
            kind: StrategyType::RequestedToCapacityRatio,
            ..Default::default()
        };
        assert!(Strategy::new(&args).is_err());
        let args = ScoringStrategyArgs {
            kind: StrategyType::LeastAllocated,
            resources: vec![ResourceSpec {
                name: "cpu".into(),
                weight: 101,
            }],
            requested_to_capacity_ratio: None,
        };
        assert_eq!(
            Strategy::new(&args).err().as_deref(),
            Some("resources[cpu].weight: 101 is not in 1..=100")
        );
    }
}
