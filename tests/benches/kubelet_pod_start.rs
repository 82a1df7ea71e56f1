//! Kubelet pod start latency (printed, not asserted): the same pods on one node with the
//! `process` runtime and with the `cri` runtime on a containerd the bench starts itself
//! (images built from busybox-static and imported, as in the `kubelet_cri` test), in one
//! run. Each pod (`sleep 3600`, `spec.nodeName` set, 8 created at once) is timed from
//! just before its create request to the first poll (every 10 ms) that shows it Running;
//! then every pod is deleted and the time until none is left is printed.
//!
//! Run as root with containerd and runc installed:
//! `cargo build --release -p kubernel -p kubernel-apiserver -p kubernel-kubelet &&
//! cargo bench -p kubernel-e2e --bench kubelet_pod_start` (`-- --pods N`, default 30).

// Shared with the kubelet_cri test, which uses the parts the bench does not.
#[allow(dead_code)]
#[path = "../tests/cri_support/mod.rs"]
mod cri_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kubernel_e2e::{component_entry, Cluster};
use serde_json::{json, Value};

/// Pods created at once.
const CREATORS: usize = 8;

fn pods_arg() -> Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "--pods") {
        Some(i) => args
            .get(i + 1)
            .context("--pods needs a value")?
            .parse()
            .context("--pods: not a number"),
        None => Ok(30),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// What one runtime measured.
struct Figures {
    latencies: Vec<Duration>,
    all_running: Duration,
    deleted: Duration,
    /// Mean duration of each runtime call made (CRI only), from the kubelet's metrics.
    operations: Vec<(String, f64, f64)>,
}

/// `(operation_type, calls, mean seconds)` from `kubelet_runtime_operations_duration_seconds`.
fn operations(cluster: &Cluster) -> Result<Vec<(String, f64, f64)>> {
    let (_, body) = cluster.kernel.get("/metrics")?;
    let mut sums: HashMap<String, (f64, f64)> = HashMap::new();
    for line in body.lines() {
        for (suffix, slot) in [("_sum{", 0), ("_count{", 1)] {
            let Some(rest) = line.strip_prefix(&format!(
                "kubelet_runtime_operations_duration_seconds{suffix}"
            )) else {
                continue;
            };
            let op = rest
                .split("operation_type=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let entry = sums.entry(op.to_string()).or_default();
            if slot == 0 {
                entry.0 += value;
            } else {
                entry.1 += value;
            }
        }
    }
    let mut out: Vec<(String, f64, f64)> = sums
        .into_iter()
        .filter(|(_, (_, n))| *n > 0.0)
        .map(|(op, (sum, n))| (op, n, sum / n))
        .collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(out)
}

impl Figures {
    fn line(&self, runtime: &str, count: usize) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "  {runtime:<8} create -> Running p50 {:>5.0} ms, p99 {:>5.0} ms ({} of {count} Running, all after {:.2} s; all deleted after {:.2} s)",
            ms(percentile(&self.latencies, 0.50)),
            ms(percentile(&self.latencies, 0.99)),
            self.latencies.len(),
            self.all_running.as_secs_f64(),
            self.deleted.as_secs_f64(),
        )
    }
}

fn phases(cluster: &Cluster) -> Result<HashMap<String, String>> {
    let (code, body) = cluster.get("/api/v1/namespaces/default/pods")?;
    if code != 200 {
        bail!("listing pods: {code} {body}");
    }
    let list: Value = serde_json::from_str(&body)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["status"]["phase"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Starts a cluster with a kubelet of `runtime_config`, runs `count` pods, deletes them.
fn measure(runtime_config: &str, count: usize) -> Result<Figures> {
    let node = "bench-node";
    let cluster = Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!("{runtime_config}\nnetwork = \"host\"\nnode_name = \"{node}\"\nport = 0\n"),
    ))?;
    let ready = Instant::now();
    loop {
        let (code, body) = cluster.get(&format!("/api/v1/nodes/{node}"))?;
        if code == 200 && body.contains("\"KubeletReady\"") {
            break;
        }
        if ready.elapsed() > Duration::from_secs(60) {
            bail!("node {node} not Ready after 60 s: {body}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    std::thread::scope(|s| {
        for worker in 0..CREATORS {
            let (cluster, created) = (&cluster, created.clone());
            s.spawn(move || {
                for i in (worker..count).step_by(CREATORS) {
                    let name = format!("bench-{i}");
                    let pod = json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name},
                        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
                            "name": "c", "image": cri_support::BUSYBOX_IMAGE,
                            "command": ["sleep", "3600"],
                        }]},
                    });
                    if let Ok(mut c) = created.lock() {
                        c.insert(name.clone(), Instant::now());
                    }
                    let sent = cluster.send(
                        "POST",
                        "/api/v1/namespaces/default/pods",
                        "application/json",
                        pod.to_string().as_bytes(),
                    );
                    match sent {
                        Ok((201, _)) => {}
                        Ok((code, body)) => eprintln!("creating {name}: {code} {body}"),
                        Err(e) => eprintln!("creating {name}: {e}"),
                    }
                }
            });
        }
    });
    let mut running: HashMap<String, Instant> = HashMap::new();
    while running.len() < count && started.elapsed() < Duration::from_secs(180) {
        let now = Instant::now();
        for (name, phase) in phases(&cluster)? {
            if phase == "Running" {
                running.entry(name).or_insert(now);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let all_running = started.elapsed();
    let operations = operations(&cluster)?;
    let created = created
        .lock()
        .map_err(|_| anyhow::anyhow!("creator thread panicked"))?
        .clone();
    let mut latencies: Vec<Duration> = running
        .iter()
        .filter_map(|(n, at)| Some(at.saturating_duration_since(*created.get(n)?)))
        .collect();
    latencies.sort();
    let deleting = Instant::now();
    for i in 0..count {
        let path = format!("/api/v1/namespaces/default/pods/bench-{i}");
        cluster.send("DELETE", &path, "application/json", b"")?;
    }
    while !phases(&cluster)?.is_empty() && deleting.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Figures {
        latencies,
        all_running,
        deleted: deleting.elapsed(),
        operations,
    })
}

fn main() -> Result<()> {
    let count = pods_arg()?;
    println!(
        "kubelet pod start latency (release build, one node, {count} pods of `sleep 3600`, {CREATORS} created at once)"
    );
    let process = measure("runtime = \"process\"", count)?;
    println!("{}", process.line("process", count));
    if let Some(why) = cri_support::missing() {
        println!("  cri      skipped: {why}");
        return Ok(());
    }
    let containerd = cri_support::Containerd::start()?;
    let cri = measure(
        &format!(
            "runtime = \"cri\"\nruntime_endpoint = \"{}\"\npod_log_dir = \"{}\"",
            containerd.endpoint(),
            containerd.log_dir().display()
        ),
        count,
    )?;
    println!("{}", cri.line("cri", count));
    let calls: Vec<String> = cri
        .operations
        .iter()
        .take(6)
        .map(|(op, n, mean)| format!("{op} {:.0} ms x{n}", mean * 1000.0))
        .collect();
    println!("  cri calls until all Running (mean): {}", calls.join(", "));
    let p50 = |f: &Figures| percentile(&f.latencies, 0.5).as_secs_f64();
    if p50(&process) > 0.0 {
        println!("  cri/process p50 ratio: {:.1}x", p50(&cri) / p50(&process));
    }
    Ok(())
}
