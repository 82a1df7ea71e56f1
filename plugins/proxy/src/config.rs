//! The proxy's `[plugin.config]` table; the field docs are the user documentation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kubernel_client::ClientConfig;
use serde::Deserialize;

/// How Service traffic is forwarded (kube-proxy's `--proxy-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A TCP proxy in this process: it listens on every NodePort (and on ClusterIPs
    /// when it may add them to the `kube-ipvs0` dummy interface, as root) and forwards
    /// each connection to a ready endpoint chosen by the scheduler.
    Userspace,
    /// Kernel forwarding: a `kubernel` nftables table with DNAT from ClusterIP:port and
    /// NodePort to the endpoints (needs root and the `nft` command of the nftables package).
    Nftables,
    /// Kernel IPVS (refused: see the message, which names the missing kernel module).
    Ipvs,
}

/// How an endpoint is chosen for a new connection; IPVS's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Scheduler {
    /// Round robin over the ready endpoints (the default).
    #[serde(rename = "rr")]
    RoundRobin,
    /// Source hashing: a client address always reaches the same endpoint while the
    /// set of endpoints stays the same.
    #[serde(rename = "sh")]
    SourceHash,
    /// Least connections: the endpoint with the fewest open connections.
    #[serde(rename = "lc")]
    LeastConnections,
}

/// The proxy plugin's configuration.
///
/// ```toml
/// [plugin.config]
/// mode = "userspace"
/// scheduler = "rr"                    # rr | sh | lc
/// node_port_addresses = ["127.0.0.1"] # where NodePorts listen
/// healthz_bind_address = "127.0.0.1:10256"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// How to reach the apiserver (default: the `admin.kubeconfig` in the kernel's data dir).
    #[serde(default)]
    pub client: ClientConfig,
    /// `userspace` (default), `nftables` or `ipvs`.
    #[serde(default = "defaults::mode")]
    pub mode: Mode,
    /// `rr` (default), `sh` or `lc`.
    #[serde(default = "defaults::scheduler")]
    pub scheduler: Scheduler,
    /// Addresses NodePorts listen on (kube-proxy's `--nodeport-addresses`). The
    /// default is `127.0.0.1` (kube-proxy's is every address): give the node's
    /// address, or `0.0.0.0` for every address, to reach NodePorts from other machines.
    #[serde(default = "defaults::node_port_addresses")]
    pub node_port_addresses: Vec<IpAddr>,
    /// Listen on ClusterIPs too: `auto` (default) when running as root, which adds
    /// them to the `kube-ipvs0` dummy interface; `false` never.
    #[serde(default = "defaults::cluster_ips")]
    pub cluster_ips: ClusterIps,
    /// Where `/healthz` is served (kube-proxy's `--healthz-bind-address`; default
    /// `127.0.0.1:10256`, kube-proxy's is `0.0.0.0:10256`).
    #[serde(default = "defaults::healthz_bind_address")]
    pub healthz_bind_address: SocketAddr,
    /// How long a connection to an endpoint may take to open before the next
    /// endpoint is tried.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Full resync of every listener even without a change (kube-proxy's `--sync-period`).
    #[serde(default = "defaults::sync_period", with = "humantime_serde")]
    pub sync_period: Duration,
    /// Threads of the proxy's async runtime.
    #[serde(default = "defaults::worker_threads")]
    pub worker_threads: usize,
}

/// Whether ClusterIPs are bound locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterIps {
    /// When running as root.
    Auto,
    /// Never: only NodePorts are served.
    False,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            client: ClientConfig::default(),
            mode: defaults::mode(),
            scheduler: defaults::scheduler(),
            node_port_addresses: defaults::node_port_addresses(),
            cluster_ips: defaults::cluster_ips(),
            healthz_bind_address: defaults::healthz_bind_address(),
            connect_timeout: defaults::connect_timeout(),
            sync_period: defaults::sync_period(),
            worker_threads: defaults::worker_threads(),
        }
    }
}

impl ProxyConfig {
    /// Refuses what cannot run on this machine, with a message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        match self.mode {
            Mode::Userspace => {}
            Mode::Ipvs => {
                let loaded = std::path::Path::new("/sys/module/ip_vs").exists();
                return Err(if loaded {
                    "config: key mode: \"ipvs\" is not implemented; use \"userspace\"".into()
                } else {
                    "config: key mode: \"ipvs\" needs the kernel module ip_vs, which this kernel does not have loaded (modprobe ip_vs; it is missing from this machine's kernel); use \"userspace\"".into()
                });
            }
            Mode::Nftables => {}
        }
        if self.node_port_addresses.is_empty() {
            return Err("config: key node_port_addresses: give at least one address".into());
        }
        if self.sync_period.is_zero() {
            return Err("config: key sync_period: must be more than 0".into());
        }
        Ok(())
    }
}

mod defaults {
    use super::*;

    pub fn mode() -> Mode {
        Mode::Userspace
    }
    pub fn scheduler() -> Scheduler {
        Scheduler::RoundRobin
    }
    pub fn node_port_addresses() -> Vec<IpAddr> {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    }
    pub fn cluster_ips() -> ClusterIps {
        ClusterIps::Auto
    }
    pub fn healthz_bind_address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10256))
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn sync_period() -> Duration {
        Duration::from_secs(60)
    }
    pub fn worker_threads() -> usize {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_should_be_kube_proxys() {
        let c: ProxyConfig = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.mode, Mode::Userspace);
        assert_eq!(c.scheduler, Scheduler::RoundRobin);
        assert_eq!(c.healthz_bind_address.port(), 10256);
        assert_eq!(c.sync_period, Duration::from_secs(60));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn ipvs_should_be_refused_naming_the_module() {
        let c: ProxyConfig = toml::from_str("mode = \"ipvs\"").unwrap_or_else(|e| panic!("{e}"));
        let e = c.validate().err().unwrap_or_default();
        assert!(e.contains("ip_vs"), "{e}");
    }

    #[test]
    fn unknown_schedulers_should_be_refused() {
        let e = toml::from_str::<ProxyConfig>("scheduler = \"wrr\"").err();
        assert!(e.is_some());
    }
}
