//! Scheduler configuration in TOML, shaped like `KubeSchedulerConfiguration` (snake_case keys).
//!
//! ```toml
//! percentage_of_nodes_to_score = 0     # 0 or absent: adaptive, like kube-scheduler
//! parallelism = 16
//!
//! [[profiles]]
//! scheduler_name = "default-scheduler"
//! record_scores = false
//! [profiles.plugins.score]
//! disabled = [{ name = "NodeResourcesBalancedAllocation" }]
//! enabled = [{ name = "Binpack", weight = 2 }]
//! [[profiles.plugin_config]]
//! name = "NodeResourcesFit"
//! args = { scoring_strategy = { type = "MostAllocated" } }
//!
//! [[external_plugins]]
//! name = "Binpack"
//! path = "target/release/libkubernel_scheduler_binpack.so"
//! ```
//!
//! Every profile starts from the upstream default plugins (as `multi_point`
//! entries, with their default score weights); `disabled = [{ name = "*" }]`
//! drops them at one point (or all points, under `multi_point`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::pod_info::DEFAULT_SCHEDULER_NAME;

/// Upstream default plugins (`default_plugins.go`) that this scheduler has, with
/// score weights: TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
/// InterPodAffinity 2, NodeResourcesFit 1, NodeResourcesBalancedAllocation 1.
pub const DEFAULT_PLUGINS: &[(&str, i64)] = &[
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("DefaultBinder", 0),
];

/// Default for `parallelism` (upstream default).
pub const DEFAULT_PARALLELISM: usize = 16;

/// The configuration is invalid; the message names the file and the key.
///
/// Retrying does not help until the file is fixed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The file (or other source) the text came from.
    pub source_name: String,
    /// What is wrong, naming the key.
    pub message: String,
}

/// The whole scheduler configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Share of nodes to find feasible before scoring, 1..=100; 0 or absent: adaptive.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Most threads one cycle's Filter or Score may use.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Profiles, chosen by the pod's `spec.schedulerName`.
    #[serde(default = "default_profiles")]
    pub profiles: Vec<ProfileConfig>,
    /// Out-of-tree plugin libraries, registered under their names.
    #[serde(default)]
    pub external_plugins: Vec<ExternalPluginConfig>,
}

fn default_parallelism() -> usize {
    DEFAULT_PARALLELISM
}

fn default_profiles() -> Vec<ProfileConfig> {
    vec![ProfileConfig::default()]
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            percentage_of_nodes_to_score: None,
            parallelism: DEFAULT_PARALLELISM,
            profiles: default_profiles(),
            external_plugins: Vec::new(),
        }
    }
}

/// One profile: a scheduler name and its plugins.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Pods with this `spec.schedulerName` use the profile.
    #[serde(default = "default_scheduler_name")]
    pub scheduler_name: String,
    /// Overrides the global percentage for this profile.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Return every plugin's scores with each decision (for experiments).
    #[serde(default)]
    pub record_scores: bool,
    /// Plugins enabled and disabled per extension point.
    #[serde(default)]
    pub plugins: Plugins,
    /// Plugin arguments.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

fn default_scheduler_name() -> String {
    DEFAULT_SCHEDULER_NAME.to_string()
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            scheduler_name: default_scheduler_name(),
            percentage_of_nodes_to_score: None,
            record_scores: false,
            plugins: Plugins::default(),
            plugin_config: Vec::new(),
        }
    }
}

/// Plugin sets per extension point.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct Plugins {
    /// Enabled at every point the plugin implements.
    pub multi_point: PluginSet,
    pub queue_sort: PluginSet,
    pub pre_filter: PluginSet,
    pub filter: PluginSet,
    pub post_filter: PluginSet,
    pub pre_score: PluginSet,
    pub score: PluginSet,
    pub reserve: PluginSet,
    pub permit: PluginSet,
    pub pre_bind: PluginSet,
    pub bind: PluginSet,
    pub post_bind: PluginSet,
}

/// Plugins to add and to remove at one point.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSet {
    /// Added after the defaults (or replacing a default's weight).
    pub enabled: Vec<PluginRef>,
    /// Removed from the defaults; `*` removes all.
    pub disabled: Vec<PluginRef>,
}

impl PluginSet {
    /// Whether `name` (or `*`) is disabled.
    pub fn disables(&self, name: &str) -> bool {
        self.disabled
            .iter()
            .any(|p| p.name == "*" || p.name == name)
    }
}

/// A plugin by name, with a score weight (0 means the default).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// Plugin name.
    pub name: String,
    /// Score weight.
    #[serde(default)]
    pub weight: i64,
}

/// Arguments of one plugin.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Plugin name.
    pub name: String,
    /// Arguments, as the plugin documents them.
    pub args: toml::Value,
}

/// An out-of-tree plugin library.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalPluginConfig {
    /// The name profiles use.
    pub name: String,
    /// Path of the `.so`.
    pub path: PathBuf,
}

impl SchedulerConfig {
    /// Parses and validates TOML text; `source_name` (the file) prefixes every error.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            source_name: source_name.to_string(),
            message,
        };
        let config: SchedulerConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" (at byte {})", s.start))
                .unwrap_or_default();
            err(format!("{}{at}", e.message()))
        })?;
        config.validate().map_err(err)?;
        Ok(config)
    }

    /// Checks values serde cannot: ranges and duplicates.
    pub fn validate(&self) -> Result<(), String> {
        let pct = |p: Option<u32>, key: &str| match p {
            Some(v) if v > 100 => Err(format!("{key}: {v} is not in 0..=100")),
            _ => Ok(()),
        };
        pct(
            self.percentage_of_nodes_to_score,
            "percentage_of_nodes_to_score",
        )?;
        if self.parallelism == 0 {
            return Err("parallelism: must be at least 1".into());
        }
        if self.profiles.is_empty() {
            return Err("profiles: at least one profile is required".into());
        }
        for (i, p) in self.profiles.iter().enumerate() {
            if p.scheduler_name.is_empty() {
                return Err(format!("profiles[{i}].scheduler_name: must not be empty"));
            }
            if self.profiles[..i]
                .iter()
                .any(|q| q.scheduler_name == p.scheduler_name)
            {
                return Err(format!(
                    "profiles[{i}].scheduler_name: duplicate {:?}",
                    p.scheduler_name
                ));
            }
            pct(
                p.percentage_of_nodes_to_score,
                &format!("profiles[{i}].percentage_of_nodes_to_score"),
            )?;
            for (j, c) in p.plugin_config.iter().enumerate() {
                if p.plugin_config[..j].iter().any(|d| d.name == c.name) {
                    return Err(format!(
                        "profiles[{i}].plugin_config[{j}]: duplicate args for {:?}",
                        c.name
                    ));
                }
            }
        }
        for (i, e) in self.external_plugins.iter().enumerate() {
            if self.external_plugins[..i].iter().any(|f| f.name == e.name) {
                return Err(format!(
                    "external_plugins[{i}].name: duplicate {:?}",
                    e.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_should_default_to_one_default_profile() {
        let c = SchedulerConfig::from_toml("", "empty.toml").expect("valid");
        assert_eq!(c, SchedulerConfig::default());
        assert_eq!(c.profiles[0].scheduler_name, "default-scheduler");
    }

    #[test]
    fn config_should_parse_profiles_plugins_and_args() {
        let text = r#"
            percentage_of_nodes_to_score = 50
            [[profiles]]
            scheduler_name = "default-scheduler"
            [[profiles]]
            scheduler_name = "binpack"
            record_scores = true
            plugins.score.disabled = [{ name = "*" }]
            plugins.score.enabled = [{ name = "NodeResourcesFit", weight = 5 }]
            [[profiles.plugin_config]]
            name = "NodeResourcesFit"
            args = { scoring_strategy = { type = "MostAllocated" } }
            [[external_plugins]]
            name = "Binpack"
            path = "/tmp/libbinpack.so"
        "#;
        let c = SchedulerConfig::from_toml(text, "lab.toml").expect("valid");
        assert_eq!(c.profiles.len(), 2);
        let p = &c.profiles[1];
        assert!(p.plugins.score.disables("TaintToleration"));
        assert_eq!(p.plugins.score.enabled[0].weight, 5);
        assert_eq!(c.external_plugins[0].name, "Binpack");
    }

    #[test]
    fn config_should_name_the_file_and_key_of_an_error() {
        let err = SchedulerConfig::from_toml("percentage_of_nodes_to_scor = 5", "lab.toml")
            .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("lab.toml: unknown field `percentage_of_nodes_to_scor`"),
            "{err}"
        );
        let err = SchedulerConfig::from_toml("[[profiles]]\n[[profiles]]", "lab.toml")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "lab.toml: profiles[1].scheduler_name: duplicate \"default-scheduler\""
        );
        let err = SchedulerConfig::from_toml("percentage_of_nodes_to_score = 120", "lab.toml")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "lab.toml: percentage_of_nodes_to_score: 120 is not in 0..=100"
        );
    }
}
