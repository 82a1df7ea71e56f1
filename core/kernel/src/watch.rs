//! Watches the config file and applies plugin changes (a new `path` or `config`) as hot swaps.

use std::sync::Arc;

use crate::config::Config;
use crate::kernel::Kernel;

/// Polls the config file every `kernel.config_poll_interval` until the process exits.
pub async fn watch_config(kernel: Arc<Kernel>) {
    let source = kernel.config().source.clone();
    let interval = kernel.config().kernel.config_poll_interval;
    if interval.is_zero() {
        return;
    }
    let mut last = std::fs::read_to_string(&source).unwrap_or_default();
    loop {
        tokio::time::sleep(interval).await;
        let Ok(text) = std::fs::read_to_string(&source) else {
            continue;
        };
        if text == last {
            continue;
        }
        last = text.clone();
        let reloads = &kernel.bus.metrics.config_reloads;
        let new = match Config::parse(&text, &source, std::env::vars()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "config file changed but is invalid; keeping the running config");
                reloads.with_label_values(&["invalid"]).inc();
                continue;
            }
        };
        apply(&kernel, new).await;
        reloads.with_label_values(&["applied"]).inc();
    }
}

async fn apply(kernel: &Kernel, new: Config) {
    let current = kernel.config();
    for plugin in &new.plugins {
        match current.plugins.iter().find(|p| p.name == plugin.name) {
            Some(old) if old.path != plugin.path => {
                tracing::info!(plugin = %plugin.name, path = %plugin.path.display(), "config changed; swapping plugin");
                // Errors are logged and counted by `Kernel::swap`.
                let _ = kernel.swap(plugin.clone()).await;
            }
            Some(old) if old.config != plugin.config => {
                tracing::info!(plugin = %plugin.name, "plugin config changed; applying it");
                if let Err(e) = kernel.reconfigure(plugin.clone()).await {
                    tracing::error!(plugin = %plugin.name, error = %e, "new plugin config not applied; the old one stays in effect");
                }
            }
            Some(_) => {}
            None => {
                tracing::warn!(plugin = %plugin.name, "plugin added to the config; adding plugins needs a restart")
            }
        }
    }
    for old in &current.plugins {
        if !new.plugins.iter().any(|p| p.name == old.name) {
            tracing::warn!(plugin = %old.name, "plugin removed from the config; removing plugins needs a restart");
        }
    }
    if new.kernel.admin_addr != current.kernel.admin_addr {
        tracing::warn!("kernel settings changed; they take effect at the next start");
    }
}
