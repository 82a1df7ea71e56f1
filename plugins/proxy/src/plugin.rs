//! The plugin instance: its own runtime running the proxy loop and `/healthz`.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use kubernel_client::{BusLink, ClientMetrics, ComponentRuntime};
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply, SharedHandler};

use crate::config::ProxyConfig;
use crate::metrics::Metrics;
use crate::run::Proxy;

/// The proxy plugin instance.
pub struct ProxyPlugin {
    ctx: Context,
    config: Arc<ProxyConfig>,
    metrics: Metrics,
    client_metrics: ClientMetrics,
    bus: Arc<BusLink>,
    last_sync: Arc<AtomicI64>,
    running: Option<ComponentRuntime>,
}

impl ProxyPlugin {
    fn start(&mut self) -> Result<(), PluginError> {
        let proxy = Proxy {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            client_metrics: self.client_metrics.clone(),
            bus: self.bus.clone(),
            kernel_data_dir: self.ctx.data_dir().parent().map(|p| p.to_path_buf()),
            last_sync: self.last_sync.clone(),
        };
        let (addr, last, period) = (
            self.config.healthz_bind_address,
            self.last_sync.clone(),
            self.config.sync_period,
        );
        let running = ComponentRuntime::start(
            "proxy",
            self.config.worker_threads,
            &self.ctx.shutdown_signal(),
            move |stop| async move {
                tokio::spawn(crate::healthz::serve(addr, last, period, stop.clone()));
                proxy.run(stop).await;
            },
        )
        .map_err(PluginError::Failed)?;
        self.running = Some(running);
        Ok(())
    }

    fn stop(&mut self, deadline: Duration) {
        if let Some(running) = self.running.take() {
            running.stop(deadline);
        }
    }
}

impl Plugin for ProxyPlugin {
    type Config = ProxyConfig;

    fn init(ctx: Context, config: ProxyConfig) -> Result<Self, PluginError> {
        config.validate().map_err(PluginError::Failed)?;
        let metrics = Metrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let client_metrics = ClientMetrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let mut p = ProxyPlugin {
            bus: BusLink::new(ctx.clone()),
            ctx,
            config: Arc::new(config),
            metrics,
            client_metrics,
            last_sync: Arc::default(),
            running: None,
        };
        p.start()?;
        Ok(p)
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
        self.stop(deadline);
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PluginError> {
        self.start()
    }

    fn ready(&self) -> Result<(), String> {
        match &self.running {
            Some(_) => Ok(()),
            None => Err("stopped".into()),
        }
    }

    fn shutdown(mut self) {
        self.stop(Duration::from_secs(5));
    }
}
