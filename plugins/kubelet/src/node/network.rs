//! The node side of the bridge network: watches the Nodes, takes this node's
//! `spec.podCIDR` (pods wait for it), and keeps one host route per other node,
//! `<its podCIDR> via <its InternalIP>`, so pods on different nodes reach each other;
//! a route goes when its node goes or changes. IP forwarding is turned on in the
//! kubelet's network namespace, and traffic from the pods to addresses outside every
//! node's pod CIDR is masqueraded ([`masquerade`](super::masquerade)).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kubernel_client::{Api, ListParams};

use super::Shared;
use crate::cidr::Ipv4Cidr;
use crate::watcher::{self, Seen};

/// The route to one node's pods.
type Route = (Ipv4Cidr, Ipv4Addr);

/// A Node's `spec.podCIDR`, if it has a valid one.
fn pod_cidr(node: &Node) -> Option<Ipv4Cidr> {
    let text = node.spec.as_ref()?.pod_cidr.as_deref()?;
    match text.parse() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(node = ?node.metadata.name, error = %e, "ignoring a Node's spec.podCIDR");
            None
        }
    }
}

/// The route to a Node's pods: its pod CIDR via its InternalIP.
fn route_of(node: &Node) -> Option<Route> {
    let ip = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    Some((pod_cidr(node)?, ip))
}

/// Runs `ip route <verb> <cidr> via <gateway>`; failures are logged.
fn ip_route(verb: &str, (cidr, via): Route) -> bool {
    let (cidr, via) = (cidr.to_string(), via.to_string());
    let args = ["route", verb, cidr.as_str(), "via", via.as_str()];
    match std::process::Command::new("ip").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            tracing::warn!(command = %format!("ip {}", args.join(" ")), error = %String::from_utf8_lossy(&o.stderr).trim(), "programming a pod CIDR route failed");
            false
        }
        Err(e) => {
            tracing::warn!(command = %format!("ip {}", args.join(" ")), error = %e, "programming a pod CIDR route failed");
            false
        }
    }
}

struct Routes {
    shared: Arc<Shared>,
    /// Routes in place, by node name.
    installed: HashMap<String, Route>,
    /// Nodes of the list in progress.
    listed: HashSet<String>,
    /// What the masquerade table was last programmed with (own CIDR, every CIDR).
    masquerading: Option<(Ipv4Cidr, Vec<Ipv4Cidr>)>,
}

impl Routes {
    fn applied(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.listed.insert(name.clone());
        if name == self.shared.node_name {
            let cidr = pod_cidr(node);
            let mut own = self.shared.pod_cidr.lock();
            if *own != cidr {
                tracing::info!(node = %name, pod_cidr = ?cidr.map(|c| c.to_string()), "the node's pod CIDR");
                *own = cidr;
                if let Some(cidr) = cidr {
                    let runtime = self.shared.runtime.clone();
                    tokio::spawn(async move {
                        if let Err(e) = runtime.update_pod_cidr(cidr).await {
                            tracing::warn!(pod_cidr = %cidr, error = %e, "telling the runtime the pod CIDR failed");
                        }
                    });
                }
            }
            return;
        }
        let wanted = route_of(node);
        if self.installed.get(&name) == wanted.as_ref() {
            return;
        }
        self.remove(&name);
        if let Some(route) = wanted {
            if ip_route("replace", route) {
                tracing::info!(node = %name, pod_cidr = %route.0, via = %route.1, "route to the node's pods");
                self.installed.insert(name, route);
            }
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(route) = self.installed.remove(name) {
            ip_route("del", route);
            tracing::info!(node = %name, pod_cidr = %route.0, "route to the node's pods removed");
        }
    }

    /// Reprograms the masquerade table when this node's or another node's pod CIDR
    /// changed.
    fn sync_masquerade(&mut self) {
        let Some(own) = *self.shared.pod_cidr.lock() else {
            return;
        };
        let mut all: Vec<Ipv4Cidr> = self.installed.values().map(|r| r.0).collect();
        all.push(own);
        all.sort_by_key(|c| (u32::from(c.base()), c.prefix()));
        let wanted = Some((own, all));
        if self.masquerading == wanted {
            return;
        }
        if let Some((own, all)) = &wanted {
            match super::masquerade::program(*own, all) {
                Ok(()) => {
                    tracing::info!(pod_cidr = %own, pod_cidrs = all.len(), "pod traffic leaving the pod CIDRs is masqueraded");
                    self.masquerading = wanted;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "programming the pod masquerade failed: pods cannot reach addresses outside the cluster")
                }
            }
        }
    }

    fn list_done(&mut self) {
        self.shared
            .nodes_listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let listed = std::mem::take(&mut self.listed);
        let gone: Vec<String> = self
            .installed
            .keys()
            .filter(|n| !listed.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.remove(&n);
        }
    }
}

/// Keeps this node's pod CIDR and the routes to the other nodes' pods until shutdown.
pub(super) async fn run(shared: Arc<Shared>) {
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
        tracing::warn!(error = %e, "turning on IP forwarding failed: pods cannot reach other nodes");
    }
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut routes = Routes {
        shared: shared.clone(),
        installed: HashMap::new(),
        listed: HashSet::new(),
        masquerading: None,
    };
    let params = ListParams {
        limit: 500,
        ..ListParams::default()
    };
    watcher::run(api, params, shared.shutdown.clone(), move |seen| {
        match seen {
            // The masquerade waits for the full list (every node's CIDR known).
            Seen::Page(nodes) => return nodes.iter().for_each(|n| routes.applied(n)),
            Seen::Listed => routes.list_done(),
            Seen::Applied(n) => routes.applied(&n),
            Seen::Deleted(n) => {
                let name = n.metadata.name.unwrap_or_default();
                if name == routes.shared.node_name {
                    *routes.shared.pod_cidr.lock() = None;
                } else {
                    routes.remove(&name);
                }
            }
        }
        routes.sync_masquerade();
    })
    .await;
}
