//! The scheduling framework: extension-point traits, `Status`, `CycleState`, the registry and the runtime.
//!
//! Mirrors the upstream Go framework (`pkg/scheduler/framework`): one trait per
//! extension point, results as [`Status`] (Success, Unschedulable,
//! UnschedulableAndUnresolvable, Error, Wait, Skip), per-cycle [`CycleState`], a
//! [`Registry`] of factories by name, and a [`Framework`] per profile that runs them.

mod binding;
mod cycle_state;
mod fit_error;
mod interface;
mod registry;
mod runtime;
mod status;
mod types;
mod waiting_pods;

pub use cycle_state::{CycleState, PluginTimes};
pub use fit_error::FitError;
pub use interface::{
    BindPlugin, FilterPlugin, PermitPlugin, Plugin, PostBindPlugin, PostFilterPlugin,
    PreBindPlugin, PreFilterPlugin, PreScorePlugin, QueueSortPlugin, ReservePlugin, ScorePlugin,
};
pub use registry::{
    DuplicatePlugin, Factory, FactoryContext, PluginArgs, PluginError, PluginInstance, Registry,
};
pub use runtime::{
    nominated_for, run_filters_with_nominated, FilterOutcome, Framework, ScoreTable,
    MAX_PERMIT_WAIT, MIN_NODES_PER_THREAD,
};
pub use status::{Code, Status};
pub use types::{
    ClusterEvent, FilterRunner, NodeSnapshot, NodeStatusMap, PostFilterResult, PreFilterResult,
    QueuedPodInfo, MAX_NODE_SCORE, MIN_NODE_SCORE,
};
pub use waiting_pods::{timeout_message, WaitingPod, WaitingPods};
