//! The kubernel proxy plugin: makes Service ClusterIPs and NodePorts reach the ready
//! endpoints of their Services, with IPVS's schedulers (`rr`, `sh`, `lc`).
//!
//! `mode = "userspace"` forwards TCP connections in this process; `mode = "nftables"`
//! programs DNAT rules in the kernel; `ipvs` is refused at start with the reason.

pub mod balancer;
pub mod cluster_ips;
pub mod config;
mod healthz;
pub mod libnftables;
pub mod metrics;
pub mod model;
pub mod nftables;
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
