//! Test helpers for the controller-manager scenarios: a cluster running it, a
//! fake kubelet that binds pods and marks them Running+Ready, and polling.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff;
use kubernel_client::{
    Api, CancellationToken, Change, Client, DeleteParams, Informer, ListParams, Patch,
};
use kubernel_e2e::{component_entry, Cluster};
use serde_json::json;

/// Starts the apiserver (with `apiserver_config` lines) and the controller-manager
/// (with `config` lines).
pub fn cluster_with(apiserver_config: &str, config: &str) -> Result<Cluster> {
    Cluster::start(&format!(
        "{apiserver_config}\n{}",
        component_entry("controller-manager", "controller-manager", config)
    ))
}

/// Starts the apiserver and a controller-manager with default settings.
pub fn cluster() -> Result<Cluster> {
    cluster_with("", "")
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`
/// with the last observation.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(Option<T>, String)>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok((Some(v), _)) => return Ok(v),
            Ok((None, seen)) => seen,
            Err(e) => format!("error: {e:#}"),
        };
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kubectl get <what> -o jsonpath=<path>` polled until it equals `want`.
pub fn wait_jsonpath(c: &Cluster, args: &[&str], path: &str, want: &str) -> Result<()> {
    let jp = format!("jsonpath={path}");
    let mut full: Vec<&str> = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", &jp]);
    wait_for(
        &format!("`kubectl {}` = {want:?}", full.join(" ")),
        Duration::from_secs(30),
        || {
            let out = c.ok(&full)?;
            Ok(((out.trim() == want).then_some(()), out))
        },
    )
}

/// Names of the pods matching `selector` that are not being deleted.
pub fn live_pods(c: &Cluster, selector: &str) -> Result<Vec<String>> {
    let out = c.ok(&["get", "pods", "-l", selector, "-o", "json"])?;
    let list: serde_json::Value = serde_json::from_str(&out)?;
    Ok(list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// A kubelet stand-in: binds pending pods to its nodes round-robin, reports them
/// Running (and Ready unless their image starts with `never-ready`), finishes
/// graceful deletions, and renews its nodes' Leases — except on paused nodes.
pub struct FakeKubelet {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    paused: Arc<Mutex<HashSet<String>>>,
    nodes: Vec<String>,
    api: String,
}

impl FakeKubelet {
    /// Registers `nodes` (Ready, with Leases; `zone` label when given) and starts serving them.
    pub fn start(c: &Cluster, nodes: &[&str], zone: Option<&str>) -> Result<FakeKubelet> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let kubelet = FakeKubelet {
            runtime,
            shutdown: CancellationToken::new(),
            paused: Arc::default(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            api: c.api.clone(),
        };
        let client = Client::from_url(&c.api)?;
        for node in nodes {
            kubelet.runtime.block_on(register(&client, node, zone))?;
        }
        kubelet.runtime.spawn(serve_pods(
            client.clone(),
            kubelet.nodes.clone(),
            kubelet.paused.clone(),
            kubelet.shutdown.clone(),
        ));
        kubelet.runtime.spawn(heartbeat(
            client,
            kubelet.nodes.clone(),
            kubelet.paused.clone(),
            kubelet.shutdown.clone(),
        ));
        Ok(kubelet)
    }

    /// Stops serving `node`: no Lease renewals, no pod updates (the node "dies").
    pub fn pause(&self, node: &str) {
        if let Ok(mut p) = self.paused.lock() {
            p.insert(node.to_string());
        }
    }

    /// Serves `node` again and reports it Ready.
    pub fn resume(&self, node: &str) -> Result<()> {
        if let Ok(mut p) = self.paused.lock() {
            p.remove(node);
        }
        let client = Client::from_url(&self.api)?;
        self.runtime.block_on(report_ready(&client, node))?;
        Ok(())
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

async fn register(client: &Client, node: &str, zone: Option<&str>) -> Result<()> {
    let mut labels = json!({"kubernetes.io/hostname": node});
    if let Some(z) = zone {
        labels["topology.kubernetes.io/zone"] = json!(z);
    }
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": node, "labels": labels},
        "spec": {},
    }))?;
    Api::<Node>::all(client.clone()).create(&n).await?;
    report_ready(client, node).await?;
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    }))?;
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&lease)
        .await?;
    Ok(())
}

async fn report_ready(client: &Client, node: &str) -> Result<()> {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Api::<Node>::all(client.clone())
        .patch_status(
            node,
            &Patch::Merge(json!({"status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }]}})),
        )
        .await?;
    Ok(())
}

async fn heartbeat(
    client: Client,
    nodes: Vec<String>,
    paused: Arc<Mutex<HashSet<String>>>,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        for node in &nodes {
            if paused.lock().map(|p| p.contains(node)).unwrap_or(false) {
                continue;
            }
            let _ = leases
                .patch(
                    node,
                    &Patch::Merge(json!({"spec": {"renewTime": micro_now()}})),
                )
                .await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

static NEXT_IP: AtomicU32 = AtomicU32::new(2);

async fn serve_pods(
    client: Client,
    nodes: Vec<String>,
    paused: Arc<Mutex<HashSet<String>>>,
    shutdown: CancellationToken,
) {
    let (_cache, mut changes) = Informer::start(
        Api::<Pod>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    let mut next = 0usize;
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = changes.recv() => c,
        };
        let pod = match change {
            Some(Change::Added(p)) | Some(Change::Updated { new: p, .. }) => p,
            Some(_) => continue,
            None => return,
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = match bound {
            Some(n) if !n.is_empty() => n,
            _ => {
                let live: Vec<&String> = nodes
                    .iter()
                    .filter(|n| !paused.lock().map(|p| p.contains(*n)).unwrap_or(false))
                    .collect();
                if live.is_empty() || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let node = live[next % live.len()].clone();
                next += 1;
                let binding = json!({"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name}, "target": {"kind": "Node", "name": node}});
                let _ = api.create_subresource(&name, "binding", &binding).await;
                continue;
            }
        };
        if !nodes.contains(&node) || paused.lock().map(|p| p.contains(&node)).unwrap_or(true) {
            continue;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = api
                .delete(
                    &name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..DeleteParams::default()
                    },
                )
                .await;
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            continue;
        }
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let ready = if image.starts_with("never-ready") {
            "False"
        } else {
            "True"
        };
        let n = NEXT_IP.fetch_add(1, Ordering::SeqCst);
        let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let containers: Vec<serde_json::Value> = pod
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| json!({"name": c.name, "image": c.image, "imageID": "", "ready": ready == "True",
                        "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}))
                    .collect()
            })
            .unwrap_or_default();
        let status = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.1",
        "startTime": now, "containerStatuses": containers,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
            {"type": "Ready", "status": ready, "lastTransitionTime": now},
        ]}});
        let _ = api.patch_status(&name, &Patch::Merge(status)).await;
    }
}

/// Fails unless `out` contains `needle`.
pub fn expect_contains(out: &str, needle: &str) -> Result<()> {
    if out.contains(needle) {
        Ok(())
    } else {
        Err(anyhow!("expected {needle:?} in:\n{out}"))
    }
}
