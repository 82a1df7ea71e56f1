//! The sim kubelet at the scale scheduler experiments use: 1,000 simulated nodes
//! registered and Ready, 10,000 pods bound to them all Running, then every pod deleted
//! and gone (the simulated nodes finish their graceful deletions).

use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod};
use kubernel_client::{Api, Client, DeleteParams, ListParams};
use kubernel_e2e::{component_entry, Cluster};
use serde_json::json;

const NODES: usize = 1000;
const PODS: usize = 10_000;
const CLIENTS: usize = 16;

async fn poll<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(bool, String)>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let (done, seen) = cond().await?;
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn count_pods(pods: &Api<Pod>, phase: Option<&str>) -> Result<usize> {
    let mut params = ListParams::default();
    if let Some(p) = phase {
        params.field_selector = Some(format!("status.phase={p}"));
    }
    Ok(pods.list(&params).await?.items.len())
}

#[test]
fn a_thousand_sim_nodes_should_run_and_delete_ten_thousand_pods() -> Result<()> {
    let c = Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!("runtime = \"sim\"\nnodes = {NODES}\nlease_renew_interval = \"10s\""),
    ))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = Client::from_url(&c.api)?;
        let nodes: Api<Node> = Api::all(client.clone());
        let started = Instant::now();
        poll("1,000 Ready nodes", Duration::from_secs(120), || async {
            let list = nodes.list(&ListParams::default()).await?.items;
            let ready = list.iter().filter(|n| ready(n)).count();
            Ok((
                ready == NODES,
                format!("{} nodes, {ready} Ready", list.len()),
            ))
        })
        .await?;
        println!(
            "{NODES} nodes Ready after {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..CLIENTS {
            let pods = pods.clone();
            tasks.push(tokio::spawn(async move {
                for i in (worker..PODS).step_by(CLIENTS) {
                    let pod: Pod = serde_json::from_value(json!({
                        "metadata": { "name": format!("p-{i}") },
                        "spec": {
                            "nodeName": format!("sim-node-{}", i % NODES),
                            "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }]
                        }
                    }))?;
                    pods.create(&pod).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        poll("10,000 Running pods", Duration::from_secs(180), || async {
            let running = count_pods(&pods, Some("Running")).await?;
            Ok((running == PODS, format!("{running} Running")))
        })
        .await?;
        println!(
            "{PODS} pods created and Running after {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let started = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..CLIENTS {
            let pods = pods.clone();
            tasks.push(tokio::spawn(async move {
                for i in (worker..PODS).step_by(CLIENTS) {
                    pods.delete(&format!("p-{i}"), &DeleteParams::default())
                        .await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        poll("every pod gone", Duration::from_secs(180), || async {
            let left = count_pods(&pods, None).await?;
            Ok((left == 0, format!("{left} left")))
        })
        .await?;
        println!(
            "{PODS} pods deleted after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok(())
    })
}
