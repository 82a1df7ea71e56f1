//! The plugin instance: its own tokio runtime running the controller manager.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use kubernel_client::{BusLink, ClientMetrics, ComponentRuntime, WorkQueue};
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply, SharedHandler};
use parking_lot::Mutex;

use crate::config::ControllerManagerConfig;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::objectmetrics::ObjectMetrics;

/// The controller-manager plugin instance.
pub struct ControllerManager {
    ctx: Context,
    config: Arc<ControllerManagerConfig>,
    metrics: Metrics,
    client_metrics: ClientMetrics,
    bus: Arc<BusLink>,
    queues: Arc<Mutex<Vec<WorkQueue<String>>>>,
    election_registered: Arc<AtomicBool>,
    objects: ObjectMetrics,
    running: Option<ComponentRuntime>,
}

impl ControllerManager {
    fn start(&mut self) -> Result<(), PluginError> {
        let manager = Manager {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            client_metrics: self.client_metrics.clone(),
            bus: self.bus.clone(),
            registry: self.ctx.registry().clone(),
            kernel_data_dir: self.ctx.data_dir().parent().map(|p| p.to_path_buf()),
            queues: self.queues.clone(),
            election_registered: self.election_registered.clone(),
            objects: self.objects.clone(),
        };
        let running = ComponentRuntime::start(
            "controller-manager",
            self.config.worker_threads,
            &self.ctx.shutdown_signal(),
            move |stop| manager.run(stop),
        )
        .map_err(PluginError::Failed)?;
        self.running = Some(running);
        Ok(())
    }

    fn stop(&mut self, deadline: Duration) {
        if let Some(running) = self.running.take() {
            running.stop(deadline);
        }
        self.objects.forget();
    }
}

impl Plugin for ControllerManager {
    type Config = ControllerManagerConfig;

    fn init(ctx: Context, config: ControllerManagerConfig) -> Result<Self, PluginError> {
        config
            .validate()
            .map_err(|e| PluginError::Failed(e.to_string()))?;
        let metrics = Metrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let client_metrics = ClientMetrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let objects = ObjectMetrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let mut cm = ControllerManager {
            bus: BusLink::new(ctx.clone()),
            ctx,
            config: Arc::new(config),
            metrics,
            client_metrics,
            queues: Arc::default(),
            election_registered: Arc::default(),
            objects,
            running: None,
        };
        cm.start()?;
        Ok(cm)
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

    fn refresh_metrics(&mut self) {
        for q in self.queues.lock().iter() {
            q.refresh_metrics();
        }
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
