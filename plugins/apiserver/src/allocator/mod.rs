//! Service allocations: cluster IPs from `service_cluster_ip_range`, node ports from `service_node_port_range`, and the `kubernetes` Service.
//!
//! The pools are bitmaps in memory ([`ServiceAllocator`]), rebuilt from the
//! stored Services when the apiserver starts ([`start`], before it serves), so
//! they survive restarts without a second copy on disk. Every Service write
//! reserves under the pools' lock, writes with compare-and-swap, and commits or
//! gives back ([`Transaction`]), so concurrent creates never share a value.
//! On update, [`prepare_update`] keeps the values a client left out.
//!
//! One apiserver owns a store: two apiservers on one etcd would need the
//! allocations stored too (upstream's IPAddress objects).

mod assign;
mod bitmap;
mod bootstrap;
mod ipam;
mod ports;
mod service;
mod spec;
mod update;

pub use bootstrap::{start, BootstrapError};
pub use ipam::{CidrError, ServiceCidr};
pub use ports::{PortRange, PortRangeError};
pub use service::{ServiceAllocator, Transaction};
pub use update::prepare_update;
