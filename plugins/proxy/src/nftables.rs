//! The nftables proxier: a `kubernel` table (family `ip`) that DNATs ClusterIP:port and
//! NodePort traffic to the ready endpoints, load-balanced in the kernel with `numgen`
//! (round robin) or `jhash` of the source address (source hashing, and
//! `sessionAffinity: ClientIP`), and rejects connections to Service ports without
//! endpoints. Verdict maps keyed by address . protocol . port jump to one chain per
//! Service port, so a change rewrites only that Service port's chain and map elements
//! (one `nft -f` transaction); the whole table is replaced atomically on start and
//! every `sync_period`.
//!
//! A Service port's chain is one rule that draws an endpoint into the connection mark,
//! `ct mark set numgen inc mod N offset BASE`; back in the NAT hook one rule DNATs every
//! Service connection with `dnat ip to ct mark map @service-endpoints`. Each Service
//! port owns the keys `BASE` .. `BASE + N` of that one map (`BASE` = its slot << 16 |
//! 0x4000, so every key carries the masquerade bit 0x4000). Measured at 10,000
//! Services x 10 endpoints (see the proxy benchmark), this is what keeps changes cheap:
//!
//! - the kernel checks every chain reachable from a hook, rule by rule, in each
//!   transaction that adds a `goto` element or a rule with a checked expression
//!   (`dnat`, `meta`, verdicts): with one DNAT rule per endpoint in every chain that
//!   took ~60 ms per change; the chains' `ct mark` rules need no check, so only a new
//!   Service (a new `goto` element) pays for a (now short) walk;
//! - a data map's element costs the kernel a check per rule using the map: one map
//!   used by a rule in each of 10,000 chains took 18 s to fill, used by two rules it
//!   takes milliseconds;
//! - a change of endpoints that keeps their number only replaces map elements;
//! - an anonymous map per chain made the kernel spend 16 s loading 10,000 Services.
//!
//! `lc` cannot be expressed in nftables; it is applied as `rr` (logged once).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use tracing::warn;

use crate::config::Scheduler;
use crate::libnftables::Nft;
use crate::model::{ServicePort, ServicePortName};
use crate::userspace::Changes;

/// The table's name.
pub const TABLE: &str = "kubernel";

/// The bit of the connection mark of Service traffic, masqueraded on the way out.
const MASQ_MARK: u32 = 0x4000;

/// Endpoints of one Service port that can be programmed (keys `BASE` .. `BASE + N`
/// keep the masquerade bit); more are not used.
const MAX_ENDPOINTS: usize = 0x4000;

/// Service ports that can be programmed (slots of 16 bits of the connection mark).
const MAX_SLOTS: u32 = 1 << 16;

/// The map of every Service port's endpoints.
const ENDPOINTS: &str = "service-endpoints";

/// The table's fixed part: maps, sets, hooks.
const SKELETON: &str = r#"table ip kubernel {
  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
  map service-nodeports { type inet_proto . inet_service : verdict; }
  map service-endpoints { type mark : ipv4_addr . inet_service; }
  set no-endpoint-services { type ipv4_addr . inet_proto . inet_service; }
  set no-endpoint-nodeports { type inet_proto . inet_service; }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
    ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @service-nodeports
  }
  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; meta l4proto tcp ct mark & 0x4000 == 0x4000 dnat ip to ct mark map @service-endpoints; }
  chain nat-output { type nat hook output priority -100; policy accept; jump services; meta l4proto tcp ct mark & 0x4000 == 0x4000 dnat ip to ct mark map @service-endpoints; }
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
    /// The chain's rule; none when the Service port has no endpoints (no chain).
    rule: Option<String>,
    /// The first key of its endpoints in `service-endpoints`.
    base: u32,
    /// `ip . port` of each endpoint, at keys `base`, `base + 1`, ...
    endpoints: Vec<String>,
    /// `(map or set, key)` pairs; map elements jump to `chain`.
    elements: BTreeSet<(&'static str, String)>,
    /// What this was programmed from.
    source: ServicePort,
}

/// How scripts reach the kernel.
enum Runner {
    /// libnftables in this process.
    Library(Nft),
    /// An `nft -f -` process per script.
    Command(Vec<String>),
}

/// Programs the table with libnftables or `nft`.
pub struct NftProxier {
    nft: Runner,
    scheduler: Scheduler,
    programmed: BTreeMap<ServicePortName, Programmed>,
    /// Each Service port's slot: its keys of `service-endpoints` start at `base(slot)`.
    slots: BTreeMap<ServicePortName, u32>,
    /// Slots given back by removed Service ports.
    free_slots: Vec<u32>,
    warned_lc: bool,
}

impl NftProxier {
    /// A proxier running its scripts through libnftables in this process.
    pub fn in_process(scheduler: Scheduler) -> Result<NftProxier, String> {
        Ok(NftProxier::with(Runner::Library(Nft::new()?), scheduler))
    }

    /// A proxier running `nft` as `command` (e.g. `["nft"]`) for each script.
    pub fn new(command: Vec<String>, scheduler: Scheduler) -> NftProxier {
        NftProxier::with(Runner::Command(command), scheduler)
    }

    fn with(nft: Runner, scheduler: Scheduler) -> NftProxier {
        NftProxier {
            nft,
            scheduler,
            programmed: BTreeMap::new(),
            slots: BTreeMap::new(),
            free_slots: Vec::new(),
            warned_lc: false,
        }
    }

    /// Checks that nftables runs and the kernel has nf_tables (by creating the
    /// table, which the first sync replaces; listing would read every rule).
    pub fn check(&mut self) -> Result<(), String> {
        self.apply(&format!("add table ip {TABLE}\n"))
    }

    /// Replaces the whole table with `desired` in one transaction.
    pub fn sync_full(
        &mut self,
        desired: &BTreeMap<ServicePortName, ServicePort>,
    ) -> Result<Changes, String> {
        let gone: Vec<ServicePortName> = self
            .slots
            .keys()
            .filter(|name| !desired.contains_key(*name))
            .cloned()
            .collect();
        self.release_slots(&gone);
        let mut programmed = BTreeMap::new();
        let mut changes = Changes::default();
        for (name, port) in desired {
            let p = self.program(name, port)?;
            if self.programmed.get(name) != Some(&p) {
                changes.services += 1;
            }
            programmed.insert(name.clone(), p);
        }
        let applied = self.apply(&full_script(&programmed));
        self.programmed = programmed;
        if applied.is_err() {
            self.programmed.clear();
        }
        applied.map(|()| changes)
    }

    /// Rewrites only the Service ports whose state differs from what is programmed;
    /// the others cost a comparison of their inputs.
    pub fn sync(
        &mut self,
        desired: &BTreeMap<ServicePortName, ServicePort>,
    ) -> Result<Changes, String> {
        if self.programmed.is_empty() && !desired.is_empty() {
            return self.sync_full(desired);
        }
        // Both maps are sorted by name: one merge pass finds what is gone and what
        // differs from its programmed input.
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        let mut programmed = self.programmed.iter().peekable();
        for (name, port) in desired {
            while let Some((old, _)) = programmed.next_if(|(old, _)| *old < name) {
                gone.push(old.clone());
            }
            match programmed.next_if(|(old, _)| *old == name) {
                Some((_, old)) if old.source == *port => {}
                _ => changed.push((name, port)),
            }
        }
        gone.extend(programmed.map(|(old, _)| old.clone()));
        let mut script = String::new();
        let mut changes = Changes::default();
        for name in &gone {
            if let Some(old) = self.programmed.remove(name) {
                remove_script(&mut script, &old, None);
                changes.services += 1;
            }
        }
        // Removed ports' keys are deleted above, before a new port can reuse them.
        self.release_slots(&gone);
        for (name, port) in changed {
            let new = self.program(name, port)?;
            match self.programmed.get(name) {
                Some(old) if *old == new => {}
                Some(old) => {
                    if old.endpoints != new.endpoints {
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
            self.programmed.insert(name.clone(), new);
        }
        if !script.is_empty() {
            if let Err(e) = self.apply(&script) {
                // What is programmed is unknown now: the next sync rewrites everything.
                self.programmed.clear();
                return Err(e);
            }
        }
        Ok(changes)
    }

    /// Deletes the table.
    pub fn close(&mut self) {
        if let Err(e) = self.apply("table ip kubernel {}\ndelete table ip kubernel\n") {
            warn!(error = %e, "removing the kubernel nftables table");
        }
        self.programmed.clear();
    }

    /// Gives back the slots of the Service ports that are `gone`.
    fn release_slots(&mut self, gone: &[ServicePortName]) {
        for name in gone {
            if let Some(slot) = self.slots.remove(name) {
                self.free_slots.push(slot);
            }
        }
    }

    /// The first `service-endpoints` key of `name`'s range, allocated on first use.
    fn base(&mut self, name: &ServicePortName) -> Result<u32, String> {
        if let Some(slot) = self.slots.get(name) {
            return Ok(base(*slot));
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => u32::try_from(self.slots.len())
                .ok()
                .filter(|s| *s < MAX_SLOTS)
                .ok_or_else(|| {
                    format!("{name}: more than {MAX_SLOTS} Service ports cannot be programmed")
                })?,
        };
        self.slots.insert(name.clone(), slot);
        Ok(base(slot))
    }

    fn program(
        &mut self,
        name: &ServicePortName,
        port: &ServicePort,
    ) -> Result<Programmed, String> {
        let chain = chain_name(name);
        let base = self.base(name)?;
        let mut elements = BTreeSet::new();
        let endpoints: Vec<String> = port
            .endpoints
            .iter()
            .filter_map(|e| match e {
                SocketAddr::V4(e) => Some(format!("{} . {}", e.ip(), e.port())),
                SocketAddr::V6(_) => None,
            })
            .collect();
        if endpoints.len() > MAX_ENDPOINTS {
            warn!(service = %name, endpoints = endpoints.len(), "only the first {MAX_ENDPOINTS} endpoints are used");
        }
        let endpoints: Vec<String> = endpoints.into_iter().take(MAX_ENDPOINTS).collect();
        let has_endpoints = !endpoints.is_empty();
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
        let mut rule = None;
        if has_endpoints {
            let sticky = port.client_ip_affinity || self.scheduler == Scheduler::SourceHash;
            if self.scheduler == Scheduler::LeastConnections && !self.warned_lc {
                self.warned_lc = true;
                warn!("scheduler \"lc\" cannot be expressed in nftables; using \"rr\"");
            }
            let n = endpoints.len();
            let pick = if sticky {
                format!("jhash ip saddr mod {n} seed 0x6b756265 offset {base}")
            } else {
                format!("numgen inc mod {n} offset {base}")
            };
            rule = Some(format!("ct mark set {pick}"));
        }
        Ok(Programmed {
            chain,
            rule,
            base,
            endpoints,
            elements,
            source: port.clone(),
        })
    }

    fn apply(&mut self, script: &str) -> Result<(), String> {
        let command = match &mut self.nft {
            Runner::Library(nft) => return nft.run(script),
            Runner::Command(command) => command,
        };
        let Some((program, args)) = command.split_first() else {
            return Err("no nft command".into());
        };
        let mut child = Command::new(program)
            .args(args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {}: {e} (install nftables)", command.join(" ")))?;
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

/// The first key of a slot: the slot in the upper 16 bits and the masquerade bit.
fn base(slot: u32) -> u32 {
    (slot << 16) | MASQ_MARK
}

/// `svc-<16 hex>`: stable per Service port (kube-proxy hashes names the same way).
fn chain_name(name: &ServicePortName) -> String {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    format!("svc-{:016x}", h.finish())
}

/// The whole table, replacing any previous one in the same transaction: the fixed
/// part, every chain, then every map's and set's elements in one statement each (one
/// `add` per element loads far slower).
fn full_script(programmed: &BTreeMap<ServicePortName, Programmed>) -> String {
    let mut script = String::with_capacity(256 + programmed.len() * 512);
    let _ = writeln!(script, "table ip {TABLE} {{}}\ndelete table ip {TABLE}");
    script.push_str(SKELETON);
    let _ = writeln!(script, "table ip {TABLE} {{");
    let mut elements: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in programmed.values() {
        if let Some(rule) = &p.rule {
            let _ = writeln!(script, "  chain {} {{ {rule}; }}", p.chain);
        }
        for (set, key) in &p.elements {
            let element = if is_map(set) {
                format!("{key} : goto {}", p.chain)
            } else {
                key.clone()
            };
            elements.entry(set).or_default().push(element);
        }
        let endpoints = elements.entry(ENDPOINTS).or_default();
        for (key, endpoint) in (p.base..).zip(&p.endpoints) {
            endpoints.push(format!("{key} : {endpoint}"));
        }
    }
    script.push_str("}\n");
    for (set, list) in elements {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            script,
            "add element ip {TABLE} {set} {{ {} }}",
            list.join(", ")
        );
    }
    script
}

fn is_map(set: &str) -> bool {
    set == "service-ips" || set == "service-nodeports"
}

/// Programs `p`: its chain and rule when they differ from `old` (the same Service
/// port's programmed state, if any), the endpoints and the elements `old` did not have.
fn add_script(script: &mut String, p: &Programmed, old: Option<&Programmed>) {
    if let Some(rule) = &p.rule {
        if old.is_none_or(|o| o.rule.as_ref() != Some(rule)) {
            let _ = writeln!(script, "add chain ip {TABLE} {}", p.chain);
            let _ = writeln!(script, "flush chain ip {TABLE} {}", p.chain);
            let _ = writeln!(script, "add rule ip {TABLE} {} {rule}", p.chain);
        }
    }
    let added: Vec<String> = (p.base..)
        .zip(&p.endpoints)
        .enumerate()
        .filter(|(i, (_, e))| {
            old.is_none_or(|o| o.base != p.base || o.endpoints.get(*i) != Some(*e))
        })
        .map(|(_, (key, e))| format!("{key} : {e}"))
        .collect();
    if !added.is_empty() {
        let _ = writeln!(
            script,
            "add element ip {TABLE} {ENDPOINTS} {{ {} }}",
            added.join(", ")
        );
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
/// not keep: its elements, endpoints, and its chain when it has no endpoints any more.
fn remove_script(script: &mut String, old: &Programmed, new: Option<&Programmed>) {
    for (set, key) in &old.elements {
        if new.is_some_and(|n| n.elements.contains(&(*set, key.clone()))) {
            continue;
        }
        let _ = writeln!(script, "delete element ip {TABLE} {set} {{ {key} }}");
    }
    if old.rule.is_some() && new.is_none_or(|n| n.rule.is_none()) {
        let _ = writeln!(script, "delete chain ip {TABLE} {}", old.chain);
    }
    let removed: Vec<String> = (old.base..)
        .zip(&old.endpoints)
        .enumerate()
        .filter(|(i, (_, e))| {
            new.is_none_or(|n| n.base != old.base || n.endpoints.get(*i) != Some(*e))
        })
        .map(|(_, (key, _))| key.to_string())
        .collect();
    if !removed.is_empty() {
        let _ = writeln!(
            script,
            "delete element ip {TABLE} {ENDPOINTS} {{ {} }}",
            removed.join(", ")
        );
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

    fn programmed(p: &mut NftProxier, port: &ServicePort) -> Programmed {
        p.program(&name(), port).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_service_port_should_jump_to_its_chain_which_dnats_round_robin() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let new = programmed(
            &mut p,
            &port(&["10.1.0.2:8080", "10.1.0.3:8080"], Some(30080)),
        );
        let mut script = String::new();
        add_script(&mut script, &new, None);
        let chain = chain_name(&name());
        let expected = format!(
            "add chain ip kubernel {chain}\n\
             flush chain ip kubernel {chain}\n\
             add rule ip kubernel {chain} ct mark set numgen inc mod 2 offset 16384\n\
             add element ip kubernel service-endpoints {{ 16384 : 10.1.0.2 . 8080, 16385 : 10.1.0.3 . 8080 }}\n\
             add element ip kubernel service-ips {{ 10.96.0.10 . tcp . 80 : goto {chain} }}\n\
             add element ip kubernel service-nodeports {{ tcp . 30080 : goto {chain} }}\n"
        );
        assert_eq!(script, expected);
    }

    #[test]
    fn service_ports_should_own_separate_key_ranges_reused_after_removal() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let other = ServicePortName {
            port: "https".into(),
            ..name()
        };
        let first = programmed(&mut p, &port(&["10.1.0.2:8080"], None));
        let second = p
            .program(&other, &port(&["10.1.0.2:8443"], None))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((first.base, second.base), (0x4000, 0x1_4000));
        p.release_slots(&[name()]);
        let third = ServicePortName {
            port: "admin".into(),
            ..name()
        };
        let reused = p
            .program(&third, &port(&["10.1.0.2:9000"], None))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reused.base, 0x4000);
    }

    #[test]
    fn source_hashing_should_use_jhash_of_the_source() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::SourceHash);
        let new = programmed(&mut p, &port(&["10.1.0.2:8080"], None));
        let rule = new.rule.unwrap_or_default();
        assert!(
            rule.contains("ct mark set jhash ip saddr mod 1 seed 0x6b756265 offset 16384"),
            "{rule}"
        );
    }

    #[test]
    fn losing_every_endpoint_should_move_the_keys_to_the_reject_sets_and_drop_the_chain() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let old = programmed(&mut p, &port(&["10.1.0.2:8080"], Some(30080)));
        let new = programmed(&mut p, &port(&[], Some(30080)));
        let mut script = String::new();
        remove_script(&mut script, &old, Some(&new));
        add_script(&mut script, &new, Some(&old));
        let chain = chain_name(&name());
        let expected = format!(
            "delete element ip kubernel service-ips {{ 10.96.0.10 . tcp . 80 }}\n\
             delete element ip kubernel service-nodeports {{ tcp . 30080 }}\n\
             delete chain ip kubernel {chain}\n\
             delete element ip kubernel service-endpoints {{ 16384 }}\n\
             add element ip kubernel no-endpoint-nodeports {{ tcp . 30080 }}\n\
             add element ip kubernel no-endpoint-services {{ 10.96.0.10 . tcp . 80 }}\n"
        );
        assert_eq!(script, expected);
    }

    #[test]
    fn replacing_endpoints_should_only_replace_map_elements() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let old = programmed(&mut p, &port(&["10.1.0.2:8080", "10.1.0.3:8080"], None));
        let new = programmed(&mut p, &port(&["10.1.0.2:8080", "10.1.0.4:8080"], None));
        let mut script = String::new();
        remove_script(&mut script, &old, Some(&new));
        add_script(&mut script, &new, Some(&old));
        assert_eq!(
            script,
            "delete element ip kubernel service-endpoints { 16385 }\n\
             add element ip kubernel service-endpoints { 16385 : 10.1.0.4 . 8080 }\n"
        );
    }

    #[test]
    fn another_number_of_endpoints_should_rewrite_the_rule() {
        let mut p = NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin);
        let old = programmed(&mut p, &port(&["10.1.0.2:8080"], None));
        let new = programmed(&mut p, &port(&["10.1.0.2:8080", "10.1.0.3:8080"], None));
        let mut script = String::new();
        remove_script(&mut script, &old, Some(&new));
        assert!(script.is_empty(), "{script}");
        add_script(&mut script, &new, Some(&old));
        assert!(script.starts_with("add chain"), "{script}");
        assert!(script.contains("numgen inc mod 2 offset 16384"), "{script}");
        assert!(
            script.ends_with(
                "add element ip kubernel service-endpoints { 16385 : 10.1.0.3 . 8080 }\n"
            ),
            "{script}"
        );
    }
}
