//! ClusterIPs bound locally (as root): added as /32 addresses to the `kube-ipvs0`
//! dummy interface, as kube-proxy's IPVS mode does, so the userspace listeners can
//! bind them; removed when their Service goes. Uses `ip` from iproute2.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;

use tracing::warn;

/// The interface ClusterIPs are added to.
pub const DEVICE: &str = "kube-ipvs0";

/// The ClusterIPs currently on [`DEVICE`].
pub struct ClusterIpDevice {
    bound: BTreeSet<IpAddr>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e} (install iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl ClusterIpDevice {
    /// Creates (or reuses) [`DEVICE`] and removes addresses a previous run left on it.
    pub fn create() -> Result<ClusterIpDevice, String> {
        if ip(&["link", "show", DEVICE]).is_err() {
            // A dummy interface as kube-proxy makes it; kernels without the dummy
            // driver get an empty bridge, which holds local addresses just as well.
            if let Err(e) = ip(&["link", "add", DEVICE, "type", "dummy"]) {
                ip(&["link", "add", DEVICE, "type", "bridge"])
                    .map_err(|b| format!("{e}; then {b}"))?;
            }
        }
        ip(&["link", "set", DEVICE, "up"])?;
        ip(&["addr", "flush", "dev", DEVICE])?;
        Ok(ClusterIpDevice {
            bound: BTreeSet::new(),
        })
    }

    /// Makes the addresses on [`DEVICE`] exactly `ips`.
    pub fn sync(&mut self, ips: &[IpAddr]) {
        let wanted: BTreeSet<IpAddr> = ips.iter().copied().collect();
        for gone in self.bound.difference(&wanted).copied().collect::<Vec<_>>() {
            let cidr = format!("{gone}/{}", if gone.is_ipv4() { 32 } else { 128 });
            if let Err(e) = ip(&["addr", "del", &cidr, "dev", DEVICE]) {
                warn!(error = %e, "removing a ClusterIP");
            }
            self.bound.remove(&gone);
        }
        for new in wanted
            .difference(&self.bound.clone())
            .copied()
            .collect::<Vec<_>>()
        {
            let cidr = format!("{new}/{}", if new.is_ipv4() { 32 } else { 128 });
            match ip(&["addr", "add", &cidr, "dev", DEVICE]) {
                Ok(()) => {
                    self.bound.insert(new);
                }
                Err(e) => warn!(error = %e, "adding a ClusterIP"),
            }
        }
    }
}
