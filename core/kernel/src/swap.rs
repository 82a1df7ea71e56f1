//! Hot swap: replace a running plugin instance with one from another library, or roll back.
//!
//! Under the instance lock (so no request is handled meanwhile): quiesce the old
//! instance, take its snapshot, init the new instance, restore the snapshot into
//! it, switch. Any failure resumes the old instance and leaves it in place. The old
//! instance is shut down after the lock is released; its library is kept loaded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bus::{HeldGuard, Slot};
use crate::config::PluginConfig;
use crate::loader::{CallError, Library, Live};
use crate::vtable::vtable_for;

/// The outcome of a successful swap.
#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    /// Plugin instance name.
    pub name: String,
    /// Version before the swap.
    pub from_version: String,
    /// Version after the swap.
    pub to_version: String,
    /// Library now in use.
    pub path: String,
    /// How long the plugin took no messages, in seconds.
    pub pause_seconds: f64,
}

/// How a changed plugin config was applied.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "applied", rename_all = "snake_case")]
pub enum Reconfigured {
    /// The running instance took the new config.
    InPlace,
    /// The plugin cannot reconfigure in place; it was hot-swapped.
    Swapped(SwapReport),
}

/// A swap failed; the old instance (if there was one) keeps running.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No plugin of that name.
    #[error("no plugin {0:?}")]
    NoSuchPlugin(String),
    /// The plugin is not running (restarting, failed or stopped).
    #[error("plugin {0:?} is not running; retry the swap when it is")]
    NotRunning(String),
    /// The new library could not be loaded.
    #[error("plugin {name:?}: {source}")]
    Load {
        /// Plugin name.
        name: String,
        /// Loader error naming the file.
        source: crate::loader::LoadError,
    },
    /// A step failed and the old instance was resumed.
    #[error("swap of plugin {name:?} rolled back: {step} failed: {source}")]
    RolledBack {
        /// Plugin name.
        name: String,
        /// Which step failed.
        step: &'static str,
        /// The plugin's error.
        source: CallError,
    },
    /// The running plugin refused a new config or extension; it keeps running as before.
    #[error("plugin {name:?} refused: {source}")]
    Refused {
        /// Plugin name.
        name: String,
        /// The plugin's error.
        source: CallError,
    },
    /// The kernel could not reach the plugin's host actor.
    #[error("plugin {0:?}: host actor unavailable")]
    HostGone(String),
}

impl SwapError {
    /// The `result` label of `kubernel_plugin_swaps_total` for this failure.
    pub fn result_label(&self) -> &'static str {
        match self {
            SwapError::Load { .. } => "load_failed",
            SwapError::RolledBack { .. } => "rolled_back",
            _ => "refused",
        }
    }
}

/// Swaps `slot`'s instance for a new instance of `lib` configured by `config`.
pub fn swap(
    slot: &Arc<Slot>,
    lib: Arc<Library>,
    config: PluginConfig,
) -> Result<SwapReport, SwapError> {
    let name = slot.name.clone();
    let vtable = vtable_for(slot);
    let params = slot.init_params(&config);
    let quiesce_deadline: Duration = slot.bus.settings.request_timeout;
    let rolled_back = |step: &'static str, source: CallError| SwapError::RolledBack {
        name: name.clone(),
        step,
        source,
    };

    let mut guard = slot
        .lock(slot.bus.settings.request_timeout)
        .map_err(|e| rolled_back("lock", e))?;
    let held = HeldGuard::new(slot.id);
    let paused_at = Instant::now();
    let Some(old) = guard.as_mut() else {
        return Err(SwapError::NotRunning(name));
    };
    let from_version = old.library().meta.version.clone();
    let from_state_version = old.library().meta.state_version;

    old.quiesce(quiesce_deadline).map_err(|e| {
        let _ = old.resume();
        rolled_back("quiesce", e)
    })?;
    let state = old.snapshot().map_err(|e| {
        let _ = old.resume();
        rolled_back("snapshot", e)
    })?;
    let mut new = Live::init(lib.clone(), &vtable, &params).map_err(|e| {
        let _ = old.resume();
        rolled_back("init of the new instance", e)
    })?;
    if let Err(e) = new.restore(&state, from_state_version) {
        new.shutdown();
        let _ = old.resume();
        return Err(rolled_back("restore into the new instance", e));
    }

    let old = guard.replace(new);
    slot.generation.fetch_add(1, Ordering::SeqCst);
    let old_lib = std::mem::replace(&mut *slot.library.write(), lib.clone());
    *slot.config.write() = config;
    *slot.snapshot.lock() = (state, from_state_version);
    *slot.started_at.write() = Instant::now();
    drop(held);
    drop(guard);
    let pause = paused_at.elapsed();

    if let Some(old) = old {
        old.shutdown();
    }
    slot.graveyard.lock().push(old_lib);
    let metrics = &slot.bus.metrics;
    metrics.swap_pause.observe(pause.as_secs_f64());
    tracing::info!(plugin = %slot.name, from = %from_version, to = %lib.meta.version, pause = ?pause, "plugin swapped");
    Ok(SwapReport {
        name: slot.name.clone(),
        from_version,
        to_version: lib.meta.version.clone(),
        path: lib.path.display().to_string(),
        pause_seconds: pause.as_secs_f64(),
    })
}
