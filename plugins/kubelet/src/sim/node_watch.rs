//! Watches the simulated Nodes: honours the `kubernel.io/sim-paused` annotation and posts
//! a node's status at once when something (the node lifecycle controller) marked it not Ready.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kubernel_client::{Api, ListParams};

use super::fleet::{PAUSED_ANNOTATION, SIM_LABEL};
use super::register::is_ready;
use super::Shared;
use crate::watcher::{self, Seen};

/// Lists and watches the nodes labelled `kubernel.io/sim=true` until shutdown.
pub(super) async fn run(shared: Arc<Shared>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let params = ListParams {
        limit: 500,
        ..ListParams::default().labels(&format!("{SIM_LABEL}=true"))
    };
    let s = shared.clone();
    let mut listed = HashSet::new();
    watcher::run(api, params, shared.shutdown.clone(), move |seen| match seen {
        Seen::Page(nodes) => listed.extend(nodes.iter().filter_map(|n| observe(&s, n))),
        Seen::Listed => {
            // Nodes missing from the list carry no annotation any more.
            for i in (0..s.fleet.count()).filter(|i| !listed.contains(i)) {
                resume_if(&s, i, s.fleet.set_annotation_paused(i, false));
            }
            listed.clear();
        }
        Seen::Applied(node) => {
            observe(&s, &node);
        }
        Seen::Deleted(node) => {
            if let Some(name) = node.metadata.name.as_deref() {
                if s.fleet.index_of(name).is_some() {
                    tracing::info!(node = %name, "simulated node deleted; it is registered again when the kubelet restarts");
                }
            }
        }
    })
    .await;
}

/// Applies one node's pause annotation and readiness; returns its index if it is ours.
fn observe(shared: &Shared, node: &Node) -> Option<u32> {
    let name = node.metadata.name.as_deref()?;
    let i = shared.fleet.index_of(name)?;
    let paused = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v == "true");
    let was_paused = shared.fleet.is_paused(i);
    let resumed = shared.fleet.set_annotation_paused(i, paused);
    if paused && !was_paused {
        tracing::info!(node = %name, "simulated node paused: no heartbeats, no pod handling");
    }
    resume_if(shared, i, resumed);
    if !resumed && !shared.fleet.is_paused(i) && shared.fleet.is_registered(i) && !is_ready(node) {
        let _ = shared.status_now.send(i);
    }
    Some(i)
}

/// After node `i` resumed: post its status and sync its pods again.
fn resume_if(shared: &Shared, i: u32, resumed: bool) {
    if resumed {
        tracing::info!(node = %shared.fleet.name(i), "simulated node resumed");
        let _ = shared.status_now.send(i);
        let _ = shared.resync.send(i);
    }
}
