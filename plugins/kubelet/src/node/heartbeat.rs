//! The node's registration and heartbeats: the Node object (created, or brought up to
//! date after a restart), its Lease renewed every `lease_renew_interval`, and its status
//! checked every `node_status_update_frequency` and posted when it changed, or every
//! `node_status_report_interval` when it did not.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kubernel_client::{Api, Backoff, ClientError, Patch};
use serde_json::{json, Value};

use super::{machine, Shared};
use crate::pod_status::k8s_micro_time;

/// Namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

fn labels(shared: &Shared) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": shared.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": machine::architecture(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": machine::architecture(),
    });
    for (k, v) in &shared.config.labels {
        labels[k] = json!(v);
    }
    labels
}

fn node_object(shared: &Shared) -> Value {
    let taints: Vec<Value> = shared
        .config
        .taints
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
        .collect();
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": shared.node_name, "labels": labels(shared)},
        "spec": {},
    });
    if !taints.is_empty() {
        node["spec"]["taints"] = json!(taints);
    }
    node
}

/// The node's status now; conditions keep the transition times of `previous` when their
/// status is unchanged.
fn node_status(shared: &Shared, readings: &machine::Readings, previous: Option<&Node>) -> Value {
    let health = shared.runtime_health.lock().clone();
    let version = match &health {
        Ok(v) => v.clone(),
        Err(_) => crate::runtime::Runtime::version(&*shared.runtime),
    };
    let not_ready = health.err();
    let since = |kind: &str, status: &str| {
        previous
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind && c.status == status))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| crate::pod_status::k8s_time(t.0))
    };
    json!({
        "capacity": readings.capacity(),
        "allocatable": readings.allocatable(),
        "conditions": machine::conditions(readings, Timestamp::now(), not_ready.as_deref(), &since),
        "addresses": [
            {"type": "InternalIP", "address": shared.config.node_ip.to_string()},
            {"type": "Hostname", "address": shared.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": shared.port.load(Ordering::Relaxed)}},
        "nodeInfo": machine::node_info(&version),
    })
}

fn lease_spec(shared: &Shared) -> Value {
    json!({
        "holderIdentity": shared.node_name,
        "leaseDurationSeconds": shared.config.lease_duration_seconds,
        "renewTime": k8s_micro_time(Timestamp::now()),
    })
}

fn readings(shared: &Shared) -> machine::Readings {
    machine::read(&shared.root)
}

/// Registers the node (retrying with backoff) and creates its Lease.
pub(super) async fn register(shared: &Shared) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    while !shared.shutdown.is_cancelled() {
        match try_register(shared).await {
            Ok(()) => {
                shared.registered.store(true, Ordering::Relaxed);
                tracing::info!(node = %shared.node_name, "node registered");
                shared.recorder.record(
                    shared.node_ref(),
                    "Normal",
                    "NodeReady",
                    &format!("Node {} status is now: NodeReady", shared.node_name),
                );
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(node = %shared.node_name, error = %e, retry_in = ?delay, "registering the node failed");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn try_register(shared: &Shared) -> Result<(), ClientError> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let node: Node = serde_json::from_value(node_object(shared))
        .map_err(|e| ClientError::Config(format!("building the Node: {e}")))?;
    let existing = match nodes.create(&node).await {
        Ok(n) => n,
        Err(e) if e.is_already_exists() => {
            // Restarted: keep user changes, refresh our labels.
            nodes
                .patch(
                    &shared.node_name,
                    &Patch::Merge(json!({"metadata": {"labels": labels(shared)}})),
                )
                .await?
        }
        Err(e) => return Err(e),
    };
    let status = node_status(shared, &readings(shared), Some(&existing));
    nodes
        .patch_status_discarding(
            &shared.node_name,
            &Patch::Strategic(json!({ "status": status })),
        )
        .await?;
    renew(shared, existing.metadata.uid.as_deref()).await
}

async fn renew(shared: &Shared, node_uid: Option<&str>) -> Result<(), ClientError> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let patch = Patch::Merge(json!({ "spec": lease_spec(shared) }));
    match leases.patch(&shared.node_name, &patch).await {
        Err(e) if e.is_not_found() => {
            let mut lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": shared.node_name, "namespace": LEASE_NAMESPACE},
                "spec": lease_spec(shared),
            });
            if let Some(uid) = node_uid {
                lease["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": "v1", "kind": "Node", "name": shared.node_name, "uid": uid,
                }]);
            }
            let lease: Lease = serde_json::from_value(lease)
                .map_err(|e| ClientError::Config(format!("building the Lease: {e}")))?;
            leases.create(&lease).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// Renews the node Lease every `lease_renew_interval` until shutdown.
pub(super) async fn renew_lease(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(shared.config.lease_renew_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = renew(&shared, None).await;
        if let Err(e) = &result {
            tracing::warn!(node = %shared.node_name, error = %e, "renewing the node Lease failed");
        }
        shared.metrics.lease_renewed(result.is_ok());
    }
}

/// What decides whether the status changed: capacity, allocatable, condition statuses
/// and the runtime's health.
fn fingerprint(shared: &Shared, r: &machine::Readings) -> (Value, (bool, bool, bool), bool) {
    (
        r.capacity(),
        r.pressure(),
        shared.runtime_health.lock().is_ok(),
    )
}

/// Checks the node every `node_status_update_frequency`; posts its status when it
/// changed, or when `node_status_report_interval` passed since the last post.
pub(super) async fn report_status(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(shared.config.node_status_update_frequency);
    let mut last = fingerprint(&shared, &readings(&shared));
    let mut posted = Instant::now();
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let r = readings(&shared);
        let now = fingerprint(&shared, &r);
        if now == last && posted.elapsed() < shared.config.node_status_report_interval {
            continue;
        }
        let nodes: Api<Node> = Api::all(shared.client.clone());
        let previous = nodes.get(&shared.node_name).await.ok();
        let status = node_status(&shared, &r, previous.as_ref());
        let result = nodes
            .patch_status_discarding(
                &shared.node_name,
                &Patch::Strategic(json!({ "status": status })),
            )
            .await;
        match &result {
            Ok(_) => {
                last = now;
                posted = Instant::now();
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!(node = %shared.node_name, "the Node was deleted; registering it again");
                register(&shared).await;
            }
            Err(e) => {
                tracing::warn!(node = %shared.node_name, error = %e, "posting the node status failed")
            }
        }
        shared.metrics.node_status_posted(result.is_ok());
    }
}
