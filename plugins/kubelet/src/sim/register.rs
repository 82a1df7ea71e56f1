//! Registers the simulated nodes: creates each Node (or adopts the existing one) and its
//! Lease, a bounded number at a time, retrying with backoff until it succeeds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kubernel_client::{Api, Backoff, ClientError, Patch};
use serde_json::json;

use super::fleet::LEASE_NAMESPACE;
use super::Shared;

/// Why registering a node failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RegisterError {
    /// The apiserver refused or could not be reached; see the source for whether retrying helps.
    #[error("node {node}: {source}")]
    Api {
        /// The node.
        node: String,
        /// What the client reported.
        #[source]
        source: ClientError,
    },
    /// A built object did not convert to its typed form. Retrying does not help.
    #[error("node {node}: building the {what}: {source}")]
    Build {
        /// The node.
        node: String,
        /// `Node` or `Lease`.
        what: &'static str,
        /// The conversion error.
        #[source]
        source: serde_json::Error,
    },
}

/// Registers every node, `max_in_flight` at a time; returns when all are registered or
/// the kubelet shuts down.
pub(super) async fn register_all(shared: &Shared) {
    let nodes = shared.fleet.count();
    futures::stream::iter(0..nodes)
        .for_each_concurrent(shared.config.max_in_flight, |i| async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
            while !shared.shutdown.is_cancelled() {
                match register(shared, i).await {
                    Ok(()) => {
                        shared.registered.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?delay, "registering a simulated node failed");
                        tokio::select! {
                            _ = shared.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        })
        .await;
}

/// Creates node `i` with its status, or brings an existing one up to date; then its Lease.
async fn register(shared: &Shared, i: u32) -> Result<(), RegisterError> {
    let fleet = &shared.fleet;
    let name = fleet.name(i);
    let api_err = |source| RegisterError::Api {
        node: name.clone(),
        source,
    };
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let now = Timestamp::now();
    let node: Node = serde_json::from_value(fleet.node_object(i, now)).map_err(|source| {
        RegisterError::Build {
            node: name.clone(),
            what: "Node",
            source,
        }
    })?;
    let created = match shared.limited(nodes.create(&node)).await {
        Ok(n) => n,
        Err(e) if e.is_already_exists() => {
            // A kubelet restarting: keep user changes (taints, annotations), refresh our
            // labels and pod CIDR, and report a fresh status.
            let cidr = fleet.pod_cidr(i).map(|c| c.to_string());
            let patch = Patch::Merge(json!({
                "metadata": {"labels": fleet.labels(i)},
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            }));
            let existing = shared
                .limited(nodes.patch(&name, &patch))
                .await
                .map_err(api_err)?;
            let transition = !is_ready(&existing);
            let status = Patch::Strategic(fleet.node_status(i, now, transition));
            shared
                .limited(nodes.patch_status(&name, &status))
                .await
                .map_err(api_err)?
        }
        Err(e) => return Err(api_err(e)),
    };
    if let Some(uid) = created.metadata.uid.as_deref() {
        fleet.set_uid(i, uid);
    }
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let lease: Lease = serde_json::from_value(fleet.lease_object(i, now)).map_err(|source| {
        RegisterError::Build {
            node: name.clone(),
            what: "Lease",
            source,
        }
    })?;
    match shared.limited(leases.create(&lease)).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {
            let renewal = Patch::Merge(fleet.lease_renewal(i, now));
            shared
                .limited(leases.patch(&name, &renewal))
                .await
                .map_err(api_err)?;
        }
        Err(e) => return Err(api_err(e)),
    }
    tracing::debug!(node = %name, "simulated node registered");
    Ok(())
}

/// True when the node's `Ready` condition is `True`.
pub(super) fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}
