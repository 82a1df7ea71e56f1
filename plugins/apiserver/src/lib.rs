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

use std::time::Duration;

use kubernel_sdk::api::rest::{ApiRequest, ApiWatch, ApiWatchStop};
use kubernel_sdk::api::store::{StoreExport, StoreImport};
use kubernel_sdk::api::Message;
use kubernel_sdk::{Context, Incoming, Plugin, PluginError, Reply};

use crate::config::ApiServerConfig;
use crate::metrics::Metrics;
use crate::server::Server;

/// The apiserver plugin instance.
pub struct ApiServer {
    ctx: Context,
    config: ApiServerConfig,
    metrics: Metrics,
    server: Option<Server>,
}

impl ApiServer {
    fn start(&mut self) -> Result<(), PluginError> {
        let server = Server::start(&self.ctx, self.config.clone(), self.metrics.clone())
            .map_err(PluginError::Failed)?;
        self.server = Some(server);
        Ok(())
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
        };
        s.start()?;
        Ok(s)
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        match msg.kind {
            ApiRequest::KIND => msg.reply::<ApiRequest>(|req| match &self.server {
                Some(server) => Ok(server.call(msg.from, req)),
                None => Err(PluginError::Failed("the apiserver is not serving".into())),
            }),
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

    fn quiesce(&mut self, deadline: Duration) -> Result<(), PluginError> {
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
