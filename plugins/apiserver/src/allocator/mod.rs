//! Service allocations: cluster IPs from `service_cluster_ip_range` and node ports from `service_node_port_range`.

mod bitmap;
mod ipam;
mod ports;

pub use ipam::{CidrError, IpAllocator, IpamError, ServiceCidr};
pub use ports::{PortAllocator, PortError, PortRange, PortRangeError};
