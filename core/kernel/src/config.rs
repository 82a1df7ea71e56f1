//! The kernel's TOML config: `[kernel]` settings and `[[plugin]]` entries, with environment overrides.
//!
//! Every value can be overridden from the environment. A variable
//! `KUBERNEL_<SECTION>__<KEY>[__<KEY>...]` sets one key: `KUBERNEL_KERNEL__ADMIN_ADDR`
//! sets `kernel.admin_addr`; `KUBERNEL_PLUGIN__<NAME>__<KEY>` sets a key of the plugin
//! named NAME (dashes written as underscores), e.g.
//! `KUBERNEL_PLUGIN__SCHEDULER__CONFIG__PERCENTAGE_OF_NODES_TO_SCORE=50`. Keys are
//! matched case-insensitively; the value is read as a TOML value (`5`, `true`,
//! `[1, 2]`, `"quoted"`) and otherwise taken as a string. Variables without `__`
//! (`KUBERNEL_DATA_DIR`, `KUBERNEL_CONFIG`) are command-line flags, not config keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The config could not be read or is invalid; fix the file or variable it names.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// Config file.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: {message}")]
    Syntax {
        /// Config file.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A key has an unknown name or a bad value.
    #[error("{path}: {key}: {message}{}", origin.as_ref().map(|v| format!(" (set by environment variable {v})")).unwrap_or_default())]
    Key {
        /// Config file.
        path: PathBuf,
        /// Dotted key path, e.g. `kernel.admin_addr` or `plugin[1].grace_period`.
        key: String,
        /// What is wrong, naming the value.
        message: String,
        /// The environment variable that set the key, if one did.
        origin: Option<String>,
    },
    /// An environment override names no existing section or plugin.
    #[error("{path}: environment variable {var}: {message}")]
    Env {
        /// Config file.
        path: PathBuf,
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kernel settings.
    #[serde(default)]
    pub kernel: KernelConfig,
    /// Plugins to load, in start order (drained in reverse order).
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    /// The file this config was read from (not a key).
    #[serde(skip)]
    pub source: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, pretty otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// The `[kernel]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/livez`, `/readyz`,
    /// `/plugins`). Port 0 picks a free port; the bound address is written to
    /// `<data_dir>/admin-addr` either way.
    pub admin_addr: SocketAddr,
    /// Log format: `auto`, `json` or `pretty`.
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter, used when `RUST_LOG` is not set.
    pub log_filter: String,
    /// Directories searched for plugin paths without a `/`, before the directory of
    /// the `kubernel` executable.
    pub plugin_dirs: Vec<PathBuf>,
    /// How long a request waits for a busy plugin before failing with a timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often each plugin's state is snapshotted for restarts after a crash.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// First delay before restarting a failed plugin; doubles up to `restart_backoff_max`.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_initial: Duration,
    /// Longest delay between restarts of a failed plugin.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// Default time each plugin gets to drain on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often the config file is checked for changes (`0s` disables watching).
    #[serde(with = "humantime_serde")]
    pub config_poll_interval: Duration,
    /// Whether the process may use transparent huge pages. Off by default: the
    /// allocator asks for them on all its memory, and every first touch of a 2 MiB
    /// page then zeroes all of it, which cost a tenth of the CPU of the scheduler
    /// benchmark (see the README's performance section). Read at start only.
    /// Processes the kernel starts inherit the setting: with it off, the
    /// containers of the kubelet's `process` runtime run without huge pages too.
    pub transparent_huge_pages: bool,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 10260)),
            log_format: LogFormat::Auto,
            log_filter: "info".to_string(),
            plugin_dirs: Vec::new(),
            request_timeout: Duration::from_secs(5),
            snapshot_interval: Duration::from_secs(1),
            restart_backoff_initial: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            config_poll_interval: Duration::from_secs(2),
            transparent_huge_pages: false,
        }
    }
}

/// One `[[plugin]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Instance name: a DNS label, unique in the config (`apiserver`, `scheduler`).
    pub name: String,
    /// The plugin library: a file name searched in `kernel.plugin_dirs` and next
    /// to the `kubernel` executable, or a path (relative to the config file's folder).
    pub path: PathBuf,
    /// Time this plugin gets to drain on shutdown (default `kernel.shutdown_grace`).
    #[serde(default, with = "humantime_serde")]
    pub grace_period: Option<Duration>,
    /// Free-form settings passed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

impl Config {
    /// Reads `path` and applies `KUBERNEL_*__*` overrides from `env`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path, env)
    }

    /// Parses config `text` read from `path` and applies overrides from `env`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let origins = apply_env(&mut table, path, env)?;
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Key {
                    path: path.to_path_buf(),
                    origin: origins.get(&key).cloned(),
                    key,
                    message: e.inner().to_string(),
                }
            })?;
        config.source = path.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let key_error = |key: String, message: String| ConfigError::Key {
            path: self.source.clone(),
            key,
            message,
            origin: None,
        };
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, p) in self.plugins.iter().enumerate() {
            if !is_dns_label(&p.name) {
                return Err(key_error(
                    format!("plugin[{i}].name"),
                    format!("{:?} is not a valid name: lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit", p.name),
                ));
            }
            if let Some(first) = seen.insert(&p.name, i) {
                return Err(key_error(
                    format!("plugin[{i}].name"),
                    format!(
                        "plugin {:?} is configured twice (plugin[{first}] and plugin[{i}])",
                        p.name
                    ),
                ));
            }
        }
        let k = &self.kernel;
        if k.restart_backoff_initial.is_zero() || k.restart_backoff_initial > k.restart_backoff_max
        {
            return Err(key_error(
                "kernel.restart_backoff_initial".into(),
                format!(
                    "{:?} must be above zero and at most kernel.restart_backoff_max ({:?})",
                    k.restart_backoff_initial, k.restart_backoff_max
                ),
            ));
        }
        if k.request_timeout.is_zero() {
            return Err(key_error(
                "kernel.request_timeout".into(),
                "must be above zero".into(),
            ));
        }
        Ok(())
    }

    /// The grace period of plugin `p`.
    pub fn grace_period(&self, p: &PluginConfig) -> Duration {
        p.grace_period.unwrap_or(self.kernel.shutdown_grace)
    }

    /// Resolves a plugin's library path: bare names are searched in
    /// `kernel.plugin_dirs` then `exe_dir`; other relative paths are relative to the
    /// config file's folder.
    pub fn resolve_plugin_path(&self, p: &PluginConfig, exe_dir: Option<&Path>) -> PathBuf {
        let is_bare = p.path.components().count() == 1 && !p.path.is_absolute();
        if is_bare {
            let base = self.source.parent().unwrap_or(Path::new("."));
            let dirs = self
                .kernel
                .plugin_dirs
                .iter()
                .map(|d| base.join(d))
                .chain(exe_dir.map(Path::to_path_buf));
            for dir in dirs {
                let candidate = dir.join(&p.path);
                if candidate.exists() {
                    return candidate;
                }
            }
            return p.path.clone();
        }
        if p.path.is_absolute() {
            p.path.clone()
        } else {
            self.source.parent().unwrap_or(Path::new(".")).join(&p.path)
        }
    }
}

/// True for an RFC 1123 DNS label.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Normalizes a key for matching an environment variable segment.
fn env_key(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}

/// Applies `KUBERNEL_<SECTION>__...` variables to `table`; returns key path -> variable.
fn apply_env(
    table: &mut toml::Table,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut origins = BTreeMap::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("KUBERNEL_") && k.contains("__"))
        .collect();
    vars.sort();
    let env_error = |var: &str, message: String| ConfigError::Env {
        path: path.to_path_buf(),
        var: var.to_string(),
        message,
    };
    for (var, raw) in vars {
        let rest = &var["KUBERNEL_".len()..];
        let segments: Vec<&str> = rest.split("__").collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(env_error(
                &var,
                "empty key segment (use one `__` between keys)".into(),
            ));
        }
        let (target, keys, prefix): (&mut toml::Table, &[&str], String) = match segments[0] {
            "KERNEL" => {
                let entry = table
                    .entry("kernel")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(t) = entry.as_table_mut() else {
                    return Err(env_error(
                        &var,
                        "`kernel` in the file is not a table".into(),
                    ));
                };
                (t, &segments[1..], "kernel".to_string())
            }
            "PLUGIN" => {
                let Some(name) = segments.get(1) else {
                    return Err(env_error(
                        &var,
                        "expected KUBERNEL_PLUGIN__<NAME>__<KEY>".into(),
                    ));
                };
                let plugins = table.get_mut("plugin").and_then(|v| v.as_array_mut());
                let Some(plugins) = plugins else {
                    return Err(env_error(&var, "the file configures no [[plugin]]".into()));
                };
                let names: Vec<String> = plugins
                    .iter()
                    .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
                    .collect();
                let found = plugins.iter_mut().enumerate().find(|(_, p)| {
                    p.get("name")
                        .and_then(|n| n.as_str())
                        .map(env_key)
                        .as_deref()
                        == Some(*name)
                });
                let Some((i, plugin)) = found else {
                    return Err(env_error(
                        &var,
                        format!(
                            "no plugin named {:?}; configured: {}",
                            name.to_ascii_lowercase(),
                            names.join(", ")
                        ),
                    ));
                };
                let Some(t) = plugin.as_table_mut() else {
                    return Err(env_error(&var, format!("plugin[{i}] is not a table")));
                };
                (t, &segments[2..], format!("plugin[{i}]"))
            }
            other => {
                return Err(env_error(
                    &var,
                    format!("no config section {:?}; known: KERNEL, PLUGIN", other),
                ))
            }
        };
        if keys.is_empty() {
            return Err(env_error(&var, "names a section, not a key".into()));
        }
        let key_path = set_path(target, keys, &raw).map_err(|m| env_error(&var, m))?;
        origins.insert(format!("{prefix}.{key_path}"), var.clone());
    }
    Ok(origins)
}

/// Sets the value at `keys` in `table` from the raw environment text; returns the dotted path.
fn set_path(table: &mut toml::Table, keys: &[&str], raw: &str) -> Result<String, String> {
    let mut current = table;
    let mut path = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let existing = current.keys().find(|k| env_key(k) == *key).cloned();
        let name = existing.unwrap_or_else(|| key.to_ascii_lowercase());
        path.push(name.clone());
        if i + 1 == keys.len() {
            let keep_string = matches!(current.get(&name), Some(toml::Value::String(_)));
            current.insert(name, parse_env_value(raw, keep_string));
            return Ok(path.join("."));
        }
        let next = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = next
            .as_table_mut()
            .ok_or_else(|| format!("{} is not a table", path.join(".")))?;
    }
    Err("no key given".into())
}

/// Reads an environment value as TOML when it parses as one, else as a string.
fn parse_env_value(raw: &str, keep_string: bool) -> toml::Value {
    if !keep_string {
        if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            if let Some(v) = t.remove("v") {
                return v;
            }
        }
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[kernel]
admin_addr = "127.0.0.1:10300"

[[plugin]]
name = "controller-manager"
path = "libcm.so"
[plugin.config]
node_monitor_period = "5s"
workers = 2
"#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse(text, Path::new("lab.toml"), env)
    }

    #[test]
    fn config_should_apply_environment_overrides() {
        let c = parse(
            FILE,
            &[
                ("KUBERNEL_KERNEL__ADMIN_ADDR", "127.0.0.1:9999"),
                ("KUBERNEL_PLUGIN__CONTROLLER_MANAGER__CONFIG__WORKERS", "8"),
                (
                    "KUBERNEL_PLUGIN__CONTROLLER_MANAGER__CONFIG__NODE_MONITOR_PERIOD",
                    "10",
                ),
                ("KUBERNEL_DATA_DIR", "/ignored"),
            ],
        )
        .expect("valid");
        assert_eq!(c.kernel.admin_addr.port(), 9999);
        let cfg = &c.plugins[0].config;
        assert_eq!(cfg["workers"].as_integer(), Some(8));
        assert_eq!(cfg["node_monitor_period"].as_str(), Some("10"));
    }

    #[test]
    fn config_should_name_file_key_and_value_of_bad_input() {
        let err = parse("[kernel]\nadmn_addr = 1\n", &[]).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("lab.toml: kernel"), "{msg}");
        assert!(msg.contains("admn_addr"), "{msg}");

        let err =
            parse(FILE, &[("KUBERNEL_KERNEL__REQUEST_TIMEOUT", "soon")]).expect_err("bad value");
        let msg = err.to_string();
        assert!(msg.contains("kernel.request_timeout"), "{msg}");
        assert!(msg.contains("KUBERNEL_KERNEL__REQUEST_TIMEOUT"), "{msg}");

        let err = parse(FILE, &[("KUBERNEL_PLUGIN__SCHEDULAR__PATH", "x")]).expect_err("no plugin");
        assert!(
            err.to_string().contains("no plugin named \"schedular\""),
            "{err}"
        );
    }

    #[test]
    fn config_should_refuse_a_plugin_configured_twice() {
        let text = "[[plugin]]\nname = \"a\"\npath = \"x.so\"\n[[plugin]]\nname = \"a\"\npath = \"y.so\"\n";
        let err = parse(text, &[]).expect_err("duplicate");
        assert!(err.to_string().contains("configured twice"), "{err}");
    }
}
