//! The kubernel controller-manager plugin: reconcile loops that keep the cluster at its desired state.

pub mod certificates;
pub mod clusterroleaggregation;
pub mod config;
pub mod controller;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbagecollector;
pub mod informers;
pub mod manager;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod objectmetrics;
pub mod owners;
mod plugin;
pub mod pods;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod selector;
pub mod serviceaccount;
pub mod services;
pub mod tainteviction;

pub use plugin::ControllerManager;

kubernel_sdk::export_plugin!(
    ControllerManager,
    name = "controller-manager",
    kind = "controller-manager",
    state_version = 1
);
