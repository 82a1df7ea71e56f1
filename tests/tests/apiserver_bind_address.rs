//! The apiserver's `bind_address`, seen from another network namespace: bound to
//! 127.0.0.1 it cannot be reached from there; bound to 0.0.0.0 (the default) it
//! can, and its serving certificate names the address the client dialled.
//!
//! Runs as root inside a network namespace of its own (the apiserver's), with a
//! second namespace (the client's) joined to it by a veth pair on 10.213.0.0/30.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};
use kubernel_e2e::netns::{in_new_netns, inside};
use kubernel_e2e::Cluster;

const SERVER_IP: &str = "10.213.0.1";
const CLIENT_IP: &str = "10.213.0.2";

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The client's namespace; deleted (with its end of the veth pair) when dropped.
struct ClientNetns(String);

impl ClientNetns {
    /// Creates the client namespace and the veth pair to it from the current one.
    fn create() -> Result<ClientNetns> {
        let ns = ClientNetns(format!("kubernel-bind-client-{}", std::process::id()));
        ip(&["netns", "add", &ns.0])?;
        ip(&["link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", "knbind0", "type", "veth", "peer", "name", "knbind1", "netns", &ns.0,
        ])?;
        ip(&["addr", "add", &format!("{SERVER_IP}/30"), "dev", "knbind0"])?;
        ip(&["link", "set", "knbind0", "up"])?;
        for args in [
            vec!["addr", "add", &format!("{CLIENT_IP}/30"), "dev", "knbind1"],
            vec!["link", "set", "knbind1", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", &ns.0, "ip"];
            full.extend(args.iter().map(|s| &**s));
            ip(&full)?;
        }
        Ok(ns)
    }

    /// `kubectl get --raw /healthz` from the client namespace with `kubeconfig`:
    /// (succeeded, stdout + stderr).
    fn healthz(&self, kubeconfig: &Path) -> Result<(bool, String)> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "kubectl", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--request-timeout=5s", "get", "--raw", "/healthz"])
            .output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }
}

impl Drop for ClientNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The cluster's admin kubeconfig, its server changed to the apiserver's veth address.
fn remote_kubeconfig(c: &Cluster, dir: &Path, name: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string(&c.kubeconfig)?;
    let port = c.secure_port()?;
    let text = text.replace(
        &format!("https://127.0.0.1:{port}"),
        &format!("https://{SERVER_IP}:{port}"),
    );
    if !text.contains(SERVER_IP) {
        bail!("admin.kubeconfig does not name https://127.0.0.1:{port}");
    }
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn bind_address_should_decide_who_can_reach_the_apiserver() -> Result<()> {
    if !inside() {
        return in_new_netns("bind_address_should_decide_who_can_reach_the_apiserver");
    }
    let client = ClientNetns::create()?;
    let dir = tempfile::tempdir()?;

    // Loopback only: the other namespace is refused, this one is served.
    let c = Cluster::start("bind_address = \"127.0.0.1\"\n")?;
    let (ok, text) = client.healthz(&remote_kubeconfig(&c, dir.path(), "loopback")?)?;
    if ok || !text.contains("refused") {
        bail!("127.0.0.1 reached from another namespace: {text}");
    }
    assert_eq!(c.ok(&["get", "--raw", "/healthz"])?, "ok");
    drop(c);

    // Every interface (the default): reached, over verified TLS.
    let c = Cluster::start("bind_address = \"0.0.0.0\"\n")?;
    let (ok, text) = client.healthz(&remote_kubeconfig(&c, dir.path(), "all")?)?;
    if !ok || text.trim() != "ok" {
        bail!("0.0.0.0 not reached from another namespace: {text}");
    }
    Ok(())
}
