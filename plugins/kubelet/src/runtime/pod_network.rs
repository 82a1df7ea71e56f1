//! Pod network namespaces of the process runtime (`network = "bridge"`), set up by the
//! standard CNI plugins through the CNI protocol, as containerd does for a sandbox: a
//! named namespace (`ip netns add`, so `/run/netns/<name>` keeps it while no process
//! runs in it), then `bridge` (a veth pair on the node bridge, whose address is the
//! gateway, plus a default route in the pod) with `host-local` IPAM over the node's pod
//! CIDR, then `loopback`. Each namespace is named `kn_<node>_<pod uid>_<sandbox>`, which
//! is also its CNI container id, so a kubelet finds and removes only its own leftovers,
//! even when several kubelets share one host (the lab).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::process::Command;

use crate::cidr::Ipv4Cidr;

/// Where `ip netns add` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The CNI network name (host-local keeps its records in `<data dir>/<name>`).
const NETWORK_NAME: &str = "kubernel";

/// The interface name of the pod's end of the veth pair.
const POD_IFNAME: &str = "eth0";

/// The CNI plugins a bridge network calls.
pub const CNI_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];

/// How pods of one node are attached to its bridge.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    /// `CNI_PATH`: where the plugin executables are.
    bin_dir: PathBuf,
    /// host-local's `dataDir`.
    data_dir: PathBuf,
    /// The node bridge.
    bridge: String,
    /// `kn_<node>_`: the start of this node's namespace names.
    prefix: String,
}

/// A pod's namespace and address, once attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The namespace's name under [`NETNS_DIR`] (also the CNI container id).
    pub netns: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
}

impl PodNetwork {
    /// Pods of node `node` on `bridge`, through the plugins in `bin_dir`, with
    /// host-local's records under `data_dir`; fails naming a missing plugin.
    pub fn new(
        bin_dir: PathBuf,
        data_dir: PathBuf,
        bridge: String,
        node: &str,
    ) -> Result<PodNetwork, String> {
        for plugin in CNI_PLUGINS {
            let path = bin_dir.join(plugin);
            if !path.is_file() {
                return Err(format!(
                    "config: key cni_bin_dir: the CNI plugin {} is missing (network = \"bridge\" needs {}; Debian package containernetworking-plugins)",
                    path.display(),
                    CNI_PLUGINS.join(", ")
                ));
            }
        }
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            format!(
                "config: key cni_data_dir: creating {}: {e}",
                data_dir.display()
            )
        })?;
        Ok(PodNetwork {
            bin_dir,
            data_dir,
            bridge,
            prefix: format!("kn_{node}_"),
        })
    }

    /// The namespace name of sandbox `key` of pod `uid`.
    pub fn netns_name(&self, uid: &str, key: &str) -> String {
        format!("{}{uid}_{key}", self.prefix)
    }

    /// The path processes join (`nsenter --net=<path>`).
    pub fn netns_path(netns: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(netns)
    }

    /// The bridge plugin's config: `cidr`'s first address is the gateway.
    fn bridge_config(&self, cidr: Ipv4Cidr) -> Value {
        let gateway = cidr.host(1).unwrap_or(cidr.base());
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK_NAME,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": cidr.to_string(), "gateway": gateway.to_string()}]],
                "dataDir": self.data_dir,
            }
        })
    }

    /// Runs CNI plugin `plugin` with `command` for `netns` and `config` on stdin; its
    /// stdout (the result) or an error with the plugin's message.
    async fn cni(
        &self,
        plugin: &str,
        command: &str,
        netns: &str,
        config: &Value,
    ) -> Result<Value, String> {
        use tokio::io::AsyncWriteExt;
        let netns_path = Self::netns_path(netns);
        let mut child = Command::new(self.bin_dir.join(plugin))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", netns)
            .env(
                "CNI_NETNS",
                if netns_path.exists() {
                    netns_path.as_os_str()
                } else {
                    "".as_ref()
                },
            )
            .env(
                "CNI_IFNAME",
                if plugin == "loopback" {
                    "lo"
                } else {
                    POD_IFNAME
                },
            )
            .env("CNI_PATH", &self.bin_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("CNI plugin {plugin}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(config.to_string().as_bytes())
                .await
                .map_err(|e| format!("CNI plugin {plugin}: writing its config: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("CNI plugin {plugin}: {e}"))?;
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            let msg = result["msg"].as_str().unwrap_or_default();
            let details = result["details"].as_str().unwrap_or_default();
            return Err(format!(
                "CNI plugin {plugin} {command} failed ({}): {msg} {details} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(result)
    }

    /// Creates namespace `netns`, attaches it to the bridge with an address from `cidr`,
    /// and brings loopback up; on failure nothing is left behind.
    pub async fn attach(&self, netns: &str, cidr: Ipv4Cidr) -> Result<Attachment, String> {
        ip(&["netns", "add", netns]).await?;
        match self.attach_in(netns, cidr).await {
            Ok(ip) => Ok(Attachment {
                netns: netns.to_string(),
                ip,
            }),
            Err(e) => {
                self.detach(netns, Some(cidr)).await;
                Err(e)
            }
        }
    }

    async fn attach_in(&self, netns: &str, cidr: Ipv4Cidr) -> Result<Ipv4Addr, String> {
        let result = self
            .cni("bridge", "ADD", netns, &self.bridge_config(cidr))
            .await?;
        let address = result["ips"][0]["address"].as_str().unwrap_or_default();
        let ip = address
            .split('/')
            .next()
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| format!("CNI plugin bridge returned no IPv4 address: {result}"))?;
        let loopback = json!({"cniVersion": "1.0.0", "name": NETWORK_NAME, "type": "loopback"});
        self.cni("loopback", "ADD", netns, &loopback).await?;
        Ok(ip)
    }

    /// Detaches namespace `netns` (CNI DEL: veth and address released) and deletes it;
    /// failures are logged, and the address record is removed in any case.
    pub async fn detach(&self, netns: &str, cidr: Option<Ipv4Cidr>) {
        if let Some(cidr) = cidr {
            if let Err(e) = self
                .cni("bridge", "DEL", netns, &self.bridge_config(cidr))
                .await
            {
                tracing::warn!(netns, error = %e, "detaching a pod network namespace failed");
            }
        }
        self.release_addresses(&HashSet::new(), Some(netns));
        if Self::netns_path(netns).exists() {
            if let Err(e) = ip(&["netns", "del", netns]).await {
                tracing::warn!(netns, error = %e, "deleting a pod network namespace failed");
            }
        }
    }

    /// Removes this node's namespaces and address records not in `keep` (left by pods
    /// that are gone, e.g. a kubelet killed mid-teardown). Returns what was removed.
    pub fn sweep(&self, keep: &HashSet<String>) -> Vec<String> {
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(NETNS_DIR).into_iter().flatten().flatten();
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&self.prefix) && !keep.contains(&name) {
                let out = std::process::Command::new("ip")
                    .args(["netns", "del", &name])
                    .output();
                match out {
                    Ok(o) if o.status.success() => removed.push(name),
                    Ok(o) => {
                        tracing::warn!(netns = %name, error = %String::from_utf8_lossy(&o.stderr).trim(), "deleting a leftover pod network namespace failed")
                    }
                    Err(e) => {
                        tracing::warn!(netns = %name, error = %e, "deleting a leftover pod network namespace failed")
                    }
                }
            }
        }
        removed.extend(self.release_addresses(keep, None));
        removed
    }

    /// Removes host-local's records of this node's namespaces not in `keep` (or of
    /// `only`); returns the released addresses.
    fn release_addresses(&self, keep: &HashSet<String>, only: Option<&str>) -> Vec<String> {
        let dir = self.data_dir.join(NETWORK_NAME);
        let mut released = Vec::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.parse::<Ipv4Addr>().is_err() {
                continue;
            }
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            let owner = owner.lines().next().unwrap_or_default().trim().to_string();
            let matches = match only {
                Some(n) => owner == n,
                None => owner.starts_with(&self.prefix) && !keep.contains(&owner),
            };
            if matches && std::fs::remove_file(e.path()).is_ok() {
                released.push(name);
            }
        }
        released
    }
}

/// Runs `ip args`; its stderr as the error.
async fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_should_name_a_missing_plugin() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = PodNetwork::new(
            dir.path().join("bin"),
            dir.path().join("data"),
            "kubernel0".into(),
            "n1",
        )
        .expect_err("no plugins");
        assert!(
            err.contains("bridge") && err.contains("cni_bin_dir"),
            "{err}"
        );
    }

    #[test]
    fn bridge_config_should_use_the_first_address_as_gateway() {
        let net = PodNetwork {
            bin_dir: "/usr/lib/cni".into(),
            data_dir: "/tmp/x".into(),
            bridge: "kubernel0".into(),
            prefix: "kn_n1_".into(),
        };
        let c = net.bridge_config("10.244.3.0/24".parse().expect("cidr"));
        assert_eq!(c["ipam"]["ranges"][0][0]["gateway"], "10.244.3.1");
        assert_eq!(c["bridge"], "kubernel0");
        assert_eq!(net.netns_name("u1", "a"), "kn_n1_u1_a");
    }
}
