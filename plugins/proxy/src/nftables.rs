//! The nftables proxier: a `kubernel` table (family `ip`) that DNATs ClusterIP:port and
//! NodePort traffic to the ready endpoints, load-balanced in the kernel with `numgen`
//! (round robin) or `jhash` of the source address (source hashing, and
//! `sessionAffinity: ClientIP`), and rejects connections to Service ports without
//! endpoints. Verdict maps keyed by address . protocol . port jump to one chain per
//! Service port, so a change rewrites only that Service port's chain and map elements
//! (one `nft -f` transaction); the whole table is replaced atomically on start and
//! every `sync_period`.
//!
//! A Service port's chain draws the endpoint's index once into the packet mark
//! (`meta mark set numgen inc mod N`) and has one DNAT rule per endpoint matching it:
//! plain rules load fast, where an anonymous map per chain made the kernel spend
//! 16 s loading 10,000 Services (measured; see the proxy benchmark). Packets of new
//! Service connections leave with a small packet mark (0..N-1).
//!
//! `lc` cannot be expressed in nftables; it is applied as `rr` (logged once).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use tracing::warn;

use crate::config::Scheduler;
use crate::model::{ServicePort, ServicePortName};
use crate::userspace::Changes;

/// The table's name.
pub const TABLE: &str = "kubernel";

/// Connection mark of Service traffic, masqueraded on the way out.
const MASQ_MARK: &str = "0x4000";

/// The table's fixed part: maps, sets, hooks.
const SKELETON: &str = r#"table ip kubernel {
  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
  map service-nodeports { type inet_proto . inet_service : verdict; }
  set no-endpoint-services { type ipv4_addr . inet_proto . inet_service; }
  set no-endpoint-nodeports { type inet_proto . inet_service; }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
    ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @service-nodeports
  }
  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
  chain nat-output { type nat hook output priority -100; policy accept; jump services; }
  chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; ct mark & 0x4000 == 0x4000 masquerade; }
  chain reject-no-endpoints {
    ip daddr . meta l4proto . th dport @no-endpoint-services reject with tcp reset
    ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport @no-endpoint-nodeports reject with tcp reset
  }
  chain filter-input { type filter hook input priority -110; policy accept; jump reject-no-endpoints; }
  chain filter-forward { type filter hook forward priority -110; policy accept; jump reject-no-endpoints; }
  chain filter-output { type filter hook output priority -110; policy accept; jump reject-no-endpoints; }
}
"#;

/// One Service port as programmed: its chain (when it has endpoints) and map elements.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Programmed {
    chain: String,
    /// The chain's rules; empty when the Service port has no endpoints (no chain).
    rules: Vec<String>,
    /// `(map or set, key)` pairs; map elements jump to `chain`.
    elements: BTreeSet<(&'static str, String)>,
}

/// Programs the table with `nft`.
pub struct NftProxier {
    nft: Vec<String>,
    scheduler: Scheduler,
    programmed: BTreeMap<ServicePortName, Programmed>,
    warned_lc: bool,
}

impl NftProxier {
    /// A proxier running `nft` as `command` (e.g. `["nft"]`, or prefixed with
    /// `ip netns exec NAME` by the benchmark).
    pub fn new(command: Vec<String>, scheduler: Scheduler) -> NftProxier {
        NftProxier {
            nft: command,
            scheduler,
            programmed: BTreeMap::new(),
            warned_lc: false,
        }
    }

    /// Checks that `nft` runs and the kernel has nf_tables.
    pub fn check(&self) -> Result<(), String> {
        self.apply("list tables\n")
    }

    /// Replaces the whole table with `desired` in one transaction.
    pub fn sync_full(
        &mut self,
        desired: &BTreeMap<ServicePortName, ServicePort>,
    ) -> Result<Changes, String> {
        let mut programmed = BTreeMap::new();
        let mut changes = Changes::default();
        for (name, port) in desired {
            let p = self.program(name, port);
            if self.programmed.get(name) != Some(&p) {
                changes.services += 1;
            }
            programmed.insert(name.clone(), p);
        }
        self.apply(&full_script(&programmed))?;
        self.programmed = programmed;
        Ok(changes)
    }

    /// Rewrites only the Service ports whose state differs from what is programmed.
    pub fn sync(
        &mut self,
        desired: &BTreeMap<ServicePortName, ServicePort>,
    ) -> Result<Changes, String> {
        if self.programmed.is_empty() && !desired.is_empty() {
            return self.sync_full(desired);
        }
        let mut script = String::new();
        let mut changes = Changes::default();
        let mut next = self.programmed.clone();
        for (name, old) in &self.programmed {
            if !desired.contains_key(name) {
                remove_script(&mut script, old, None);
                next.remove(name);
                changes.services += 1;
            }
        }
        for (name, port) in desired {
            let new = self.program(name, port);
            match self.programmed.get(name) {
                Some(old) if *old == new => continue,
                Some(old) => {
                    if old.rules != new.rules {
                        changes.endpoints += 1;
                    }
                    if old.elements != new.elements {
                        changes.services += 1;
                    }
                    remove_script(&mut script, old, Some(&new));
                    add_script(&mut script, &new, Some(old));
                }
                None => {
                    changes.services += 1;
                    add_script(&mut script, &new, None);
                }
            }
            next.insert(name.clone(), new);
        }
        if !script.is_empty() {
            self.apply(&script)?;
        }
        self.programmed = next;
        Ok(changes)
    }

    /// Deletes the table.
    pub fn close(&mut self) {
        if let Err(e) = self.apply("table ip kubernel {}\ndelete table ip kubernel\n") {
            warn!(error = %e, "removing the kubernel nftables table");
        }
        self.programmed.clear();
    }

    fn program(&mut self, name: &ServicePortName, port: &ServicePort) -> Programmed {
        let chain = chain_name(name);
        let mut elements = BTreeSet::new();
        let has_endpoints = !port.endpoints.is_empty();
        let (ip_map, port_map) = if has_endpoints {
            ("service-ips", "service-nodeports")
        } else {
            ("no-endpoint-services", "no-endpoint-nodeports")
        };
        if let Some(IpAddr::V4(ip)) = port.cluster_ip {
            elements.insert((ip_map, format!("{ip} . tcp . {}", port.port)));
        }
        if let Some(node_port) = port.node_port {
            elements.insert((port_map, format!("tcp . {node_port}")));
        }
        let mut rules = Vec::new();
        if has_endpoints {
            let sticky = port.client_ip_affinity || self.scheduler == Scheduler::SourceHash;
            if self.scheduler == Scheduler::LeastConnections && !self.warned_lc {
                self.warned_lc = true;
                warn!("scheduler \"lc\" cannot be expressed in nftables; using \"rr\"");
            }
            let n = port.endpoints.len();
            let pick = if sticky {
                format!("jhash ip saddr mod {n} seed 0x6b756265")
            } else {
                format!("numgen inc mod {n}")
            };
            rules.push(format!(
                "meta l4proto tcp ct mark set {MASQ_MARK} meta mark set {pick}"
            ));
            for (i, e) in port.endpoints.iter().enumerate() {
                rules.push(format!(
                    "meta mark {i} meta l4proto tcp dnat to {}:{}",
                    e.ip(),
                    e.port()
                ));
            }
        }
        Programmed {
            chain,
            rules,
            elements,
        }
    }

    fn apply(&self, script: &str) -> Result<(), String> {
        let Some((program, args)) = self.nft.split_first() else {
            return Err("no nft command".into());
        };
        let mut child = Command::new(program)
            .args(args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {}: {e} (install nftables)", self.nft.join(" ")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("writing to nft: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "nft -f: {}",
                err.lines().take(6).collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

/// `svc-<16 hex>`: stable per Service port (kube-proxy hashes names the same way).
fn chain_name(name: &ServicePortName) -> String {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    format!("svc-{:016x}", h.finish())
}

/// The whole table, replacing any previous one in the same transaction: the fixed
/// part, every chain, then every set's elements in one statement per set (one `add`
/// per element loads far slower).
fn full_script(programmed: &BTreeMap<ServicePortName, Programmed>) -> String {
    let mut script = String::with_capacity(256 + programmed.len() * 512);
    let _ = writeln!(script, "table ip {TABLE} {{}}\ndelete table ip {TABLE}");
    script.push_str(SKELETON);
    let _ = writeln!(script, "table ip {TABLE} {{");
    let mut elements: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in programmed.values() {
        if !p.rules.is_empty() {
            let _ = writeln!(script, "  chain {} {{ {}; }}", p.chain, p.rules.join("; "));
        }
        for (set, key) in &p.elements {
            let element = if is_map(set) {
                format!("{key} : goto {}", p.chain)
            } else {
                key.clone()
            };
            elements.entry(set).or_default().push(element);
        }
    }
    script.push_str("}\n");
    for (set, list) in elements {
        let _ = writeln!(
            script,
            "add element ip {TABLE} {set} {{ {} }}",
            list.join(", ")
        );
    }
    script
}

fn is_map(set: &str) -> bool {
    set.starts_with("service-")
}

/// Programs `p`: its chain and rule when they differ from `old` (the same Service
/// port's programmed state, if any), and the elements `old` did not have.
fn add_script(script: &mut String, p: &Programmed, old: Option<&Programmed>) {
    if !p.rules.is_empty() && old.is_none_or(|o| o.rules != p.rules) {
        let _ = writeln!(script, "add chain ip {TABLE} {}", p.chain);
        let _ = writeln!(script, "flush chain ip {TABLE} {}", p.chain);
        for rule in &p.rules {
            let _ = writeln!(script, "add rule ip {TABLE} {} {rule}", p.chain);
        }
    }
    for (set, key) in &p.elements {
        if old.is_some_and(|o| o.elements.contains(&(*set, key.clone()))) {
            continue;
        }
        if is_map(set) {
            let _ = writeln!(
                script,
                "add element ip {TABLE} {set} {{ {key} : goto {} }}",
                p.chain
            );
        } else {
            let _ = writeln!(script, "add element ip {TABLE} {set} {{ {key} }}");
        }
    }
}

/// Removes what `old` programmed and `new` (the same Service port's next state) does
/// not keep: its elements, and its chain when it has no endpoints any more.
fn remove_script(script: &mut String, old: &Programmed, new: Option<&Programmed>) {
    for (set, key) in &old.elements {
        if new.is_some_and(|n| n.elements.contains(&(*set, key.clone()))) {
            continue;
        }
        let _ = writeln!(script, "delete element ip {TABLE} {set} {{ {key} }}");
    }
    if !old.rules.is_empty() && new.is_none_or(|n| n.rules.is_empty()) {
        let _ = writeln!(script, "delete chain ip {TABLE} {}", old.chain);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn port(endpoints: &[&str], node_port: Option<u16>) -> ServicePort {
        ServicePort {
            cluster_ip: "10.96.0.10".parse().ok(),
            port: 80,
            node_port,
            client_ip_affinity: false,
            endpoints: endpoints
                .iter()
                .filter_map(|e| e.parse::<SocketAddr>().ok())
                .collect(),
        }
    }

    fn name() -> ServicePortName {
        ServicePortName {
            namespace: "default".into(),
            name: "web".into(),
            port: "http".into(),
        }
    }

    #[test]
    fn a_service_port_should_jump_to_its_chain_which_dnats_round_robin() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let programmed = p.program(
            &name(),
            &port(&["10.1.0.2:8080", "10.1.0.3:8080"], Some(30080)),
        );
        let mut script = String::new();
        add_script(&mut script, &programmed, None);
        let chain = chain_name(&name());
        for rule in [
            "meta l4proto tcp ct mark set 0x4000 meta mark set numgen inc mod 2",
            "meta mark 0 meta l4proto tcp dnat to 10.1.0.2:8080",
            "meta mark 1 meta l4proto tcp dnat to 10.1.0.3:8080",
        ] {
            assert!(
                script.contains(&format!("add rule ip kubernel {chain} {rule}\n")),
                "{script}"
            );
        }
        assert!(
            script.contains(&format!(
                "add element ip kubernel service-ips {{ 10.96.0.10 . tcp . 80 : goto {chain} }}"
            )),
            "{script}"
        );
        assert!(
            script.contains(&format!(
                "add element ip kubernel service-nodeports {{ tcp . 30080 : goto {chain} }}"
            )),
            "{script}"
        );
    }

    #[test]
    fn source_hashing_should_use_jhash_of_the_source() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::SourceHash);
        let programmed = p.program(&name(), &port(&["10.1.0.2:8080"], None));
        assert!(programmed.rules[0].contains("jhash ip saddr mod 1"));
    }

    #[test]
    fn losing_every_endpoint_should_move_the_keys_to_the_reject_sets_and_drop_the_chain() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let old = p.program(&name(), &port(&["10.1.0.2:8080"], Some(30080)));
        let new = p.program(&name(), &port(&[], Some(30080)));
        let mut script = String::new();
        remove_script(&mut script, &old, Some(&new));
        add_script(&mut script, &new, Some(&old));
        let chain = chain_name(&name());
        let expected = format!(
            "delete element ip kubernel service-ips {{ 10.96.0.10 . tcp . 80 }}\n\
             delete element ip kubernel service-nodeports {{ tcp . 30080 }}\n\
             delete chain ip kubernel {chain}\n\
             add element ip kubernel no-endpoint-nodeports {{ tcp . 30080 }}\n\
             add element ip kubernel no-endpoint-services {{ 10.96.0.10 . tcp . 80 }}\n"
        );
        assert_eq!(script, expected);
    }

    #[test]
    fn an_endpoint_change_should_only_rewrite_the_chain() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let old = p.program(&name(), &port(&["10.1.0.2:8080"], None));
        let new = p.program(&name(), &port(&["10.1.0.2:8080", "10.1.0.3:8080"], None));
        let mut script = String::new();
        remove_script(&mut script, &old, Some(&new));
        assert!(script.is_empty(), "{script}");
        add_script(&mut script, &new, Some(&old));
        assert!(script.starts_with("add chain"), "{script}");
        assert!(!script.contains("add element"), "{script}");
    }
}
