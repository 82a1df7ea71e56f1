//! The binding-side extension points of a [`Framework`]: Reserve, Permit, PreBind, Bind, PostBind.

use std::time::{Duration, Instant};

use super::runtime::MAX_PERMIT_WAIT;
use super::*;
use crate::metrics::Point;
use crate::pod_info::PodInfo;

impl Framework {
    /// Runs Reserve plugins; on failure runs Unreserve on all of them and returns the failure.
    pub fn run_reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        let start = Instant::now();
        let mut outcome = Status::success();
        for p in &self.reserve {
            let s = p.reserve(state, pod, node);
            if !s.is_success() {
                outcome = Status::error(format!(
                    "running Reserve plugin {:?}: {}",
                    p.name(),
                    s.message()
                ))
                .with_plugin(p.name());
                break;
            }
        }
        if !outcome.is_success() {
            self.run_unreserve(state, pod, node);
        }
        self.timers
            .observe(Point::Reserve, outcome.code(), start.elapsed());
        outcome
    }

    /// Runs Unreserve of every Reserve plugin, in reverse order.
    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            p.unreserve(state, pod, node);
        }
    }

    /// Runs Permit plugins: Success, Unschedulable (denied), Error, or Wait with
    /// each waiting plugin and its timeout (at most [`MAX_PERMIT_WAIT`]).
    pub fn run_permit(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> (Status, Vec<(String, Duration)>) {
        let start = Instant::now();
        let mut waits: Vec<(String, Duration)> = Vec::new();
        let mut outcome = Status::success();
        for p in &self.permit {
            let (s, timeout) = p.permit(state, pod, node);
            match s.code() {
                Code::Success | Code::Skip => {}
                Code::Wait => waits.push((p.name().to_string(), timeout.min(MAX_PERMIT_WAIT))),
                c if s.is_rejected() => {
                    outcome = Status::with_reasons(
                        c,
                        s.reasons().map(|r| r.to_string().into()).collect(),
                    )
                    .with_plugin(p.name());
                    break;
                }
                _ => {
                    outcome = Status::error(format!(
                        "running Permit plugin {:?}: {}",
                        p.name(),
                        s.message()
                    ))
                    .with_plugin(p.name());
                    break;
                }
            }
        }
        let result = if outcome.is_success() && !waits.is_empty() {
            (Status::new(Code::Wait, "waiting on permit"), waits)
        } else {
            (outcome, Vec::new())
        };
        self.timers
            .observe(Point::Permit, result.0.code(), start.elapsed());
        result
    }

    /// Runs PreBind plugins; the first failure is returned.
    pub fn run_pre_bind(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        let start = Instant::now();
        let mut outcome = Status::success();
        for p in &self.pre_bind {
            let s = p.pre_bind(state, pod, node);
            if !s.is_success() && !s.is_skip() {
                outcome = Status::error(format!(
                    "running PreBind plugin {:?}: {}",
                    p.name(),
                    s.message()
                ))
                .with_plugin(p.name());
                break;
            }
        }
        self.timers
            .observe(Point::PreBind, outcome.code(), start.elapsed());
        outcome
    }

    /// Runs Bind plugins until one does not Skip; Skip when all skip.
    pub fn run_bind(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        let start = Instant::now();
        let mut outcome = Status::skip();
        for p in &self.bind {
            let s = p.bind(state, pod, node);
            if !s.is_skip() {
                outcome = if s.is_success() {
                    s
                } else {
                    Status::error(format!(
                        "running Bind plugin {:?}: {}",
                        p.name(),
                        s.message()
                    ))
                }
                .with_plugin(p.name());
                break;
            }
        }
        self.timers
            .observe(Point::Bind, outcome.code(), start.elapsed());
        outcome
    }

    /// Runs PostBind plugins.
    pub fn run_post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        let start = Instant::now();
        for p in &self.post_bind {
            p.post_bind(state, pod, node);
        }
        self.timers
            .observe(Point::PostBind, Code::Success, start.elapsed());
    }
}
