//! Node heartbeats: each node's Lease is renewed every `lease_renew_interval` and its
//! status posted every `node_status_report_interval` (at once when it changed), the nodes
//! spread evenly over the interval so the apiserver sees a steady trickle, not bursts.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kubernel_client::{Api, Patch};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::fleet::LEASE_NAMESPACE;
use super::Shared;

/// At most this many ticks per interval: each tick handles `nodes / SLOTS` nodes.
const SLOTS: u32 = 200;

/// Calls `beat` for every unpaused, registered node once per `interval`, node `i` in
/// tick `i % slots`, until shutdown.
async fn spread<F, Fut>(shared: &Shared, interval: Duration, beat: F)
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let nodes = shared.fleet.count();
    if nodes == 0 {
        return;
    }
    let slots = nodes.min(SLOTS);
    let mut ticker = tokio::time::interval((interval / slots).max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut slot = 0;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let due = (slot..nodes)
            .step_by(slots as usize)
            .filter(|i| !shared.fleet.is_paused(*i) && shared.fleet.is_registered(*i));
        futures::stream::iter(due)
            .for_each_concurrent(shared.config.max_in_flight, &beat)
            .await;
        slot = (slot + 1) % slots;
    }
}

/// Renews every unpaused node's Lease once per `lease_renew_interval`.
pub(super) async fn renew_leases(shared: Arc<Shared>) {
    let interval = shared.config.lease_renew_interval;
    spread(&shared, interval, |i| renew(&shared, i)).await;
}

async fn renew(shared: &Shared, i: u32) {
    let fleet = &shared.fleet;
    let name = fleet.name(i);
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let now = Timestamp::now();
    let renewal = Patch::Merge(fleet.lease_renewal(i, now));
    let result = match shared.limited(leases.patch(&name, &renewal)).await {
        Err(e) if e.is_not_found() => {
            match serde_json::from_value::<Lease>(fleet.lease_object(i, now)) {
                Ok(lease) => shared.limited(leases.create(&lease)).await.map(drop),
                Err(e) => {
                    tracing::error!(node = %name, error = %e, "building the node Lease failed");
                    shared.metrics.lease_renewed(false);
                    return;
                }
            }
        }
        other => other.map(drop),
    };
    if let Err(e) = &result {
        tracing::warn!(node = %name, error = %e, "renewing the node Lease failed");
    }
    shared.metrics.lease_renewed(result.is_ok());
}

/// Posts every unpaused node's status once per `node_status_report_interval`, and a
/// node's status at once when its index arrives on `changed`.
pub(super) async fn report_status(shared: Arc<Shared>, mut changed: mpsc::UnboundedReceiver<u32>) {
    let interval = shared.config.node_status_report_interval;
    let urgent = async {
        while let Some(i) = changed.recv().await {
            if !shared.fleet.is_paused(i) {
                post(&shared, i, true).await;
            }
        }
    };
    tokio::select! {
        _ = spread(&shared, interval, |i| post(&shared, i, false)) => {}
        _ = urgent => {}
    }
}

/// Posts node `i`'s status; `transition` marks the conditions as just changed.
async fn post(shared: &Shared, i: u32, transition: bool) {
    let name = shared.fleet.name(i);
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let status = Patch::Strategic(shared.fleet.node_status(i, Timestamp::now(), transition));
    let result = shared
        .limited(nodes.patch_status_discarding(&name, &status))
        .await;
    if let Err(e) = &result {
        tracing::warn!(node = %name, error = %e, "posting the node status failed");
    } else {
        tracing::debug!(node = %name, transition, "node status posted");
    }
    shared.metrics.node_status_posted(result.is_ok());
}
