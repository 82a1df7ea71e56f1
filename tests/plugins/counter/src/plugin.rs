// Shared source of the counter plugin builds; `STATE_VERSION` is set by the includer.

use kubernel_sdk::api::codec;
use kubernel_sdk::api::echo::{Add, Broadcast, Count, Echo, Forward, GetCount, Panic, SharedPanic};
use kubernel_sdk::api::Message;
use kubernel_sdk::prometheus::IntCounter;
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply};
use serde::{Deserialize, Serialize};

/// Config of the counter plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    /// When set, `init` fails with this message (a test of init errors).
    #[serde(default)]
    pub fail_init: Option<String>,
    /// When set, `restore` fails with this message (a test of swap rollback).
    #[serde(default)]
    pub fail_restore: Option<String>,
    /// Value the counter starts at.
    #[serde(default)]
    pub start: u64,
    /// How long `quiesce` takes, milliseconds (a test of drain deadlines).
    #[serde(default)]
    pub quiesce_delay_ms: u64,
    /// When not 0, `init` sends the plugin itself an `Add` of this much: a message
    /// that arrives before its mailbox opens.
    #[serde(default)]
    pub add_on_start: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    total: u64,
    adds: u64,
}

/// The counter plugin instance.
pub struct Counter {
    ctx: Context,
    state: State,
    fail_restore: Option<String>,
    quiesce_delay: std::time::Duration,
    handled: IntCounter,
}

impl Plugin for Counter {
    type Config = CounterConfig;

    fn init(ctx: Context, config: CounterConfig) -> Result<Self, PluginError> {
        if let Some(msg) = config.fail_init {
            return Err(PluginError::Failed(msg));
        }
        let handled = IntCounter::new("echo_messages_handled_total", "Messages handled by the counter plugin.")
            .map_err(PluginError::failed)?;
        ctx.registry()
            .register(Box::new(handled.clone()))
            .map_err(PluginError::failed)?;
        ctx.subscribe::<Broadcast>()?;
        if config.add_on_start != 0 {
            ctx.send(ctx.name(), &Add { n: config.add_on_start })?;
        }
        kubernel_sdk::tracing::info!(start = config.start, version = env!("CARGO_PKG_VERSION"), "counter started");
        Ok(Counter {
            ctx,
            state: State { total: config.start, adds: 0 },
            fail_restore: config.fail_restore,
            quiesce_delay: std::time::Duration::from_millis(config.quiesce_delay_ms),
            handled,
        })
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        self.handled.inc();
        match msg.kind {
            Echo::KIND => msg.reply::<Echo>(Ok),
            Add::KIND => msg.reply::<Add>(|m| {
                self.state.total += m.n;
                self.state.adds += 1;
                Ok(self.state.total)
            }),
            Broadcast::KIND => msg.reply::<Broadcast>(|m| {
                self.state.total += m.n;
                Ok(())
            }),
            GetCount::KIND => msg.reply::<GetCount>(|_| {
                Ok(Count {
                    total: self.state.total,
                    adds: self.state.adds,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                })
            }),
            Panic::KIND => msg.reply::<Panic>(|m| panic!("{}", m.message)),
            Forward::KIND => msg.reply::<Forward>(|m| {
                Ok(self.ctx.request(&m.target, &Echo { text: m.text })?)
            }),
            other => Err(PluginError::UnknownKind(other.to_string())),
        }
    }

    fn shared(&self) -> Option<std::sync::Arc<dyn kubernel_sdk::SharedHandler>> {
        Some(std::sync::Arc::new(Stateless))
    }

    fn quiesce(&mut self, _deadline: std::time::Duration) -> Result<(), PluginError> {
        std::thread::sleep(self.quiesce_delay);
        Ok(())
    }

    fn reconfigure(&mut self, config: CounterConfig) -> Result<(), PluginError> {
        if let Some(msg) = config.fail_init {
            return Err(PluginError::Failed(msg));
        }
        self.quiesce_delay = std::time::Duration::from_millis(config.quiesce_delay_ms);
        self.fail_restore = config.fail_restore;
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(codec::encode("counter state", &self.state)?)
    }

    fn restore(&mut self, state: &[u8], from_version: u32) -> Result<(), PluginError> {
        if let Some(msg) = &self.fail_restore {
            return Err(PluginError::Failed(msg.clone()));
        }
        if from_version > STATE_VERSION {
            return Err(PluginError::Failed(format!(
                "snapshot state version {from_version} is newer than this build's {STATE_VERSION}"
            )));
        }
        if !state.is_empty() {
            self.state = codec::decode("counter state", state)?;
        }
        Ok(())
    }
}

kubernel_sdk::export_plugin!(Counter, name = "counter", kind = "echo", state_version = STATE_VERSION);

/// The counter's concurrent handler: echoes (no state) and panics on demand.
struct Stateless;

impl kubernel_sdk::SharedHandler for Stateless {
    fn handle(&self, msg: &Incoming<'_>) -> Option<Result<Reply, PluginError>> {
        match msg.kind {
            Echo::KIND => Some(msg.reply::<Echo>(Ok)),
            SharedPanic::KIND => Some(msg.reply::<SharedPanic>(|m| panic!("{}", m.message))),
            _ => None,
        }
    }
}
