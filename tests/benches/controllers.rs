//! Controller-manager benchmark (printed, not asserted), on the real release binary with
//! the apiserver, scheduler, controller-manager and a sim kubelet of 100 nodes:
//!
//! 1. a Deployment of 1,000 replicas: time from create until 1,000 available;
//! 2. a rolling update of it (new image): time until every replica is updated and available;
//! 3. node failure: 100 pods on one simulated node whose heartbeats stop; time from its
//!    last Lease renewal to all 100 replacement pods Running on other nodes, with the
//!    node lifecycle knobs at 1 s / 4 s / 6 s (NodeMonitorPeriod / NodeMonitorGracePeriod /
//!    PodEvictionTimeout, the apiserver's default tolerations at 6 s).
//!
//! Run: `cargo build --release --workspace && cargo bench -p kubernel-e2e --bench controllers`
//! (`-- --replicas N --nodes N` to change the sizes).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kubernel_e2e::{component_entry, Cluster};
use serde_json::Value;

struct Sizes {
    nodes: usize,
    replicas: usize,
    failed_pods: usize,
}

fn sizes() -> Result<Sizes> {
    let mut s = Sizes {
        nodes: 100,
        replicas: 1000,
        failed_pods: 100,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || -> Result<usize> {
            it.next()
                .with_context(|| format!("{a} needs a value"))?
                .parse()
                .with_context(|| format!("{a}: not a number"))
        };
        match a.as_str() {
            "--nodes" => s.nodes = value()?,
            "--replicas" => s.replicas = value()?,
            "--failed-pods" => s.failed_pods = value()?,
            _ => {} // cargo bench passes `--bench`
        }
    }
    Ok(s)
}

fn json(c: &Cluster, path: &str) -> Result<Value> {
    let (status, body) = c.get(path)?;
    if status != 200 {
        bail!("GET {path}: {status} {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Polls `done` every 50 ms; returns the time it took, or fails after `limit`.
fn time_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if done()? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("{what}: not done after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deployment_done(c: &Cluster, name: &str, replicas: usize) -> Result<bool> {
    let d = json(
        c,
        &format!("/apis/apps/v1/namespaces/default/deployments/{name}"),
    )?;
    let generation = d.pointer("/metadata/generation").and_then(Value::as_i64);
    let status = |f: &str| {
        d.pointer(&format!("/status/{f}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let want = replicas as u64;
    Ok(d.pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        == generation
        && status("updatedReplicas") == want
        && status("availableReplicas") == want
        && status("replicas") == want)
}

/// Running pods with `label`, not being deleted, and the nodes they run on.
fn running(c: &Cluster, label: &str) -> Result<Vec<String>> {
    let list = json(
        c,
        &format!("/api/v1/namespaces/default/pods?labelSelector={label}&fieldSelector=status.phase%3DRunning"),
    )?;
    Ok(list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
                .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

fn main() -> Result<()> {
    let s = sizes()?;
    let config = format!(
        "default_not_ready_toleration_seconds = 6\ndefault_unreachable_toleration_seconds = 6\n{}{}{}",
        component_entry(
            "kubelet",
            "kubelet",
            &format!(
                "runtime = \"sim\"\nnodes = {}\nlease_renew_interval = \"1s\"\ncapacity = {{ cpu = \"64\", memory = \"256Gi\", pods = \"250\" }}",
                s.nodes
            ),
        ),
        component_entry("scheduler", "scheduler", ""),
        component_entry(
            "controller-manager",
            "controller-manager",
            "node_monitor_period = \"1s\"\nnode_monitor_grace_period = \"4s\"\npod_eviction_timeout = \"6s\"\n[plugin.config.leader_election]\nleader_elect = false",
        ),
    );
    let c = Cluster::start(&config)?;
    time_until("nodes Ready", Duration::from_secs(60), || {
        let nodes = json(&c, "/api/v1/nodes")?;
        Ok(nodes["items"].as_array().map_or(0, Vec::len) == s.nodes)
    })?;
    println!(
        "controller-manager bench: {} sim nodes, Deployment of {} replicas (release build)",
        s.nodes, s.replicas
    );

    let replicas = s.replicas.to_string();
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas",
        &replicas,
    ])?;
    let t = time_until("all available", Duration::from_secs(300), || {
        deployment_done(&c, "web", s.replicas)
    })?;
    println!(
        "  create -> {} available:        {:>8.2} s  ({:.0} pods/s)",
        s.replicas,
        t.as_secs_f64(),
        s.replicas as f64 / t.as_secs_f64()
    );

    c.ok(&["set", "image", "deployment/web", "nginx=nginx:2"])?;
    let t = time_until("rollout", Duration::from_secs(300), || {
        deployment_done(&c, "web", s.replicas)
    })?;
    println!(
        "  rolling update of {} (25%/25%):  {:>8.2} s",
        s.replicas,
        t.as_secs_f64()
    );
    c.ok(&["scale", "deployment/web", "--replicas=0"])?;
    time_until("scaled to 0", Duration::from_secs(300), || {
        Ok(running(&c, "app=web")?.is_empty())
    })?;

    // Put `failed_pods` pods on one node: cordon the others while they are placed.
    let victim = "sim-node-0";
    let others: Vec<String> = (1..s.nodes).map(|i| format!("sim-node-{i}")).collect();
    for n in &others {
        c.ok(&["cordon", n])?;
    }
    let failed = s.failed_pods.to_string();
    c.ok(&[
        "create",
        "deployment",
        "fail",
        "--image=nginx",
        "--replicas",
        &failed,
    ])?;
    time_until("pods on the victim", Duration::from_secs(120), || {
        Ok(running(&c, "app=fail")?
            .iter()
            .filter(|n| *n == victim)
            .count()
            == s.failed_pods)
    })?;
    for n in &others {
        c.ok(&["uncordon", n])?;
    }
    c.ok(&["annotate", "node", victim, "kubernel.io/sim-paused=true"])?;
    // The last heartbeat: the Lease's renewTime once it stops moving.
    let lease_path =
        format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{victim}");
    let renew = |c: &Cluster| -> Result<String> {
        Ok(json(c, &lease_path)?
            .pointer("/spec/renewTime")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    };
    let mut last = renew(&c)?;
    loop {
        std::thread::sleep(Duration::from_millis(1200));
        let now = renew(&c)?;
        if now == last {
            break;
        }
        last = now;
    }
    let last_beat: k8s_openapi::jiff::Timestamp = last.parse().context("lease renewTime")?;
    time_until("replacements running", Duration::from_secs(300), || {
        let nodes = running(&c, "app=fail")?;
        Ok(nodes.len() == s.failed_pods && nodes.iter().all(|n| n != victim))
    })?;
    let recovery = k8s_openapi::jiff::Timestamp::now().duration_since(last_beat);
    println!(
        "  node with {} pods fails -> all replaced and Running: {:>6.2} s after its last heartbeat (knobs 1 s / 4 s / 6 s; floor ~10 s: grace 4 s + toleration 6 s)",
        s.failed_pods,
        recovery.as_secs_f64()
    );
    Ok(())
}
