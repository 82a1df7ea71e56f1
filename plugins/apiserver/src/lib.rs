//! The kubernel apiserver plugin: the Kubernetes REST API over an embedded or etcd store.

// `ApiError` (a whole Kubernetes `Status`) is returned at most once per request;
// boxing it would cost an allocation on the error path for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod auth;
pub mod bus_watch;
pub mod config;
pub mod discovery;
pub mod flowcontrol;
pub mod fuzzing;
mod handlers;
pub mod limits;
pub mod metrics;
mod migrate;
pub mod negotiate;
pub mod objects;
pub mod openapi;
pub mod patch;
mod plain;
pub mod protobuf;
pub mod request;
pub mod selectors;
mod server;
pub mod status;
pub mod store;
mod tls;
pub mod yaml;

use std::sync::Arc;
use std::time::Duration;

use kubernel_sdk::api::rest::{ApiCall, ApiRequest, ApiResponse, ApiWatch, ApiWatchStop};
use kubernel_sdk::api::store::{StoreExport, StoreImport};
use kubernel_sdk::api::Message;
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply, SharedHandler};

use crate::config::ApiServerConfig;
use crate::metrics::Metrics;
use crate::server::{BusCaller, Server};

/// The apiserver plugin instance.
pub struct ApiServer {
    ctx: Context,
    config: ApiServerConfig,
    metrics: Metrics,
    server: Option<Server>,
    /// Answers `api.Request`s concurrently while the server runs.
    calls: Arc<BusCalls>,
}

impl ApiServer {
    fn start(&mut self) -> Result<(), PluginError> {
        let server = Server::start(&self.ctx, self.config.clone(), self.metrics.clone())
            .map_err(PluginError::Failed)?;
        *self.calls.0.write() = Some(server.caller());
        self.server = Some(server);
        Ok(())
    }
}

/// The apiserver's shared handler: `api.Request`s from plugins of this process run
/// at once, each on its sender's thread, like concurrent HTTP requests; `api.Call`s
/// are started on the server's runtime and answered to the sender's mailbox.
#[derive(Default)]
struct BusCalls(parking_lot::RwLock<Option<BusCaller>>);

impl BusCalls {
    fn call(&self, from: &str, req: ApiRequest) -> Result<ApiResponse, PluginError> {
        let caller = self.0.read().clone();
        match caller {
            Some(caller) => Ok(caller.call(from, req)),
            None => Err(PluginError::Failed("the apiserver is not serving".into())),
        }
    }

    fn start(&self, from: &str, call: ApiCall) -> Result<(), PluginError> {
        match self.0.read().as_ref() {
            Some(caller) => {
                caller.start(from, call);
                Ok(())
            }
            None => Err(PluginError::Failed("the apiserver is not serving".into())),
        }
    }
}

impl SharedHandler for BusCalls {
    fn handle(&self, msg: &Incoming<'_>) -> Option<Result<Reply, PluginError>> {
        match msg.kind {
            ApiRequest::KIND => Some(msg.reply::<ApiRequest>(|req| self.call(msg.from, req))),
            ApiCall::KIND => Some(msg.reply::<ApiCall>(|call| self.start(msg.from, call))),
            _ => None,
        }
    }
}

impl Plugin for ApiServer {
    type Config = ApiServerConfig;

    fn init(ctx: Context, config: ApiServerConfig) -> Result<Self, PluginError> {
        let metrics = Metrics::new(ctx.registry()).map_err(PluginError::failed)?;
        let mut s = ApiServer {
            ctx,
            config,
            metrics,
            server: None,
            calls: Arc::default(),
        };
        s.start()?;
        Ok(s)
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        match msg.kind {
            ApiRequest::KIND => msg.reply::<ApiRequest>(|req| self.calls.call(msg.from, req)),
            ApiCall::KIND => msg.reply::<ApiCall>(|call| self.calls.start(msg.from, call)),
            ApiWatch::KIND => msg.reply::<ApiWatch>(|req| match &self.server {
                Some(server) => Ok(server.watch(msg.from, req)),
                None => Err(PluginError::Failed("the apiserver is not serving".into())),
            }),
            ApiWatchStop::KIND => msg.reply::<ApiWatchStop>(|req| {
                Ok(self
                    .server
                    .as_ref()
                    .is_some_and(|server| server.stop_watch(msg.from, &req.id)))
            }),
            StoreExport::KIND => msg.reply::<StoreExport>(|req| match &self.server {
                Some(server) => server.export(&req).map_err(PluginError::Failed),
                None => Err(PluginError::Failed("the apiserver is not serving".into())),
            }),
            StoreImport::KIND => msg.reply::<StoreImport>(|req| match &self.server {
                Some(server) => server.import(req).map_err(PluginError::Failed),
                None => Err(PluginError::Failed("the apiserver is not serving".into())),
            }),
            other => Err(PluginError::UnknownKind(other.to_string())),
        }
    }

    fn shared(&self) -> Option<Arc<dyn SharedHandler>> {
        Some(self.calls.clone())
    }

    fn quiesce(&mut self, deadline: Duration) -> Result<(), PluginError> {
        *self.calls.0.write() = None;
        if let Some(server) = self.server.take() {
            server.stop(deadline);
        }
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PluginError> {
        self.start()
    }

    fn refresh_metrics(&mut self) {
        if let Some(s) = &self.server {
            s.update_gauges();
        }
    }

    fn ready(&self) -> Result<(), String> {
        match &self.server {
            Some(server) => server.ready(),
            None => Err("not serving".into()),
        }
    }

    fn shutdown(self) {
        if let Some(server) = self.server {
            server.stop(Duration::from_secs(5));
        }
    }
}

kubernel_sdk::export_plugin!(
    ApiServer,
    name = "apiserver",
    kind = "apiserver",
    state_version = 1
);
