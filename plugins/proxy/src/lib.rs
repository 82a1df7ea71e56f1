//! The kubernel proxy plugin: makes Service ClusterIPs and NodePorts reach the ready
//! endpoints of their Services, with IPVS's schedulers (`rr`, `sh`, `lc`).
//!
//! `mode = "userspace"` forwards TCP connections in this process; `nftables` and
//! `ipvs` are refused at start with a message saying why.

pub mod balancer;
pub mod cluster_ips;
pub mod config;
mod healthz;
pub mod metrics;
pub mod model;
mod plugin;
mod run;
pub mod userspace;

pub use plugin::ProxyPlugin;

kubernel_sdk::export_plugin!(
    ProxyPlugin,
    name = "proxy",
    kind = "proxy",
    state_version = 1
);
