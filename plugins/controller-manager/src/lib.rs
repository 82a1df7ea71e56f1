//! The kubernel controller-manager plugin: reconcile loops that keep the cluster at its desired state.

pub mod config;
pub mod controller;
pub mod expectations;
pub mod informers;
pub mod manager;
pub mod metrics;
pub mod owners;
mod plugin;
pub mod pods;
pub mod replicaset;
pub mod selector;

pub use plugin::ControllerManager;

kubernel_sdk::export_plugin!(
    ControllerManager,
    name = "controller-manager",
    kind = "controller-manager",
    state_version = 1
);
