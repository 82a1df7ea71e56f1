//! The scheduler as a kernel plugin: config, reconfiguration and `.so` extension swaps.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kubernel_client::{BusLink, ClientConfig, ClientMetrics};
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply, SharedHandler};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::SchedulerConfig;
use crate::external::register_external;
use crate::framework::Registry;
use crate::plugins::in_tree_registry;
use crate::run::Runner;
use crate::Scheduler;

/// `[plugin.config]` of the scheduler: the scheduling configuration (profiles,
/// plugins, weights, `external_plugins`) at the top level, shaped like
/// KubeSchedulerConfiguration, plus `[client]` and `[leader_election]` tables.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// How to reach the apiserver (`[plugin.config.client]`).
    pub client: ClientConfig,
    /// Leader election through a Lease (`[plugin.config.leader_election]`).
    pub leader_election: LeaderElectionSettings,
    /// Profiles and framework settings.
    pub scheduling: SchedulerConfig,
}

/// Leader election settings, as kube-scheduler's `leaderElection`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionSettings {
    /// Schedule only while holding the Lease; off for a single scheduler.
    pub leader_elect: bool,
    /// Lease name in `resource_namespace`.
    pub resource_name: String,
    /// Lease namespace.
    pub resource_namespace: String,
    /// How long a Lease is valid without renewal (upstream `--leader-elect-lease-duration`, 15 s).
    #[serde(with = "humantime_serde")]
    pub lease_duration: std::time::Duration,
    /// How often to renew or retry (upstream `--leader-elect-retry-period`, 2 s).
    #[serde(with = "humantime_serde")]
    pub retry_period: std::time::Duration,
}

impl Default for LeaderElectionSettings {
    fn default() -> Self {
        LeaderElectionSettings {
            leader_elect: false,
            resource_name: "kube-scheduler".into(),
            resource_namespace: "kube-system".into(),
            lease_duration: std::time::Duration::from_secs(15),
            retry_period: std::time::Duration::from_secs(2),
        }
    }
}

impl<'de> Deserialize<'de> for PluginConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = Map::<String, Value>::deserialize(d)?;
        let mut take = |key: &str| table.remove(key).unwrap_or(Value::Object(Map::new()));
        let client = ClientConfig::deserialize(take("client"))
            .map_err(|e| D::Error::custom(format!("client: {e}")))?;
        let leader_election = LeaderElectionSettings::deserialize(take("leader_election"))
            .map_err(|e| D::Error::custom(format!("leader_election: {e}")))?;
        let scheduling =
            SchedulerConfig::deserialize(Value::Object(table)).map_err(D::Error::custom)?;
        scheduling.validate().map_err(D::Error::custom)?;
        Ok(PluginConfig {
            client,
            leader_election,
            scheduling,
        })
    }
}

/// The core and the plugin registry it was built from, shared with the runner.
pub struct Engine {
    /// The scheduling core.
    pub core: Mutex<Scheduler>,
    /// In-tree plus external plugin factories.
    pub registry: Mutex<Registry>,
    /// The configuration the core runs.
    pub config: Mutex<SchedulerConfig>,
    /// Where external `.so` files are copied before loading.
    pub scratch: std::path::PathBuf,
}

impl Engine {
    fn registry_for(config: &SchedulerConfig, scratch: &Path) -> Result<Registry, String> {
        let mut registry = in_tree_registry();
        register_external(&mut registry, &config.external_plugins, scratch)
            .map_err(|e| e.to_string())?;
        Ok(registry)
    }
}

/// The scheduler plugin instance.
pub struct SchedulerPlugin {
    ctx: Context,
    config: PluginConfig,
    engine: Arc<Engine>,
    client_metrics: ClientMetrics,
    bus: Arc<BusLink>,
    runner: Option<Runner>,
}

impl SchedulerPlugin {
    fn start_runner(&mut self) -> Result<(), PluginError> {
        let runner = Runner::start(
            &self.ctx,
            &self.config,
            self.engine.clone(),
            self.client_metrics.clone(),
            &self.bus,
        )
        .map_err(PluginError::Failed)?;
        self.runner = Some(runner);
        Ok(())
    }
}

impl Plugin for SchedulerPlugin {
    type Config = PluginConfig;

    fn init(ctx: Context, config: PluginConfig) -> Result<Self, PluginError> {
        let scratch = ctx.data_dir().join("extensions");
        let registry =
            Engine::registry_for(&config.scheduling, &scratch).map_err(PluginError::Failed)?;
        let core = Scheduler::new(&config.scheduling, &registry, ctx.registry())
            .map_err(PluginError::failed)?;
        let client_metrics = ClientMetrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let engine = Arc::new(Engine {
            core: Mutex::new(core),
            registry: Mutex::new(registry),
            config: Mutex::new(config.scheduling.clone()),
            scratch,
        });
        let mut plugin = SchedulerPlugin {
            bus: BusLink::new(ctx.clone()),
            ctx,
            config,
            engine,
            client_metrics,
            runner: None,
        };
        plugin.start_runner()?;
        Ok(plugin)
    }

    /// The apiserver's answers and watch events, taken off the mailbox without the
    /// instance's exclusive lock.
    fn shared(&self) -> Option<Arc<dyn SharedHandler>> {
        Some(self.bus.clone())
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        if let Some(delivered) = self.bus.deliver(msg) {
            return delivered;
        }
        Err(PluginError::UnknownKind(msg.kind.to_string()))
    }

    fn quiesce(&mut self, deadline: Duration) -> Result<(), PluginError> {
        if let Some(runner) = self.runner.take() {
            runner.stop(deadline);
        }
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PluginError> {
        if self.runner.is_none() {
            self.start_runner()?;
        }
        Ok(())
    }

    fn reconfigure(&mut self, config: PluginConfig) -> Result<(), PluginError> {
        if config.client.server != self.config.client.server
            || config.client.kubeconfig != self.config.client.kubeconfig
            || config.leader_election.leader_elect != self.config.leader_election.leader_elect
        {
            // Another apiserver or election mode: the kernel swaps the instance instead.
            return Err(PluginError::UnknownKind(
                kubernel_sdk::api::kernel::RECONFIGURE.to_string(),
            ));
        }
        let registry = Engine::registry_for(&config.scheduling, &self.engine.scratch)
            .map_err(PluginError::Failed)?;
        let changed = self
            .engine
            .core
            .lock()
            .reconfigure(&config.scheduling, &registry)
            .map_err(PluginError::failed)?;
        *self.engine.registry.lock() = registry;
        *self.engine.config.lock() = config.scheduling.clone();
        if let Some(r) = &self.runner {
            for c in &changed {
                r.record_swap(
                    &c.profile,
                    &c.plugin,
                    &format!("plugin {} {} in profile {}", c.plugin, c.change, c.profile),
                );
            }
            r.wake();
        }
        tracing::info!(changes = changed.len(), "scheduler profiles reconfigured");
        self.config = config;
        Ok(())
    }

    fn swap_extension(&mut self, name: &str, path: &Path) -> Result<String, PluginError> {
        let mut config = self.engine.config.lock().clone();
        let Some(entry) = config.external_plugins.iter_mut().find(|p| p.name == name) else {
            let known: Vec<&str> = config
                .external_plugins
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(PluginError::Failed(format!(
                "no external scheduler plugin {name:?}; configured: {known:?}"
            )));
        };
        entry.path = path.to_path_buf();
        let mut registry = self.engine.registry.lock();
        let previous = registry.get(name).map(|(f, _)| f.clone());
        crate::external::swap_external(&mut registry, name, path, &self.engine.scratch)
            .map_err(|e| PluginError::Failed(e.to_string()))?;
        let result = self.engine.core.lock().reconfigure(&config, &registry);
        if let Err(e) = result {
            if let Some(f) = previous {
                registry.replace(name, f);
            }
            return Err(PluginError::failed(e));
        }
        drop(registry);
        *self.engine.config.lock() = config;
        let report = format!("scheduler plugin {name} now runs {}", path.display());
        if let Some(r) = &self.runner {
            r.record_swap("*", name, &report);
            r.wake();
        }
        tracing::info!(plugin = name, path = %path.display(), "scheduler plugin swapped");
        Ok(report)
    }

    fn ready(&self) -> Result<(), String> {
        match &self.runner {
            Some(r) => r.ready(),
            None => Err("stopped".into()),
        }
    }

    fn shutdown(self) {
        if let Some(runner) = self.runner {
            runner.stop(Duration::from_secs(5));
        }
    }
}
