//! Out-of-tree scheduler score plugin: bin packing (MostAllocated-like).
//!
//! Prefers the fullest node that still fits the pod, so that pods pack onto few
//! nodes and whole nodes stay free. The score is upstream's `MostAllocated` over
//! CPU and memory with weight 1 each:
//! `Σ_r min(req_r, alloc_r)·100/alloc_r / 2`, where `req_r` is the node's requested
//! amount plus the pod's, with unset requests counted as 100m CPU and 200 MiB
//! (most_allocated.go). Arguments: none.

use kubernel_scheduler_sdk::{export_scheduler_plugin, Cycle, Plugin, ScorePlugin};

/// The bin-packing scorer.
pub struct Binpack;

/// `min(requested, capacity)·100/capacity`, 0 for a zero capacity (most_allocated.go).
pub fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    requested.clamp(0, capacity) * 100 / capacity
}

impl Plugin for Binpack {
    const NAME: &'static str = "Binpack";

    fn new(_args: &str) -> Result<Self, String> {
        Ok(Binpack)
    }
}

impl ScorePlugin for Binpack {
    fn score(&self, c: &Cycle<'_>, scores: &mut [i64]) -> Result<(), String> {
        let n = &c.nodes;
        for (score, &node) in scores.iter_mut().zip(c.candidates) {
            let i = node as usize;
            let (Some(&cpu), Some(&mem)) =
                (n.allocatable_milli_cpu.get(i), n.allocatable_memory.get(i))
            else {
                return Err(format!("candidate {node} is not in the node table"));
            };
            let cpu_req = n.non_zero_milli_cpu[i].saturating_add(c.pod.non_zero_milli_cpu);
            let mem_req = n.non_zero_memory[i].saturating_add(c.pod.non_zero_memory);
            let (mut sum, mut weights) = (0, 0);
            for (req, alloc) in [(cpu_req, cpu), (mem_req, mem)] {
                if alloc > 0 {
                    sum += most_requested_score(req, alloc);
                    weights += 1;
                }
            }
            *score = if weights == 0 { 0 } else { sum / weights };
        }
        Ok(())
    }
}

export_scheduler_plugin!(Binpack, score);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_requested_score_should_match_upstream() {
        // 3000m of 4000m: 3000·100/4000 = 75; over capacity clamps to 100.
        assert_eq!(most_requested_score(3000, 4000), 75);
        assert_eq!(most_requested_score(5000, 4000), 100);
        assert_eq!(most_requested_score(1, 0), 0);
    }
}
