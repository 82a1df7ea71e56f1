//! `Kernel`: loads the configured plugins in order, hosts each on its own actor, swaps and drains them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::{Arbiter, Supervisor};

use crate::bus::{Bus, Envelope, HeldGuard, PluginState, Settings};
use crate::config::{Config, PluginConfig};
use crate::host::{Drain, PluginHost, Swap};
use crate::loader::{Library, Live, LoadError};
use crate::metrics::KernelMetrics;
use crate::swap::{Reconfigured, SwapError, SwapReport};

/// Kind of the in-place config change message (see `kubernel_api::kernel::RECONFIGURE`).
const RECONFIGURE_KIND: &str = "kernel.Reconfigure";
/// Kind of the extension swap message (see `kubernel_api::kernel::SWAP_EXTENSION`).
const SWAP_EXTENSION_KIND: &str = "kernel.SwapExtension";
use crate::vtable::vtable_for;

/// The kernel could not start; the message names the plugin, file or directory.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// Directory.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// A configured plugin could not be loaded.
    #[error("plugin {name:?}: {source}")]
    Load {
        /// Plugin name.
        name: String,
        /// Loader error naming the file.
        source: LoadError,
    },
    /// A plugin's `init` failed.
    #[error("plugin {name:?} ({path}): init failed: {message}")]
    Init {
        /// Plugin name.
        name: String,
        /// Library path.
        path: PathBuf,
        /// The plugin's own message (prefixed with `panicked:` when it panicked).
        message: String,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running kernel: the bus with every plugin slot and their actors.
pub struct Kernel {
    /// The routing table, slots and metrics.
    pub bus: Arc<Bus>,
    config: parking_lot::RwLock<Config>,
    exe_dir: Option<PathBuf>,
    scratch: PathBuf,
    _arbiters: Vec<Arbiter>,
}

impl Kernel {
    /// Loads and starts every plugin of `config`; must run inside an actix `System`.
    pub fn start(config: Config, data_dir: &Path) -> Result<Kernel, StartError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let k = &config.kernel;
        let settings = Settings {
            data_dir: data_dir.to_path_buf(),
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| k.log_filter.clone()),
            request_timeout: k.request_timeout,
            snapshot_interval: k.snapshot_interval,
            restart_backoff_initial: k.restart_backoff_initial,
            restart_backoff_max: k.restart_backoff_max,
        };
        let bus = Bus::new(settings, KernelMetrics::new()?);
        for result in ["applied", "invalid"] {
            bus.metrics.config_reloads.with_label_values(&[result]);
        }
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let scratch = data_dir.join("plugins");
        let mut arbiters = Vec::new();
        for plugin in &config.plugins {
            let path = config.resolve_plugin_path(plugin, exe_dir.as_deref());
            let _span =
                tracing::info_span!("load_plugin", plugin = %plugin.name, path = %path.display())
                    .entered();
            let started = std::time::Instant::now();
            let lib = Library::load(&path, &scratch).map_err(|source| StartError::Load {
                name: plugin.name.clone(),
                source,
            })?;
            let lib = Arc::new(lib);
            let slot = bus.add_slot(plugin.clone(), lib.clone());
            bus.metrics.init_plugin(&plugin.name);
            let live = {
                let _held = HeldGuard::new(slot.id);
                Live::init(lib.clone(), &vtable_for(&slot), &slot.init_params(plugin))
            }
            .map_err(|e| StartError::Init {
                name: plugin.name.clone(),
                path: path.clone(),
                message: if e.status == kubernel_abi::Status::PANICKED {
                    format!("panicked: {}", e.message)
                } else {
                    e.message
                },
            })?;
            *slot.instance.write() = Some(live);
            bus.metrics
                .load_duration
                .with_label_values(&[plugin.name.as_str(), "start"])
                .observe(started.elapsed().as_secs_f64());
            let arbiter = Arbiter::new();
            let host_slot = slot.clone();
            let addr = Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
                PluginHost::new(host_slot)
            });
            slot.open_mailbox(addr);
            tracing::info!(
                plugin = %plugin.name, kind = %lib.meta.kind, version = %lib.meta.version,
                path = %path.display(), load = ?started.elapsed(), "plugin started"
            );
            arbiters.push(arbiter);
        }
        Ok(Kernel {
            bus,
            config: parking_lot::RwLock::new(config),
            exe_dir,
            scratch,
            _arbiters: arbiters,
        })
    }

    /// The config the kernel runs with (updated by swaps from the watched file).
    pub fn config(&self) -> Config {
        self.config.read().clone()
    }

    /// Loads the library a plugin config names.
    pub fn load_library(&self, plugin: &PluginConfig) -> Result<Library, LoadError> {
        let path = self
            .config
            .read()
            .resolve_plugin_path(plugin, self.exe_dir.as_deref());
        Library::load(&path, &self.scratch)
    }

    /// Hot-swaps plugin `name` to the library at `path` (resolved like config paths,
    /// relative to the current directory when it contains a `/`).
    pub async fn swap_path(&self, name: &str, path: &Path) -> Result<SwapReport, SwapError> {
        let mut plugin = self.plugin_config(name)?;
        plugin.path = if path.components().count() > 1 && path.is_relative() {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf())
        } else {
            path.to_path_buf()
        };
        self.swap(plugin).await
    }

    fn plugin_config(&self, name: &str) -> Result<PluginConfig, SwapError> {
        self.config
            .read()
            .plugins
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| SwapError::NoSuchPlugin(name.to_string()))
    }

    /// Applies a changed `[plugin.config]` to a running plugin: in place when the
    /// plugin supports it (`kernel.Reconfigure`), otherwise by a hot swap.
    pub async fn reconfigure(&self, plugin: PluginConfig) -> Result<Reconfigured, SwapError> {
        let name = plugin.name.clone();
        let payload = serde_json::to_vec(&plugin.config).unwrap_or_default();
        let target = name.clone();
        let bus = self.bus.clone();
        let answer = tokio::task::spawn_blocking(move || {
            bus.request(&target, Envelope::new("kernel", RECONFIGURE_KIND, &payload))
        })
        .await
        .map_err(|_| SwapError::HostGone(name.clone()))?;
        match answer {
            Ok(_) => {
                self.bus
                    .metrics
                    .swaps
                    .with_label_values(&[name.as_str(), "reconfigured"])
                    .inc();
                if let Some(p) = self
                    .config
                    .write()
                    .plugins
                    .iter_mut()
                    .find(|p| p.name == name)
                {
                    *p = plugin;
                }
                tracing::info!(plugin = %name, "config applied in place");
                Ok(Reconfigured::InPlace)
            }
            Err(e) if e.status == kubernel_abi::Status::UNKNOWN_KIND => {
                self.swap(plugin).await.map(Reconfigured::Swapped)
            }
            Err(e) if e.status == kubernel_abi::Status::UNAVAILABLE => {
                Err(SwapError::NotRunning(name))
            }
            Err(source) => Err(SwapError::Refused { name, source }),
        }
    }

    /// Swaps extension `extension` (e.g. a scheduler framework plugin) inside the
    /// running plugin `name` to the library at `path`; returns the plugin's report.
    pub async fn swap_extension(
        &self,
        name: &str,
        extension: &str,
        path: &Path,
    ) -> Result<String, SwapError> {
        let payload = serde_json::json!({ "name": extension, "path": path }).to_string();
        let target = name.to_string();
        let bus = self.bus.clone();
        let answer = tokio::task::spawn_blocking(move || {
            bus.request(
                &target,
                Envelope::new("kernel", SWAP_EXTENSION_KIND, payload.as_bytes()),
            )
        })
        .await
        .map_err(|_| SwapError::HostGone(name.to_string()))?;
        match answer {
            Ok(report) => Ok(String::from_utf8_lossy(&report).into_owned()),
            Err(e) if e.status == kubernel_abi::Status::UNAVAILABLE => {
                Err(SwapError::NotRunning(name.to_string()))
            }
            Err(source) => Err(SwapError::Refused {
                name: name.to_string(),
                source,
            }),
        }
    }

    /// Hot-swaps the plugin named by `plugin` to the library and config it gives.
    pub async fn swap(&self, plugin: PluginConfig) -> Result<SwapReport, SwapError> {
        use tracing::Instrument;
        let span = tracing::info_span!("swap_plugin", plugin = %plugin.name, path = %plugin.path.display());
        self.swap_traced(plugin).instrument(span).await
    }

    async fn swap_traced(&self, plugin: PluginConfig) -> Result<SwapReport, SwapError> {
        let name = plugin.name.clone();
        let slot = self
            .bus
            .resolve(&name)
            .map_err(|_| SwapError::NoSuchPlugin(name.clone()))?;
        let result = self.swap_slot(&slot, plugin.clone()).await;
        let label = match &result {
            Ok(_) => "success",
            Err(e) => e.result_label(),
        };
        self.bus
            .metrics
            .swaps
            .with_label_values(&[name.as_str(), label])
            .inc();
        match &result {
            Ok(_) => {
                let mut config = self.config.write();
                if let Some(p) = config.plugins.iter_mut().find(|p| p.name == name) {
                    *p = plugin;
                }
            }
            Err(e) => tracing::error!(plugin = %name, error = %e, "swap failed; old instance kept"),
        }
        result
    }

    async fn swap_slot(
        &self,
        slot: &Arc<crate::bus::Slot>,
        plugin: PluginConfig,
    ) -> Result<SwapReport, SwapError> {
        if slot.state() != PluginState::Running {
            return Err(SwapError::NotRunning(slot.name.clone()));
        }
        let name = plugin.name.clone();
        let path = self
            .config
            .read()
            .resolve_plugin_path(&plugin, self.exe_dir.as_deref());
        let scratch = self.scratch.clone();
        let lib = tokio::task::spawn_blocking(move || Library::load(&path, &scratch))
            .await
            .map_err(|_| SwapError::HostGone(name.clone()))?
            .map_err(|source| SwapError::Load {
                name: name.clone(),
                source,
            })?;
        let addr = slot
            .mailbox_addr()
            .ok_or_else(|| SwapError::HostGone(name.clone()))?;
        addr.send(Swap {
            library: Arc::new(lib),
            config: plugin,
        })
        .await
        .map_err(|_| SwapError::HostGone(name))?
    }

    /// Drains every plugin in reverse start order, each within its grace period.
    pub async fn drain(&self) {
        use tracing::Instrument;
        self.drain_traced()
            .instrument(tracing::info_span!("drain_plugins"))
            .await
    }

    async fn drain_traced(&self) {
        let config = self.config();
        for slot in self.bus.slots().into_iter().rev() {
            let grace = config
                .plugins
                .iter()
                .find(|p| p.name == slot.name)
                .map(|p| config.grace_period(p))
                .unwrap_or(config.kernel.shutdown_grace);
            let Some(addr) = slot.mailbox_addr() else {
                continue;
            };
            tracing::info!(plugin = %slot.name, grace = ?grace, "draining plugin");
            let deadline = grace + Duration::from_millis(500);
            if tokio::time::timeout(deadline, addr.send(Drain { grace }))
                .await
                .is_err()
            {
                tracing::warn!(plugin = %slot.name, grace = ?grace, "plugin did not drain within its grace period");
            }
        }
    }
}
