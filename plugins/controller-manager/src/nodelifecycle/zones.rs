//! Zones: their health state (upstream `ComputeZoneState`) and the token bucket
//! that limits how fast nodes of a zone are tainted for eviction.

use std::collections::VecDeque;
use std::time::Instant;

/// Health of a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    /// Few or no not-ready nodes.
    Normal,
    /// At least 3 not-ready nodes making up `unhealthy_zone_threshold` of the zone.
    PartialDisruption,
    /// No ready node at all.
    FullDisruption,
}

/// The state of a zone with `ready` and `not_ready` nodes.
pub fn zone_state(ready: usize, not_ready: usize, threshold: f64) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Nodes of one zone waiting to be tainted, released at `rate` nodes per second (burst 1).
pub struct ZoneQueue {
    /// Node names in arrival order.
    pub nodes: VecDeque<String>,
    tokens: f64,
    refilled: Instant,
}

impl Default for ZoneQueue {
    fn default() -> Self {
        ZoneQueue {
            nodes: VecDeque::new(),
            tokens: 1.0,
            refilled: Instant::now(),
        }
    }
}

impl ZoneQueue {
    /// Adds `node` unless it is already waiting.
    pub fn push(&mut self, node: &str) {
        if !self.nodes.iter().any(|n| n == node) {
            self.nodes.push_back(node.to_string());
        }
    }

    /// Removes `node` (it became healthy).
    pub fn remove(&mut self, node: &str) {
        self.nodes.retain(|n| n != node);
    }

    /// The nodes whose turn came at `rate` nodes per second, at `now`.
    pub fn take(&mut self, rate: f64, now: Instant) -> Vec<String> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + rate * elapsed).min(1.0);
        let mut out = Vec::new();
        while self.tokens >= 1.0 && rate > 0.0 {
            let Some(n) = self.nodes.pop_front() else {
                break;
            };
            self.tokens -= 1.0;
            out.push(n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zone_state_should_follow_the_unhealthy_threshold_and_minimum() {
        assert_eq!(zone_state(5, 0, 0.55), ZoneState::Normal);
        assert_eq!(zone_state(0, 2, 0.55), ZoneState::FullDisruption);
        assert_eq!(
            zone_state(1, 2, 0.55),
            ZoneState::Normal,
            "fewer than 3 not ready"
        );
        assert_eq!(zone_state(2, 3, 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3, 0.55), ZoneState::Normal);
    }

    #[test]
    fn zone_queue_should_release_one_node_per_token() {
        let mut q = ZoneQueue::default();
        let t0 = Instant::now();
        for n in ["a", "b", "c"] {
            q.push(n);
        }
        assert_eq!(q.take(0.1, t0), vec!["a".to_string()], "burst of 1");
        assert!(q.take(0.1, t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(
            q.take(0.1, t0 + Duration::from_secs(10)),
            vec!["b".to_string()]
        );
        assert!(
            q.take(0.0, t0 + Duration::from_secs(100)).is_empty(),
            "rate 0 stops evictions"
        );
    }
}
