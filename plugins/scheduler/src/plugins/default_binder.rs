//! DefaultBinder (Bind): the binding subresource is written by the I/O layer.
//!
//! The pure core does no I/O, so this plugin returns Skip: when every Bind plugin
//! of a profile skips, [`crate::core::Scheduler::bind`] reports
//! [`crate::core::BindOutcome::Delegated`] and the I/O layer POSTs the `Binding`.

use crate::framework::{BindPlugin, CycleState, Plugin, Status};
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "DefaultBinder";

/// Delegates the binding to the I/O layer.
#[derive(Debug, Default)]
pub struct DefaultBinder;

impl Plugin for DefaultBinder {
    fn name(&self) -> &str {
        NAME
    }
}

impl BindPlugin for DefaultBinder {
    fn bind(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &str) -> Status {
        Status::skip()
    }
}
