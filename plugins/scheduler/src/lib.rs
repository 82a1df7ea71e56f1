//! The kubernel scheduler plugin: queue, cache, framework and in-tree plugins.
//!
//! This crate's modules are pure logic without I/O: the I/O layer feeds
//! [`core::Scheduler`] with node and pod events, asks it to schedule one pod at a
//! time, and writes the resulting bindings, events and status through the API.

pub mod cache;
pub mod config;
pub mod core;
pub mod external;
pub mod framework;
pub mod metrics;
pub mod parallel;
pub mod pdb;
pub mod plugin;
pub mod plugins;
pub mod pod_info;
pub mod profile;
pub mod queue;
pub mod resources;
mod run;
pub mod selectors;
pub mod testing;

pub use crate::core::{ScheduleOutcome, Scheduler};

kubernel_sdk::export_plugin!(
    plugin::SchedulerPlugin,
    name = "scheduler",
    kind = "scheduler",
    state_version = 1
);
