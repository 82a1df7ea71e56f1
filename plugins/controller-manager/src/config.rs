//! The controller-manager's `[plugin.config]` table; the field docs are the user documentation.

use std::time::Duration;

use kubernel_client::ClientConfig;
use serde::Deserialize;

/// Every controller this plugin runs, by its kube-controller-manager name, with
/// the older names `--controllers` also accepts.
pub const CONTROLLERS: &[(&str, &str)] = &[
    ("replicaset-controller", "replicaset"),
    ("deployment-controller", "deployment"),
    ("garbage-collector-controller", "garbagecollector"),
    ("namespace-controller", "namespace"),
    ("serviceaccount-controller", "serviceaccount"),
    (
        "root-ca-certificate-publisher-controller",
        "root-ca-cert-publisher",
    ),
    ("node-lifecycle-controller", "nodelifecycle"),
    ("taint-eviction-controller", "taint-eviction"),
    ("endpoints-controller", "endpoint"),
    ("endpointslice-controller", "endpointslice"),
    ("resourcequota-controller", "resourcequota"),
    ("node-ipam-controller", "nodeipam"),
    ("disruption-controller", "disruption"),
    (
        "clusterrole-aggregation-controller",
        "clusterrole-aggregation",
    ),
];

/// A config value the controller-manager refuses. Retrying does not help: fix the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: key {key}: {message}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

/// The controller-manager plugin's configuration.
///
/// ```toml
/// [plugin.config]
/// controllers = ["*", "-resourcequota-controller"]
/// node_monitor_period = "5s"        # NodeMonitorPeriod
/// node_monitor_grace_period = "40s" # NodeMonitorGracePeriod
/// pod_eviction_timeout = "5m"       # PodEvictionTimeout
/// ```
///
/// The node lifecycle knobs are also accepted under their upstream names
/// (`NodeMonitorPeriod = "5s"`, `NodeMonitorGracePeriod`, `PodEvictionTimeout`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerManagerConfig {
    /// How to reach the apiserver (default: the `admin.kubeconfig` the apiserver
    /// writes into the kernel's data dir).
    #[serde(default)]
    pub client: ClientConfig,
    /// Which controllers run, as kube-controller-manager's `--controllers`: `"*"`
    /// turns on every controller, `"name"` one controller, `"-name"` turns one off.
    /// Names: `replicaset-controller`, `deployment-controller`,
    /// `garbage-collector-controller`, `namespace-controller`,
    /// `serviceaccount-controller`, `node-lifecycle-controller`,
    /// `taint-eviction-controller`, `endpoints-controller`, `endpointslice-controller`,
    /// `resourcequota-controller` (the short pre-1.28 names such as `replicaset` work too).
    #[serde(default = "defaults::controllers")]
    pub controllers: Vec<String>,
    /// Threads of the controller-manager's own async runtime.
    #[serde(default = "defaults::worker_threads")]
    pub worker_threads: usize,
    /// Objects each controller reconciles at once (upstream `--concurrent-*-syncs`, 5).
    #[serde(default = "defaults::concurrent_syncs")]
    pub concurrent_syncs: usize,
    /// `NodeMonitorPeriod` (upstream `--node-monitor-period`, 5 s): how often node health is checked.
    #[serde(
        default = "defaults::node_monitor_period",
        with = "humantime_serde",
        alias = "NodeMonitorPeriod"
    )]
    pub node_monitor_period: Duration,
    /// `NodeMonitorGracePeriod` (upstream `--node-monitor-grace-period`, 40 s): a node
    /// whose Lease and status were not renewed for this long becomes Ready=Unknown
    /// and is tainted `node.kubernetes.io/unreachable:NoExecute`.
    #[serde(
        default = "defaults::node_monitor_grace_period",
        with = "humantime_serde",
        alias = "NodeMonitorGracePeriod"
    )]
    pub node_monitor_grace_period: Duration,
    /// `PodEvictionTimeout` (upstream `--pod-eviction-timeout`, 5 min): how long a pod
    /// stays on a not-ready or unreachable node. Eviction is taint-based: a pod
    /// leaves after the `tolerationSeconds` of its toleration for the node's
    /// NoExecute taint (the apiserver's DefaultTolerationSeconds admission gives
    /// every pod one, which should equal this value); a pod without such a
    /// toleration leaves after this timeout; a pod tolerating the taint forever stays.
    #[serde(
        default = "defaults::pod_eviction_timeout",
        with = "humantime_serde",
        alias = "PodEvictionTimeout"
    )]
    pub pod_eviction_timeout: Duration,
    /// Nodes per second tainted for eviction in a healthy zone (upstream `--node-eviction-rate`, 0.1).
    #[serde(default = "defaults::node_eviction_rate")]
    pub node_eviction_rate: f64,
    /// Nodes per second tainted in a partially disrupted zone (upstream
    /// `--secondary-node-eviction-rate`, 0.01); 0 when the cluster has at most
    /// `large_cluster_size_threshold` nodes.
    #[serde(default = "defaults::secondary_node_eviction_rate")]
    pub secondary_node_eviction_rate: f64,
    /// Fraction of not-ready nodes (at least 3) that makes a zone partially
    /// disrupted (upstream `--unhealthy-zone-threshold`, 0.55).
    #[serde(default = "defaults::unhealthy_zone_threshold")]
    pub unhealthy_zone_threshold: f64,
    /// Cluster size up to which the secondary eviction rate is 0 (upstream
    /// `--large-cluster-size-threshold`, 50).
    #[serde(default = "defaults::large_cluster_size_threshold")]
    pub large_cluster_size_threshold: usize,
    /// How often every ResourceQuota's usage is recomputed even without a change
    /// (upstream `--resource-quota-sync-period`, 5 min).
    #[serde(
        default = "defaults::resource_quota_sync_period",
        with = "humantime_serde"
    )]
    pub resource_quota_sync_period: Duration,
    /// The CA that signs approved client-certificate requests (upstream
    /// `--cluster-signing-cert-file`; default: the kernel's `pki/ca.crt`).
    #[serde(default)]
    pub cluster_signing_cert_file: Option<std::path::PathBuf>,
    /// Its key (upstream `--cluster-signing-key-file`; default: `pki/ca.key`).
    #[serde(default)]
    pub cluster_signing_key_file: Option<std::path::PathBuf>,
    /// Give every Node a pod CIDR from `cluster_cidr` (upstream `--allocate-node-cidrs`,
    /// off by default as upstream).
    #[serde(default)]
    pub allocate_node_cidrs: bool,
    /// The range pod CIDRs are cut from (upstream `--cluster-cidr`), e.g. `10.244.0.0/16`.
    #[serde(default)]
    pub cluster_cidr: String,
    /// Prefix length of each Node's pod CIDR (upstream `--node-cidr-mask-size`, 24).
    #[serde(default = "defaults::node_cidr_mask_size")]
    pub node_cidr_mask_size: u8,
    /// Leader election between controller-managers through a Lease.
    #[serde(default)]
    pub leader_election: LeaderElectionSettings,
}

/// Leader election settings (upstream `--leader-elect*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionSettings {
    /// Elect a leader before running any controller (upstream `--leader-elect`, true).
    pub leader_elect: bool,
    /// Lease name (upstream `kube-controller-manager`).
    pub resource_name: String,
    /// Lease namespace (upstream `kube-system`).
    pub resource_namespace: String,
    /// How long a lease stays valid without renewal (upstream 15 s).
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How often the leader renews and candidates retry (upstream 2 s).
    #[serde(with = "humantime_serde")]
    pub retry_period: Duration,
}

impl Default for LeaderElectionSettings {
    fn default() -> Self {
        LeaderElectionSettings {
            leader_elect: true,
            resource_name: "kube-controller-manager".into(),
            resource_namespace: "kube-system".into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn controllers() -> Vec<String> {
        vec!["*".into()]
    }
    pub fn worker_threads() -> usize {
        2
    }
    pub fn concurrent_syncs() -> usize {
        5
    }
    pub fn node_monitor_period() -> Duration {
        Duration::from_secs(5)
    }
    pub fn node_monitor_grace_period() -> Duration {
        Duration::from_secs(40)
    }
    pub fn pod_eviction_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn node_eviction_rate() -> f64 {
        0.1
    }
    pub fn secondary_node_eviction_rate() -> f64 {
        0.01
    }
    pub fn unhealthy_zone_threshold() -> f64 {
        0.55
    }
    pub fn large_cluster_size_threshold() -> usize {
        50
    }
    pub fn resource_quota_sync_period() -> Duration {
        Duration::from_secs(300)
    }
    pub fn node_cidr_mask_size() -> u8 {
        24
    }
}

impl ControllerManagerConfig {
    /// Checks values serde cannot (names, ranges).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.allocate_node_cidrs {
            self.cluster_cidr
                .parse::<crate::nodeipam::Cidr>()
                .and_then(|c| crate::nodeipam::CidrSet::new(c, self.node_cidr_mask_size))
                .map_err(|message| ConfigError {
                    key: "cluster_cidr",
                    message,
                })?;
        }
        for entry in &self.controllers {
            let name = entry.strip_prefix('-').unwrap_or(entry);
            if name != "*" && canonical(name).is_none() {
                let known: Vec<&str> = CONTROLLERS.iter().map(|(n, _)| *n).collect();
                return Err(ConfigError {
                    key: "controllers",
                    message: format!("{entry:?}: no such controller; known: {}", known.join(", ")),
                });
            }
        }
        let positive = |key: &'static str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError {
                    key,
                    message: "must be more than 0".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("node_monitor_period", self.node_monitor_period)?;
        positive("node_monitor_grace_period", self.node_monitor_grace_period)?;
        positive(
            "resource_quota_sync_period",
            self.resource_quota_sync_period,
        )?;
        if !(0.0..=1.0).contains(&self.unhealthy_zone_threshold) {
            return Err(ConfigError {
                key: "unhealthy_zone_threshold",
                message: format!("{} is not between 0 and 1", self.unhealthy_zone_threshold),
            });
        }
        for (key, rate) in [
            ("node_eviction_rate", self.node_eviction_rate),
            (
                "secondary_node_eviction_rate",
                self.secondary_node_eviction_rate,
            ),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(ConfigError {
                    key,
                    message: format!("{rate} is not a rate of 0 or more nodes per second"),
                });
            }
        }
        if self.worker_threads == 0 || self.concurrent_syncs == 0 {
            return Err(ConfigError {
                key: if self.worker_threads == 0 {
                    "worker_threads"
                } else {
                    "concurrent_syncs"
                },
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// True when the controller `name` (its current kube-controller-manager name) is enabled.
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for entry in &self.controllers {
            match entry.strip_prefix('-') {
                Some(off) if canonical(off) == Some(name) => return false,
                Some(_) => {}
                None if entry == "*" || canonical(entry) == Some(name) => on = true,
                None => {}
            }
        }
        on
    }
}

/// The current name of controller `name` (given by its current or older name).
fn canonical(name: &str) -> Option<&'static str> {
    CONTROLLERS
        .iter()
        .find(|(new, old)| *new == name || *old == name)
        .map(|(new, _)| *new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ControllerManagerConfig {
        toml::from_str(text).expect("config parses")
    }

    #[test]
    fn node_ipam_should_refuse_a_bad_cluster_cidr_naming_the_key() {
        let c = parse("allocate_node_cidrs = true\ncluster_cidr = \"10.244.0.1/16\"");
        let e = c.validate().err();
        assert_eq!(e.as_ref().map(|e| e.key), Some("cluster_cidr"), "{e:?}");
        let small = parse("allocate_node_cidrs = true\ncluster_cidr = \"10.244.0.0/24\"\nnode_cidr_mask_size = 16");
        assert!(small.validate().is_err());
        let fine = parse("allocate_node_cidrs = true\ncluster_cidr = \"10.244.0.0/16\"");
        assert_eq!(fine.validate(), Ok(()));
    }

    #[test]
    fn config_should_default_to_the_upstream_timings() {
        let c = parse("");
        assert_eq!(c.node_monitor_period, Duration::from_secs(5));
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(40));
        assert_eq!(c.pod_eviction_timeout, Duration::from_secs(300));
        assert!(c.enabled("replicaset-controller"));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn config_should_accept_the_upstream_camel_case_knob_names() {
        let c = parse(
            "NodeMonitorPeriod = \"1s\"\nNodeMonitorGracePeriod = \"4s\"\nPodEvictionTimeout = \"6s\"\n",
        );
        assert_eq!(c.node_monitor_period, Duration::from_secs(1));
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(4));
        assert_eq!(c.pod_eviction_timeout, Duration::from_secs(6));
    }

    #[test]
    fn controllers_should_follow_the_star_and_minus_syntax() {
        let c = parse("controllers = [\"*\", \"-nodelifecycle\"]");
        assert!(c.enabled("deployment-controller"));
        assert!(!c.enabled("node-lifecycle-controller"));
        let c = parse("controllers = [\"replicaset\"]");
        assert!(c.enabled("replicaset-controller"));
        assert!(!c.enabled("deployment-controller"));
    }

    #[test]
    fn config_should_name_an_unknown_controller_and_key() {
        let err = parse("controllers = [\"replicaset-controler\"]")
            .validate()
            .expect_err("unknown controller");
        assert!(err.to_string().contains("replicaset-controler"), "{err}");
        assert!(toml::from_str::<ControllerManagerConfig>("node_monitor = \"5s\"").is_err());
    }
}
