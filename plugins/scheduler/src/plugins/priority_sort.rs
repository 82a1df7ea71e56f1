//! PrioritySort (QueueSort): higher priority first, then the pod that waited longest.

use crate::framework::{Plugin, QueueSortPlugin, QueuedPodInfo};

/// Plugin name.
pub const NAME: &str = "PrioritySort";

/// Orders the active queue by `spec.priority` (descending), then queue timestamp.
#[derive(Debug, Default)]
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &str {
        NAME
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (a.pod.priority, b.pod.priority);
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::testing::PodBuilder;

    fn queued(priority: i32, at: Instant) -> QueuedPodInfo {
        QueuedPodInfo {
            pod: Arc::new(PodBuilder::new("p").priority(priority).build()),
            timestamp: at,
            initial_attempt: None,
            first_seen: at,
            attempts: 0,
            unschedulable_plugins: Default::default(),
        }
    }

    #[test]
    fn less_should_order_by_priority_then_age() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let s = PrioritySort;
        assert!(s.less(&queued(10, t1), &queued(0, t0)));
        assert!(s.less(&queued(0, t0), &queued(0, t1)));
        assert!(!s.less(&queued(0, t1), &queued(0, t0)));
    }
}
