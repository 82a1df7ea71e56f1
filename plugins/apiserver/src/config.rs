//! The apiserver plugin's `[plugin.config]` settings.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Settings of the apiserver plugin (kube-apiserver's flag names, in snake case).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiServerConfig {
    /// Address the HTTPS port listens on (`--bind-address`); `0.0.0.0` (the default,
    /// as upstream) for every interface.
    pub bind_address: IpAddr,
    /// Port of the API over HTTPS (kube-apiserver's `--secure-port`).
    pub secure_port: u16,
    /// Plain-HTTP port without authentication or authorization (every request is
    /// `system:unsecured` in `system:masters`, as upstream's removed insecure port);
    /// 0 (the default) for none. Only for tests and local tools.
    pub insecure_port: u16,
    /// Address of `insecure_port`: a loopback address only.
    pub insecure_bind_address: IpAddr,
    /// Extra subject alternative names of the serving certificate (IPs or DNS names),
    /// e.g. the address remote workers reach the apiserver at (kubeadm's `certSANs`).
    /// Used when the certificate is generated (delete `pki/apiserver.*` to reissue).
    pub cert_sans: Vec<String>,
    /// Static bearer tokens (`--token-auth-file`): CSV lines `token,user,uid,"group1,group2"`.
    pub token_auth_file: Option<PathBuf>,
    /// Whether requests without credentials are served as `system:anonymous`
    /// (`--anonymous-auth`); RBAC then lets them reach only the health and version paths.
    pub anonymous_auth: bool,
    /// Authorizers in order (`--authorization-mode`): `Node` (kubelets named
    /// `system:node:<name>` in `system:nodes` reach their own Node, Lease, pods and what
    /// those pods refer to), `RBAC`, `ABAC` (the policy in `authorization_policy_file`)
    /// and `AlwaysAllow`. The first that allows a request decides.
    pub authorization_modes: Vec<String>,
    /// ABAC policy (`--authorization-policy-file`): one JSON `Policy` object of
    /// `abac.authorization.kubernetes.io/v1beta1` per line; needed by, and only
    /// allowed with, the `ABAC` mode.
    pub authorization_policy_file: Option<PathBuf>,
    /// Audit log (`--audit-log-path`): one `audit.k8s.io/v1` `Event` JSON object per
    /// line, appended to this file; none (the default) turns auditing off.
    pub audit_log_path: Option<PathBuf>,
    /// Audit policy (`--audit-policy-file`): an `audit.k8s.io/v1` `Policy` in YAML or
    /// JSON whose rules give each request its level (`None`, `Metadata`, `Request`,
    /// `RequestResponse`); without one every request is logged at `Metadata`.
    pub audit_policy_file: Option<PathBuf>,
    /// Audit events waiting for the writer at most; past it events are dropped and
    /// counted in `apiserver_audit_error_total{plugin="log"}`
    /// (`--audit-log-batch-buffer-size`).
    pub audit_log_buffer_size: usize,
    /// Longest time a non-long-running request may take (`--request-timeout`, e.g.
    /// `"60s"`): past it the client gets 504 `Timeout` (watches, log follows, exec and
    /// port-forward are exempt). A shorter `?timeout=` on the request wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest request line plus headers accepted, bytes (Go's `MaxHeaderBytes`,
    /// 1 MiB); a larger request is refused with 431.
    pub max_header_bytes: usize,
    /// IPv4 CIDR that Services get their cluster IPs from (`--service-cluster-ip-range`),
    /// from /12 to /30. Its first address is the `kubernetes` Service's; a Service may
    /// ask for any free address of it in `spec.clusterIP`.
    pub service_cluster_ip_range: crate::allocator::ServiceCidr,
    /// Ports that `NodePort` and `LoadBalancer` Services get their node ports from
    /// (`--service-node-port-range`), `"first-last"` inclusive.
    pub service_node_port_range: crate::allocator::PortRange,
    /// Most read-only requests served at once; more get 429 (`--max-requests-inflight`).
    pub max_requests_inflight: usize,
    /// Most mutating requests served at once (`--max-mutating-requests-inflight`).
    pub max_mutating_requests_inflight: usize,
    /// API Priority and Fairness (`--enable-priority-and-fairness`): the two limits
    /// above, added, are shared out between upstream's priority levels, and a
    /// request waits for a seat of its level. Off: the older max-in-flight filter,
    /// which answers 429 at once past either limit.
    pub enable_priority_and_fairness: bool,
    /// Longest wait for a seat under priority and fairness before a 429 (kubernel's).
    #[serde(with = "humantime_serde")]
    pub flow_control_queue_wait: Duration,
    /// Largest request body accepted, bytes (3 MiB as upstream).
    pub max_request_body_bytes: usize,
    /// Watch events kept for watches that resume from a revision.
    pub history_revisions: usize,
    /// How long watch events are kept, seconds.
    pub history_seconds: u64,
    /// How often a watch that allows bookmarks gets one, seconds.
    pub watch_bookmark_interval_seconds: u64,
    /// Worker threads of the apiserver's runtime; by default one per available core.
    pub worker_threads: usize,
    /// Seconds a new pod tolerates `node.kubernetes.io/not-ready:NoExecute` (its node's
    /// Ready condition is False) before it is evicted, unless the pod tolerates that
    /// taint itself (the DefaultTolerationSeconds admission plugin,
    /// `--default-not-ready-toleration-seconds`).
    pub default_not_ready_toleration_seconds: i64,
    /// Seconds a new pod tolerates `node.kubernetes.io/unreachable:NoExecute` (its node
    /// stopped heartbeating) before it is evicted, unless the pod tolerates that taint
    /// itself (`--default-unreachable-toleration-seconds`).
    pub default_unreachable_toleration_seconds: i64,
    /// Admission plugins to run besides the default ones (`--enable-admission-plugins`);
    /// all of ours are on by default: NamespaceLifecycle, Priority, LimitRanger,
    /// ServiceAccount, PodSecurity, DefaultTolerationSeconds, NodeRestriction and
    /// ResourceQuota.
    pub enable_admission_plugins: Vec<String>,
    /// Admission plugins turned off (`--disable-admission-plugins`).
    pub disable_admission_plugins: Vec<String>,
    /// Where objects are stored (`--storage-backend`): `"embedded"` (the default: a
    /// durable file in the data dir, nothing to install) or `"etcd"` (etcd v3 at
    /// `etcd_endpoints`; several apiservers may share one etcd).
    pub storage: Storage,
    /// Client URLs of the etcd members (`--etcd-servers`), e.g.
    /// `["http://127.0.0.1:2379"]`; `https://` URLs use the TLS files below.
    pub etcd_endpoints: Vec<String>,
    /// PEM CA bundle that signed etcd's serving certificate (`--etcd-cafile`).
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd, when it checks client certificates (`--etcd-certfile`).
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM key of `etcd_cert_file` (`--etcd-keyfile`).
    pub etcd_key_file: Option<PathBuf>,
    /// Prefix of every etcd key of this cluster (`--etcd-prefix`): a pod is at
    /// `/registry/pods/<namespace>/<name>`.
    pub etcd_prefix: String,
    /// How often the apiserver compacts etcd's history, up to the revision it saw one
    /// interval before (`--etcd-compaction-interval`, e.g. `"5m"`, `"10s"`); `"0s"`
    /// leaves compaction to others. Watches from a compacted revision get 410 Gone.
    #[serde(with = "humantime_serde")]
    pub etcd_compaction_interval: Duration,
    /// Longest wait for one etcd request, e.g. `"5s"`; past it the API request fails
    /// with 503 (while etcd is unreachable, reads fail at once).
    #[serde(with = "humantime_serde")]
    pub etcd_request_timeout: Duration,
}

/// The storage backend of the apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// The embedded store in the data dir.
    #[default]
    Embedded,
    /// etcd v3.
    Etcd,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            bind_address: IpAddr::from([0, 0, 0, 0]),
            secure_port: 6443,
            insecure_port: 0,
            insecure_bind_address: IpAddr::from([127, 0, 0, 1]),
            cert_sans: Vec::new(),
            token_auth_file: None,
            anonymous_auth: true,
            authorization_modes: vec!["Node".into(), "RBAC".into()],
            authorization_policy_file: None,
            audit_log_path: None,
            audit_policy_file: None,
            audit_log_buffer_size: 10_000,
            request_timeout: Duration::from_secs(60),
            max_header_bytes: 1024 * 1024,
            service_cluster_ip_range: crate::allocator::ServiceCidr::default(),
            service_node_port_range: crate::allocator::PortRange::default(),
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            enable_priority_and_fairness: true,
            flow_control_queue_wait: Duration::from_secs(15),
            max_request_body_bytes: 3 * 1024 * 1024,
            history_revisions: 10_000,
            history_seconds: 300,
            watch_bookmark_interval_seconds: 60,
            worker_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            enable_admission_plugins: Vec::new(),
            disable_admission_plugins: Vec::new(),
            storage: Storage::Embedded,
            etcd_endpoints: Vec::new(),
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_prefix: "/registry".into(),
            etcd_compaction_interval: Duration::from_secs(5 * 60),
            etcd_request_timeout: Duration::from_secs(5),
        }
    }
}
