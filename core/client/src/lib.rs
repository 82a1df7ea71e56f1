//! The Kubernetes API client kubernel components share: typed requests and watches
//! over HTTP, informers (list+watch caches), rate-limited work queues, Events and
//! leader election.

mod api;
mod backoff;
mod bus;
mod client;
mod component;
mod config;
mod error;
mod events;
mod informer;
mod leader;
mod metrics;
mod params;
mod tls;
mod watch;
mod workqueue;

pub use api::{Api, ObjectList, ObjectResource};
pub use backoff::Backoff;
pub use bus::BusLink;
pub use client::Client;
pub use component::ComponentRuntime;
pub use config::{ClientConfig, Transport};
pub use error::ClientError;
pub use events::EventRecorder;
pub use informer::{Cache, Change, Informer};
pub use leader::{LeaderElection, LeaderElectionConfig};
pub use metrics::ClientMetrics;
pub use metrics::WorkQueueMetrics;
pub use params::{DeleteParams, ListParams, Patch};
pub use watch::WatchEvent;
pub use workqueue::WorkQueue;

/// Cancels informers, elections and other background tasks.
pub use tokio_util::sync::CancellationToken;

/// The Kubernetes object model the client speaks (k8s-openapi, v1.33).
pub use k8s_openapi;
