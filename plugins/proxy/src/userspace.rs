//! The userspace proxier: one TCP listener per NodePort (and ClusterIP, when bound
//! locally) of every Service port that has ready endpoints, forwarding each accepted
//! connection to an endpoint chosen by the scheduler. A Service port without ready
//! endpoints has no listener, so clients get "connection refused" at once.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kubernel_client::CancellationToken;
use parking_lot::RwLock;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::balancer::Backends;
use crate::cluster_ips::ClusterIpDevice;
use crate::config::{ProxyConfig, Scheduler};
use crate::metrics::Metrics;
use crate::model::{ServicePort, ServicePortName};

/// One Service port's live state, shared with its listeners' connections.
struct PortState {
    label: String,
    client_ip_affinity: RwLock<bool>,
    backends: RwLock<Arc<Backends>>,
}

struct Listening {
    port: ServicePortName,
    stop: CancellationToken,
}

/// What a sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// Service ports added, removed or changed (ports, addresses, affinity).
    pub services: u64,
    /// Service ports whose endpoints changed.
    pub endpoints: u64,
}

/// Holds the listeners and routes connections.
pub struct Proxier {
    config: Arc<ProxyConfig>,
    metrics: Metrics,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
    ports: HashMap<ServicePortName, (ServicePort, Arc<PortState>)>,
    listeners: HashMap<SocketAddr, Listening>,
    cluster_ips: Option<ClusterIpDevice>,
}

impl Proxier {
    /// A proxier whose listeners run on `runtime` until `stop`.
    pub fn new(
        config: Arc<ProxyConfig>,
        metrics: Metrics,
        runtime: tokio::runtime::Handle,
        stop: CancellationToken,
        cluster_ips: Option<ClusterIpDevice>,
    ) -> Proxier {
        Proxier {
            config,
            metrics,
            runtime,
            stop,
            ports: HashMap::new(),
            listeners: HashMap::new(),
            cluster_ips,
        }
    }

    /// Makes the listeners and endpoints match `desired`; a listener that cannot bind
    /// is logged and tried again at the next sync.
    pub fn sync(&mut self, desired: &BTreeMap<ServicePortName, ServicePort>) -> Changes {
        let mut changes = Changes::default();
        self.ports.retain(|name, _| {
            let keep = desired.contains_key(name);
            changes.services += u64::from(!keep);
            keep
        });
        let mut wanted: HashMap<SocketAddr, ServicePortName> = HashMap::new();
        let mut local_ips: Vec<IpAddr> = Vec::new();
        for (name, port) in desired {
            match self.ports.get_mut(name) {
                Some((current, state)) => {
                    if current.endpoints != port.endpoints {
                        changes.endpoints += 1;
                        let mut backends = state.backends.write();
                        *backends =
                            Arc::new(Backends::new(port.endpoints.clone(), Some(&backends)));
                    }
                    if (
                        current.cluster_ip,
                        current.port,
                        current.node_port,
                        current.client_ip_affinity,
                    ) != (
                        port.cluster_ip,
                        port.port,
                        port.node_port,
                        port.client_ip_affinity,
                    ) {
                        changes.services += 1;
                        *state.client_ip_affinity.write() = port.client_ip_affinity;
                    }
                    *current = port.clone();
                }
                None => {
                    changes.services += 1;
                    changes.endpoints += u64::from(!port.endpoints.is_empty());
                    let state = Arc::new(PortState {
                        label: name.to_string(),
                        client_ip_affinity: RwLock::new(port.client_ip_affinity),
                        backends: RwLock::new(Arc::new(Backends::new(
                            port.endpoints.clone(),
                            None,
                        ))),
                    });
                    self.ports.insert(name.clone(), (port.clone(), state));
                }
            }
            if port.endpoints.is_empty() {
                continue;
            }
            if let Some(node_port) = port.node_port {
                for ip in &self.config.node_port_addresses {
                    wanted.insert(SocketAddr::new(*ip, node_port), name.clone());
                }
            }
            if let (Some(ip), Some(_)) = (port.cluster_ip, &self.cluster_ips) {
                local_ips.push(ip);
                wanted.insert(SocketAddr::new(ip, port.port), name.clone());
            }
        }
        if let Some(device) = &mut self.cluster_ips {
            device.sync(&local_ips);
        }
        self.listeners.retain(|addr, l| {
            let keep = wanted.get(addr) == Some(&l.port);
            if !keep {
                l.stop.cancel();
                debug!(%addr, service = %l.port, "listener closed");
            }
            keep
        });
        for (addr, name) in wanted {
            if self.listeners.contains_key(&addr) {
                continue;
            }
            let Some((_, state)) = self.ports.get(&name) else {
                continue;
            };
            match self.listen(addr, state.clone()) {
                Ok(stop) => {
                    info!(%addr, service = %name, "listening");
                    self.listeners.insert(addr, Listening { port: name, stop });
                }
                Err(e) => {
                    warn!(%addr, service = %name, error = %e, "cannot listen; retrying at the next sync")
                }
            }
        }
        changes
    }

    /// Binds `addr` and serves it until the listener is dropped from the map or the proxier stops.
    fn listen(
        &self,
        addr: SocketAddr,
        state: Arc<PortState>,
    ) -> std::io::Result<CancellationToken> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let stop = self.stop.child_token();
        let forwarder = Forwarder {
            state,
            scheduler: self.config.scheduler,
            connect_timeout: self.config.connect_timeout,
            metrics: self.metrics.clone(),
        };
        let token = stop.clone();
        let _guard = self.runtime.enter();
        let listener = TcpListener::from_std(std_listener)?;
        self.runtime.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let f = forwarder.clone();
                        tokio::spawn(async move { f.forward(stream, peer).await });
                    }
                    Err(e) => {
                        warn!(%addr, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(stop)
    }

    /// Closes every listener (the ClusterIP addresses are removed too).
    pub fn close(&mut self) {
        for l in self.listeners.values() {
            l.stop.cancel();
        }
        self.listeners.clear();
        if let Some(device) = &mut self.cluster_ips {
            device.sync(&[]);
        }
    }
}

#[derive(Clone)]
struct Forwarder {
    state: Arc<PortState>,
    scheduler: Scheduler,
    connect_timeout: Duration,
    metrics: Metrics,
}

impl Forwarder {
    /// Connects `client` to an endpoint (the next one when a connect fails) and copies
    /// bytes both ways until either side closes.
    async fn forward(self, mut client: TcpStream, peer: SocketAddr) {
        let _ = client.set_nodelay(true);
        let backends = self.state.backends.read().clone();
        let scheduler = if *self.state.client_ip_affinity.read() {
            Scheduler::SourceHash
        } else {
            self.scheduler
        };
        for attempt in 0..backends.endpoints().len() {
            let Some(endpoint) = backends.pick(scheduler, peer.ip(), attempt) else {
                break;
            };
            let connected =
                tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint)).await;
            let mut upstream = match connected {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(service = %self.state.label, %endpoint, error = %e, "endpoint refused; trying the next");
                    self.metrics
                        .connect_errors
                        .with_label_values(&[&self.state.label])
                        .inc();
                    continue;
                }
                Err(_) => {
                    self.metrics
                        .connect_errors
                        .with_label_values(&[&self.state.label])
                        .inc();
                    continue;
                }
            };
            let _ = upstream.set_nodelay(true);
            let _open = backends.open(&endpoint);
            let endpoint_label = endpoint.to_string();
            let labels = [self.state.label.as_str(), endpoint_label.as_str()];
            self.metrics.connections.with_label_values(&labels).inc();
            let active = self.metrics.active.with_label_values(&labels);
            active.inc();
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            active.dec();
            return;
        }
        debug!(service = %self.state.label, %peer, "no endpoint could take the connection; closing it");
    }
}
