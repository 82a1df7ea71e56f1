//! Pods bound to simulated nodes (through the `binding` subresource or `spec.nodeName`)
//! run with IPs from their node's pod CIDR; deletions finish; a paused node leaves its
//! deleted pods Terminating until it resumes; a restarted kubelet keeps pod IPs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kubernel_client::{Api, Client, ListParams};
use kubernel_e2e::{component_entry, Cluster};
use serde_json::json;

const NODES: usize = 50;

fn start() -> Result<Cluster> {
    Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!("runtime = \"sim\"\nnodes = {NODES}\nlease_renew_interval = \"1s\""),
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match cond().await {
            Ok(true) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            _ if Instant::now() > deadline => {
                bail!("timed out after {timeout:?} waiting for {what}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn wait_nodes(client: &Client) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("the simulated nodes", Duration::from_secs(60), || async {
        Ok(nodes.list(&ListParams::default()).await?.items.len() == NODES)
    })
    .await
}

fn pod(name: &str, node: Option<&str>, parity: &str) -> Result<Pod> {
    let mut pod = json!({
        "metadata": {"name": name, "labels": {"parity": parity}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    });
    if let Some(n) = node {
        pod["spec"]["nodeName"] = json!(n);
    }
    Ok(serde_json::from_value(pod)?)
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone()).create(&ns).await?;
    Ok(())
}

/// Creates `count` pods in `ns`, pod i on node `i % NODES`: even ones with
/// `spec.nodeName` set at create, odd ones bound afterwards through `binding`.
async fn create_pods(client: &Client, ns: &str, prefix: &str, count: usize) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for i in 0..count {
        let name = format!("{prefix}{i}");
        let node = format!("sim-node-{}", i % NODES);
        if i % 2 == 0 {
            pods.create(&pod(&name, Some(&node), "even")?).await?;
        } else {
            pods.create(&pod(&name, None, "odd")?).await?;
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            pods.create_subresource(&name, "binding", &binding).await?;
        }
    }
    Ok(())
}

/// Checks every pod of `ns` is Running and Ready with an IP from its node's /24 and the
/// node's address as hostIP; returns the pods' IPs.
fn check_running(pods: &[Pod]) -> Result<Vec<String>> {
    let mut ips = Vec::new();
    for p in pods {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let index: u32 = node
            .strip_prefix("sim-node-")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| anyhow!("pod {name}: node {node:?} is not simulated"))?;
        let status = p
            .status
            .as_ref()
            .ok_or_else(|| anyhow!("pod {name}: no status"))?;
        if status.phase.as_deref() != Some("Running") {
            bail!("pod {name}: phase {:?}", status.phase);
        }
        let ready = status
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready {
            bail!("pod {name}: not Ready");
        }
        let ip = status.pod_ip.clone().unwrap_or_default();
        // Node i's pod CIDR is the i-th /24 of 10.128.0.0/10.
        let prefix = format!("10.{}.{}.", 128 + index / 256, index % 256);
        if !ip.starts_with(&prefix) {
            bail!("pod {name} on {node}: IP {ip:?} is outside {prefix}0/24");
        }
        let host = format!("10.200.{}.{}", (index + 1) / 256, (index + 1) % 256);
        if status.host_ip.as_deref() != Some(host.as_str()) {
            bail!("pod {name}: hostIP {:?}, want {host}", status.host_ip);
        }
        ips.push(ip);
    }
    Ok(ips)
}

async fn all_running(api: &Api<Pod>, count: usize) -> Result<bool> {
    let pods = api.list(&ListParams::default()).await?.items;
    Ok(pods.len() == count && check_running(&pods).is_ok())
}

#[test]
fn sim_kubelet_should_run_bound_pods_with_ips_from_their_node_cidr_and_finish_deletions(
) -> Result<()> {
    let c = start()?;
    let rt = runtime()?;
    let client = Client::from_url(&c.api)?;
    rt.block_on(async {
        wait_nodes(&client).await?;
        create_namespace(&client, "sim").await?;
        create_pods(&client, "sim", "p-", 200).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "sim");
        wait_for("200 pods Running", Duration::from_secs(60), || {
            all_running(&pods, 200)
        })
        .await?;
        let list = pods.list(&ListParams::default()).await?.items;
        let ips = check_running(&list)?;
        let unique: HashSet<&String> = ips.iter().collect();
        assert_eq!(unique.len(), ips.len(), "pod IPs are not unique: {ips:?}");
        Ok::<_, anyhow::Error>(())
    })?;
    let table = c.ok(&["get", "pods", "-n", "sim", "--no-headers"])?;
    assert_eq!(
        table.lines().filter(|l| l.contains("Running")).count(),
        200,
        "{table}"
    );
    assert_eq!(
        c.kernel
            .metric("kubelet_running_pods{plugin=\"kubelet\"}")?,
        Some(200.0)
    );

    // A graceful delete finishes as soon as the kubelet has stopped the pod.
    c.ok(&[
        "delete",
        "pods",
        "-n",
        "sim",
        "-l",
        "parity=odd",
        "--timeout=60s",
    ])?;
    let left = c.ok(&["get", "pods", "-n", "sim", "--no-headers"])?;
    assert_eq!(left.lines().count(), 100, "{left}");
    assert!(left.lines().all(|l| l.contains("Running")), "{left}");
    assert_eq!(
        c.kernel
            .metric("kubelet_running_pods{plugin=\"kubelet\"}")?,
        Some(100.0)
    );
    Ok(())
}

#[test]
fn sim_kubelet_should_leave_pods_of_a_paused_node_terminating_until_it_resumes() -> Result<()> {
    let c = start()?;
    let rt = runtime()?;
    let client = Client::from_url(&c.api)?;
    rt.block_on(async {
        wait_nodes(&client).await?;
        create_namespace(&client, "paused").await?;
        create_pods(&client, "paused", "p-", 10).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "paused");
        wait_for("10 pods Running", Duration::from_secs(60), || {
            all_running(&pods, 10)
        })
        .await
    })?;
    c.ok(&[
        "annotate",
        "node",
        "sim-node-3",
        "kubernel.io/sim-paused=true",
    ])?;
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["delete", "pod", "-n", "paused", "p-3", "--wait=false"])?;
    std::thread::sleep(Duration::from_secs(2));
    let stuck = c.ok(&[
        "get",
        "pod",
        "-n",
        "paused",
        "p-3",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ])?;
    assert!(!stuck.is_empty(), "the pod of a paused node was finalized");
    c.ok(&["annotate", "node", "sim-node-3", "kubernel.io/sim-paused-"])?;
    c.ok(&[
        "wait",
        "--for=delete",
        "pod/p-3",
        "-n",
        "paused",
        "--timeout=30s",
    ])?;
    Ok(())
}

#[test]
fn sim_kubelet_should_keep_pod_ips_across_a_restart() -> Result<()> {
    let c = start()?;
    let rt = runtime()?;
    let client = Client::from_url(&c.api)?;
    let pods_before = rt.block_on(async {
        wait_nodes(&client).await?;
        create_namespace(&client, "restart").await?;
        create_pods(&client, "restart", "a-", 20).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "restart");
        wait_for("20 pods Running", Duration::from_secs(60), || {
            all_running(&pods, 20)
        })
        .await?;
        Ok::<_, anyhow::Error>(pods.list(&ListParams::default()).await?.items)
    })?;
    let c = c.kill_and_restart()?;
    let client = Client::from_url(&c.api)?;
    rt.block_on(async {
        wait_nodes(&client).await?;
        // New pods on the same nodes must not get the addresses of the re-adopted ones.
        create_pods(&client, "restart", "b-", 20).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "restart");
        wait_for("40 pods Running", Duration::from_secs(60), || {
            all_running(&pods, 40)
        })
        .await?;
        let after = pods.list(&ListParams::default()).await?.items;
        let ips = check_running(&after)?;
        let unique: HashSet<&String> = ips.iter().collect();
        assert_eq!(
            unique.len(),
            40,
            "pod IPs collide after the restart: {ips:?}"
        );
        for old in &pods_before {
            let name = old.metadata.name.as_deref().unwrap_or_default();
            let now = after
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
                .ok_or_else(|| anyhow!("pod {name} vanished"))?;
            let ip = |p: &Pod| p.status.as_ref().and_then(|s| s.pod_ip.clone());
            assert_eq!(ip(old), ip(now), "pod {name} changed its IP");
        }
        Ok(())
    })
}
