//! The kubelet's `[plugin.config]` table; the field docs are the user documentation.

use std::collections::BTreeMap;
use std::time::Duration;

use kubernel_client::ClientConfig;
use serde::Deserialize;

use crate::cidr::Ipv4Cidr;

/// Address bits each simulated node's pod CIDR spans (`/24`: 254 pod IPs per node).
pub const NODE_CIDR_PREFIX: u8 = 24;

/// A config value the kubelet refuses. Retrying does not help: fix the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: key {key}: {message}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

/// Which container runtime runs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Simulated nodes (like KWOK): many Nodes in one plugin, pods "run" at once.
    Sim,
    /// One real node: containers are host processes (images are not pulled).
    Process,
    /// One real node whose containers run in a CRI runtime (containerd, CRI-O) reached
    /// at `runtime_endpoint`; everything the process runtime's keys say applies too.
    Cri,
}

/// How the process runtime connects pods (`network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Pods share the node's network: podIP is the node's address.
    Host,
    /// Each pod gets its own network namespace on the node bridge, with an address from
    /// the Node's `spec.podCIDR` (needs root).
    Bridge,
    /// `bridge` when the kubelet runs as root, `host` otherwise.
    Auto,
}

/// A taint every simulated node carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaintTemplate {
    /// Taint key, e.g. `dedicated`.
    pub key: String,
    /// Taint value (may be empty).
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// The kubelet plugin's configuration.
///
/// ```toml
/// [plugin.config]
/// runtime = "sim"
/// nodes = 1000
/// zones = ["zone-a", "zone-b", "zone-c"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletConfig {
    /// Container runtime: `"sim"` simulates `nodes` nodes whose pods run at once
    /// (no process is started, no address is ever contacted); `"process"` is one real
    /// node whose containers are host processes.
    pub runtime: RuntimeKind,
    /// Process: the Node's name (default: the host name, lowercased).
    #[serde(default)]
    pub node_name: Option<String>,
    /// Process: where pod directories (logs, volumes, state) live (default:
    /// `<plugin data dir>/pods`).
    #[serde(default)]
    pub root_dir: Option<std::path::PathBuf>,
    /// Process: the node's `InternalIP`, also the IP of every pod sharing the node's
    /// network (`network = "host"`, `hostNetwork` pods); other nodes route this node's
    /// pod CIDR through it.
    #[serde(default = "defaults::node_ip")]
    pub node_ip: std::net::Ipv4Addr,
    /// Process: the pod network. `"host"` (the default): pods share the node's network
    /// and podIP is `node_ip`. `"bridge"` (root): each pod that is not `hostNetwork`
    /// gets its own network namespace, a veth pair on the bridge `bridge_name` whose
    /// address is the first of the Node's `spec.podCIDR`, an address from that CIDR and
    /// a default route, set up by the standard CNI plugins (bridge, host-local,
    /// loopback) in `cni_bin_dir`; routes to the other nodes' pod CIDRs go through their
    /// InternalIP. `"auto"`: bridge when running as root, else host.
    #[serde(default = "defaults::network")]
    pub network: NetworkMode,
    /// Process, bridge network: the node bridge (upstream's CNI examples say `cni0`).
    #[serde(default = "defaults::bridge_name")]
    pub bridge_name: String,
    /// Process, bridge network: where the CNI plugin executables are (`CNI_PATH`;
    /// Debian's `containernetworking-plugins` puts them in /usr/lib/cni).
    #[serde(default = "defaults::cni_bin_dir")]
    pub cni_bin_dir: std::path::PathBuf,
    /// Process, bridge network: the host-local IPAM's allocation records (default:
    /// `<plugin data dir>/cni`); one per node, never shared by two kubelets.
    #[serde(default)]
    pub cni_data_dir: Option<std::path::PathBuf>,
    /// Process: address the kubelet API (logs, `/pods`, `/healthz`) listens on.
    #[serde(default = "defaults::node_ip")]
    pub address: std::net::Ipv4Addr,
    /// Process: port of the kubelet API (upstream 10250; 0 picks a free port).
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// Process: the kubelet API's serving certificate and key (PEM files, upstream
    /// `tlsCertFile`/`tlsPrivateKeyFile`). Unset: a self-signed pair made at the
    /// first start under `<plugin data dir>/pki/`.
    #[serde(default)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// Key of `tls_cert_file`.
    #[serde(default)]
    pub tls_private_key_file: Option<std::path::PathBuf>,
    /// Process: the CA whose client certificates the kubelet API takes (upstream
    /// `authentication.x509.clientCAFile`). Unset: the cluster CA of the kubelet's
    /// kubeconfig (or of the kernel's `pki/ca.crt`).
    #[serde(default)]
    pub client_ca_file: Option<std::path::PathBuf>,
    /// Process: how often the node status is checked and posted when it changed
    /// (upstream `nodeStatusUpdateFrequency`: 10 s).
    #[serde(
        default = "defaults::node_status_update_frequency",
        with = "humantime_serde"
    )]
    pub node_status_update_frequency: Duration,
    /// CRI: the runtime's gRPC socket (`unix://` path; upstream
    /// `containerRuntimeEndpoint`). While it does not answer the node is NotReady and
    /// the kubelet keeps retrying.
    #[serde(default = "defaults::runtime_endpoint")]
    pub runtime_endpoint: String,
    /// CRI: where the runtime writes container logs, one directory per pod
    /// (`<dir>/<namespace>_<pod>_<uid>/<container>/<restart>.log`, CRI log format).
    #[serde(default = "defaults::pod_log_dir")]
    pub pod_log_dir: std::path::PathBuf,
    /// Process and CRI: how often every pod worker syncs its pod even without a change,
    /// and how often the runtime is relisted (PLEG) (1 s).
    #[serde(default = "defaults::pod_resync_interval", with = "humantime_serde")]
    pub pod_resync_interval: Duration,
    /// Process: first delay before restarting a crashed container (upstream 10 s); it
    /// doubles at every crash up to `crash_loop_backoff_max`.
    #[serde(default = "defaults::crash_loop_backoff", with = "humantime_serde")]
    pub crash_loop_backoff: Duration,
    /// Process: a container log file larger than this is rotated (upstream
    /// `containerLogMaxSize`: `10Mi`).
    #[serde(default = "defaults::container_log_max_size")]
    pub container_log_max_size: String,
    /// Process: log files kept per container, the current one included (upstream
    /// `containerLogMaxFiles`: 5; at least 2).
    #[serde(default = "defaults::container_log_max_files")]
    pub container_log_max_files: usize,
    /// Process: longest delay between two restarts of a crashing container (upstream 5 min).
    #[serde(default = "defaults::crash_loop_backoff_max", with = "humantime_serde")]
    pub crash_loop_backoff_max: Duration,
    /// How to reach the apiserver (default: the `admin.kubeconfig` the apiserver
    /// writes into the kernel's data dir).
    #[serde(default)]
    pub client: ClientConfig,
    /// Process/CRI: TLS bootstrap (upstream `--bootstrap-kubeconfig`). When
    /// `client.kubeconfig` does not exist, this kubeconfig (a bootstrap token) asks
    /// the cluster for the node's client certificate and `client.kubeconfig` is
    /// written with it.
    #[serde(default)]
    pub bootstrap_kubeconfig: Option<std::path::PathBuf>,
    /// How long the TLS bootstrap waits for its certificate to be approved and signed.
    #[serde(default = "defaults::tls_bootstrap_timeout", with = "humantime_serde")]
    pub tls_bootstrap_timeout: Duration,
    /// Threads of the kubelet's own async runtime.
    #[serde(default = "defaults::worker_threads")]
    pub worker_threads: usize,
    /// Most API requests in flight at once, across all nodes and pods.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// How often each node's Lease in `kube-node-lease` is renewed (upstream: 10 s,
    /// a quarter of the lease duration). Sim renewals are spread over the interval.
    #[serde(default = "defaults::lease_renew_interval", with = "humantime_serde")]
    pub lease_renew_interval: Duration,
    /// `spec.leaseDurationSeconds` of the node Leases (upstream `nodeLeaseDurationSeconds`: 40).
    #[serde(default = "defaults::lease_duration_seconds")]
    pub lease_duration_seconds: i32,
    /// How often a node posts its status when nothing changed (upstream
    /// `nodeStatusReportFrequency`: 5 min). A changed status is posted at once.
    #[serde(
        default = "defaults::node_status_report_interval",
        with = "humantime_serde"
    )]
    pub node_status_report_interval: Duration,
    /// Sim: how many nodes to simulate.
    #[serde(default = "defaults::nodes")]
    pub nodes: u32,
    /// Sim: node names are this prefix plus the node's index (`sim-node-0`, `sim-node-1`, ...).
    #[serde(default = "defaults::node_name_prefix")]
    pub node_name_prefix: String,
    /// Sim: `status.capacity` of every node (Kubernetes quantities).
    #[serde(default = "defaults::capacity")]
    pub capacity: BTreeMap<String, String>,
    /// Sim: `status.allocatable` entries that differ from `capacity` (the rest equal capacity).
    #[serde(default)]
    pub allocatable: BTreeMap<String, String>,
    /// Extra labels of every node (process: node-role labels such as
    /// `node-role.kubernetes.io/control-plane = ""`). Sim: extra labels of every node. Always set as well: `kubernetes.io/hostname`,
    /// `kubernetes.io/os=linux`, `kubernetes.io/arch`, `kubernel.io/sim=true`, and
    /// `topology.kubernetes.io/zone` when `zones` is not empty.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints of the node (process) or of every simulated node (sim).
    #[serde(default)]
    pub taints: Vec<TaintTemplate>,
    /// Sim: zones spread round-robin over the nodes as `topology.kubernetes.io/zone`
    /// (node i is in `zones[i % len]`); empty: no zone label.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Sim: `kubernetes.io/arch` and `nodeInfo.architecture` of the nodes.
    #[serde(default = "defaults::architecture")]
    pub architecture: String,
    /// Sim: nodes whose kubelet is "down" from the start: no Lease renewal, no status,
    /// no pod handling. At run time, annotate a Node `kubernel.io/sim-paused=true`
    /// to pause it and remove the annotation to resume it.
    #[serde(default)]
    pub paused_nodes: Vec<String>,
    /// Sim: whether the simulated nodes run the pods bound to them (start them,
    /// report them Running, finalize them when deleted). `false` makes the nodes
    /// objects only, as scheduler_perf's fake nodes are: bound pods stay `Pending`
    /// and deleted ones `Terminating`, and the scheduler can be measured alone.
    #[serde(default = "defaults::run_pods")]
    pub run_pods: bool,
    /// Sim: range the nodes' pod CIDRs are cut from, one /24 per node in order
    /// (node i gets the i-th /24); pods get IPs from their node's /24.
    #[serde(default = "defaults::cluster_cidr")]
    pub cluster_cidr: Ipv4Cidr,
    /// Sim: range of the nodes' fake `InternalIP` addresses (node i gets the
    /// (i+1)-th address). Nothing ever connects to them.
    #[serde(default = "defaults::node_ip_cidr")]
    pub node_ip_cidr: Ipv4Cidr,
}

mod defaults {
    use super::*;

    pub fn network() -> NetworkMode {
        NetworkMode::Host
    }
    pub fn bridge_name() -> String {
        "kubernel0".into()
    }
    pub fn cni_bin_dir() -> std::path::PathBuf {
        "/usr/lib/cni".into()
    }
    pub fn worker_threads() -> usize {
        2
    }
    pub fn max_in_flight() -> usize {
        32
    }
    pub fn lease_renew_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn lease_duration_seconds() -> i32 {
        40
    }
    pub fn node_status_report_interval() -> Duration {
        Duration::from_secs(300)
    }
    pub fn node_ip() -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::LOCALHOST
    }
    pub fn port() -> u16 {
        10250
    }
    pub fn node_status_update_frequency() -> Duration {
        Duration::from_secs(10)
    }
    pub fn runtime_endpoint() -> String {
        "unix:///run/containerd/containerd.sock".into()
    }
    pub fn pod_log_dir() -> std::path::PathBuf {
        "/var/log/pods".into()
    }
    pub fn pod_resync_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn container_log_max_size() -> String {
        "10Mi".into()
    }
    pub fn container_log_max_files() -> usize {
        5
    }
    pub fn crash_loop_backoff() -> Duration {
        Duration::from_secs(10)
    }
    pub fn crash_loop_backoff_max() -> Duration {
        Duration::from_secs(300)
    }
    pub fn run_pods() -> bool {
        true
    }
    pub fn nodes() -> u32 {
        1000
    }
    pub fn tls_bootstrap_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn node_name_prefix() -> String {
        "sim-node-".into()
    }
    pub fn capacity() -> BTreeMap<String, String> {
        [
            ("cpu", "32"),
            ("memory", "256Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "1Ti"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
    pub fn architecture() -> String {
        "amd64".into()
    }
    pub fn cluster_cidr() -> Ipv4Cidr {
        Ipv4Cidr::literal([10, 128, 0, 0], 10)
    }
    pub fn node_ip_cidr() -> Ipv4Cidr {
        Ipv4Cidr::literal([10, 200, 0, 0], 16)
    }
}

impl KubeletConfig {
    /// Checks the values serde cannot: ranges, name syntax, enough addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key, message: String| Err(ConfigError { key, message });
        if self.worker_threads == 0 {
            return fail("worker_threads", "must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return fail("max_in_flight", "must be at least 1".into());
        }
        if self.lease_renew_interval.is_zero() {
            return fail("lease_renew_interval", "must be more than 0s".into());
        }
        if self.lease_duration_seconds <= 0 {
            return fail(
                "lease_duration_seconds",
                format!("{} is not a positive number", self.lease_duration_seconds),
            );
        }
        if self.node_status_report_interval.is_zero() {
            return fail("node_status_report_interval", "must be more than 0s".into());
        }
        if self.runtime == RuntimeKind::Cri && !self.runtime_endpoint.starts_with("unix://") {
            return fail(
                "runtime_endpoint",
                format!(
                    "{:?} is not a unix:// socket address (e.g. unix:///run/containerd/containerd.sock)",
                    self.runtime_endpoint
                ),
            );
        }
        if matches!(self.runtime, RuntimeKind::Process | RuntimeKind::Cri) {
            if !self.run_pods {
                return fail(
                    "run_pods",
                    "false is only for the sim runtime: a real node always runs its pods".into(),
                );
            }
            return self.validate_process();
        }
        let subnets = self.cluster_cidr.subnet_count(NODE_CIDR_PREFIX);
        if u64::from(self.nodes) > subnets {
            return fail(
                "nodes",
                format!(
                    "{} nodes need {} /{NODE_CIDR_PREFIX} pod CIDRs but cluster_cidr {} holds {subnets}",
                    self.nodes, self.nodes, self.cluster_cidr
                ),
            );
        }
        if u64::from(self.nodes) + 2 > self.node_ip_cidr.size() {
            return fail(
                "nodes",
                format!(
                    "{} nodes do not fit node_ip_cidr {}",
                    self.nodes, self.node_ip_cidr
                ),
            );
        }
        let last = format!("{}{}", self.node_name_prefix, self.nodes.saturating_sub(1));
        if !is_dns_subdomain(&last) {
            return fail(
                "node_name_prefix",
                format!(
                    "{:?} makes node names like {last:?} that are not DNS subdomains",
                    self.node_name_prefix
                ),
            );
        }
        self.validate_taints()?;
        for (key, quantity) in self.capacity.iter().chain(&self.allocatable) {
            if quantity.trim().is_empty() {
                return fail(
                    "capacity",
                    format!("resource {key:?} has an empty quantity"),
                );
            }
        }
        Ok(())
    }
}

impl KubeletConfig {
    fn validate_process(&self) -> Result<(), ConfigError> {
        let fail = |key, message: String| Err(ConfigError { key, message });
        if let Some(name) = &self.node_name {
            if !is_dns_subdomain(name) {
                return fail(
                    "node_name",
                    format!(
                        "{name:?} is not a DNS subdomain (lowercase letters, digits, '-', '.')"
                    ),
                );
            }
        }
        for (key, d) in [
            (
                "node_status_update_frequency",
                self.node_status_update_frequency,
            ),
            ("pod_resync_interval", self.pod_resync_interval),
            ("crash_loop_backoff", self.crash_loop_backoff),
        ] {
            if d.is_zero() {
                return fail(key, "must be more than 0s".into());
            }
        }
        if self.crash_loop_backoff_max < self.crash_loop_backoff {
            return fail(
                "crash_loop_backoff_max",
                format!(
                    "{:?} is shorter than crash_loop_backoff {:?}",
                    self.crash_loop_backoff_max, self.crash_loop_backoff
                ),
            );
        }
        if crate::runtime::cgroups::memory_bytes(&self.container_log_max_size)
            .is_none_or(|b| b == 0)
        {
            return fail(
                "container_log_max_size",
                format!(
                    "{:?} is not a positive quantity like 10Mi",
                    self.container_log_max_size
                ),
            );
        }
        if self.bridge_name.is_empty()
            || self.bridge_name.len() > 15
            || !self
                .bridge_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return fail(
                "bridge_name",
                format!(
                    "{:?} is not a Linux interface name (1 to 15 letters, digits, '-', '_', '.')",
                    self.bridge_name
                ),
            );
        }
        if self.container_log_max_files < 2 {
            return fail(
                "container_log_max_files",
                format!("{} is less than 2", self.container_log_max_files),
            );
        }
        self.validate_taints()
    }

    /// Whether pods get their own network namespaces: `bridge`, or `auto` as root.
    pub fn bridge_network(&self) -> bool {
        match self.network {
            NetworkMode::Host => false,
            NetworkMode::Bridge => true,
            NetworkMode::Auto => rustix::process::geteuid().is_root(),
        }
    }

    /// `container_log_max_size` in bytes (validated).
    pub fn container_log_max_bytes(&self) -> u64 {
        crate::runtime::cgroups::memory_bytes(&self.container_log_max_size).unwrap_or(10 << 20)
    }

    fn validate_taints(&self) -> Result<(), ConfigError> {
        for t in &self.taints {
            if !matches!(
                t.effect.as_str(),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(ConfigError {
                    key: "taints",
                    message: format!(
                        "taint {:?}: effect {:?} is not NoSchedule, PreferNoSchedule or NoExecute",
                        t.key, t.effect
                    ),
                });
            }
        }
        Ok(())
    }
}

/// True when `name` is a valid DNS-1123 subdomain (what Node names must be).
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KubeletConfig, String> {
        toml::from_str::<KubeletConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn config_should_default_the_cri_endpoint_and_refuse_one_that_is_not_unix() {
        let mut c = parse("runtime = \"cri\"").expect("config");
        assert_eq!(c.runtime, RuntimeKind::Cri);
        assert_eq!(c.runtime_endpoint, "unix:///run/containerd/containerd.sock");
        assert_eq!(c.pod_log_dir, std::path::PathBuf::from("/var/log/pods"));
        assert!(c.validate().is_ok());
        c.runtime_endpoint = "tcp://127.0.0.1:1".into();
        let err = c.validate().expect_err("tcp endpoint").to_string();
        assert!(
            err.contains("runtime_endpoint") && err.contains("tcp://127.0.0.1:1"),
            "{err}"
        );
    }

    #[test]
    fn config_should_default_every_sim_key() {
        let c = parse("runtime = \"sim\"").expect("config");
        assert_eq!(c.nodes, 1000);
        assert_eq!(c.node_name_prefix, "sim-node-");
        assert_eq!(c.capacity.get("pods").map(String::as_str), Some("110"));
        assert_eq!(c.lease_renew_interval, Duration::from_secs(10));
        assert_eq!(c.cluster_cidr.to_string(), "10.128.0.0/10");
        assert_eq!(c.node_ip_cidr.to_string(), "10.200.0.0/16");
        assert!(c.run_pods);
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn config_should_refuse_unknown_keys_and_runtimes() {
        let err = parse("runtime = \"sim\"\nnodez = 3").expect_err("unknown key");
        assert!(err.contains("nodez"), "{err}");
        let err = parse("runtime = \"docker\"").expect_err("unknown runtime");
        assert!(err.contains("docker"), "{err}");
    }

    #[test]
    fn validate_should_name_the_key_and_value() {
        let mut c =
            parse("runtime = \"sim\"\ncluster_cidr = \"10.0.0.0/22\"\nnodes = 5").expect("config");
        let err = c.validate().expect_err("too few CIDRs").to_string();
        assert!(
            err.contains("nodes") && err.contains("10.0.0.0/22"),
            "{err}"
        );
        c.nodes = 4;
        c.node_name_prefix = "Sim_".into();
        let err = c.validate().expect_err("bad prefix").to_string();
        assert!(
            err.contains("node_name_prefix") && err.contains("Sim_3"),
            "{err}"
        );
    }

    #[test]
    fn config_should_default_every_process_key() {
        let c = parse("runtime = \"process\"").expect("config");
        assert_eq!(c.port, 10250);
        assert_eq!(c.crash_loop_backoff, Duration::from_secs(10));
        assert_eq!(c.crash_loop_backoff_max, Duration::from_secs(300));
        assert_eq!(c.pod_resync_interval, Duration::from_secs(1));
        assert_eq!(c.network, NetworkMode::Host);
        assert!(!c.bridge_network());
        assert_eq!(c.bridge_name, "kubernel0");
        c.validate().expect("defaults are valid");
        let c = parse(
            "runtime = \"process\"\nnetwork = \"bridge\"\nbridge_name = \"a-very-long-bridge\"",
        )
        .expect("config");
        let err = c.validate().expect_err("bad bridge").to_string();
        assert!(
            err.contains("bridge_name") && err.contains("a-very-long-bridge"),
            "{err}"
        );
        let err = parse("runtime = \"process\"\nnetwork = \"overlay\"").expect_err("bad mode");
        assert!(err.contains("overlay"), "{err}");
        let c = parse("runtime = \"process\"\nrun_pods = false").expect("config");
        let err = c
            .validate()
            .expect_err("a real node runs its pods")
            .to_string();
        assert!(err.contains("run_pods"), "{err}");
        let c = parse("runtime = \"process\"\nnode_name = \"My_Node\"").expect("config");
        let err = c.validate().expect_err("bad name").to_string();
        assert!(
            err.contains("node_name") && err.contains("My_Node"),
            "{err}"
        );
    }

    #[test]
    fn durations_should_accept_humantime() {
        let c = parse("runtime = \"sim\"\nlease_renew_interval = \"500ms\"").expect("config");
        assert_eq!(c.lease_renew_interval, Duration::from_millis(500));
    }
}
