//! Masquerade of pod traffic leaving the cluster (bridge network), as kubenet did:
//! packets from this node's pod CIDR to an address outside every node's pod CIDR get
//! the node's address, so replies find their way back; pod-to-pod traffic keeps the
//! pod's address (the Kubernetes network model). One nftables table of its own,
//! `ip kubernel-pod-network`, replaced atomically whenever the CIDRs change.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::cidr::Ipv4Cidr;

/// The table's name (family `ip`).
pub const TABLE: &str = "kubernel-pod-network";

/// The nft script that (re)creates the table for pods of `own`, with `all` the pod
/// CIDRs of every node (`own` included).
fn script(own: Ipv4Cidr, all: &[Ipv4Cidr]) -> String {
    let mut cidrs: Vec<String> = all.iter().map(Ipv4Cidr::to_string).collect();
    cidrs.sort();
    cidrs.dedup();
    format!(
        "add table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tset pod-cidrs {{ type ipv4_addr; flags interval; elements = {{ {} }} }}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
         \t\tip saddr {own} ip daddr != @pod-cidrs masquerade\n\
         \t}}\n\
         }}\n",
        cidrs.join(", ")
    )
}

/// Programs the table; the error names what nft said.
pub fn program(own: Ipv4Cidr, all: &[Ipv4Cidr]) -> Result<(), String> {
    let text = script(own, all);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_should_masquerade_only_what_leaves_the_pod_cidrs() {
        let own: Ipv4Cidr = "10.244.1.0/24".parse().expect("cidr");
        let other: Ipv4Cidr = "10.244.0.0/24".parse().expect("cidr");
        let s = script(own, &[own, other, own]);
        assert!(
            s.contains("elements = { 10.244.0.0/24, 10.244.1.0/24 }"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 10.244.1.0/24 ip daddr != @pod-cidrs masquerade"),
            "{s}"
        );
        assert!(
            s.starts_with("add table ip kubernel-pod-network\ndelete table"),
            "{s}"
        );
    }
}
