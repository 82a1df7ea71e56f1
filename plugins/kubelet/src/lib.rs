//! The kubernel kubelet plugin: node agent with a CRI-shaped runtime interface; the `sim`
//! runtime simulates thousands of nodes in one process for scheduler experiments; the
//! `process` runtime runs one real node whose containers are host processes; the `cri`
//! runtime runs one real node whose containers run in containerd (any CRI runtime).

pub mod bootstrap;
pub mod cidr;
pub mod config;
pub mod metrics;
pub mod node;
mod plugin;
pub mod pod_status;
pub mod runtime;
pub mod sim;
pub mod watched_pod;
mod watcher;

pub use plugin::Kubelet;

kubernel_sdk::export_plugin!(
    Kubelet,
    name = "kubelet",
    kind = "kubelet",
    state_version = 1
);
