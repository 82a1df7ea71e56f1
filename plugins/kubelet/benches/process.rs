//! Process runtime benchmark: 100 pods on one real node, creation -> Running latency.
//!
//! Starts one `kubernel` with the apiserver and the `process` kubelet, creates `PODS`
//! pods (`sleep 3600`, `spec.nodeName` set, 16 clients at once), and times each pod from
//! just before its create request to the first watch event that shows it Running. Then
//! deletes them all and times until every pod object and process is gone.
//!
//! ```text
//! cargo build --release -p kubernel -p kubernel-apiserver -p kubernel-kubelet
//! cargo bench -p kubernel-kubelet --bench process            # 100 pods
//! cargo bench -p kubernel-kubelet --bench process -- 200
//! KUBERNEL_BENCH_PROFILE=debug cargo bench -p kubernel-kubelet --bench process
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kubernel_client::{Api, Client, DeleteParams, ListParams, WatchEvent};
use parking_lot::Mutex;
use serde_json::json;

/// Concurrent pod creations.
const CREATORS: usize = 16;
/// Marks the benchmark's processes (to count and, at the end, kill leftovers).
const MARK: &str = "KUBERNEL_PROCESS_BENCH=1";

fn main() {
    let pods: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("process bench: tokio runtime: {e}"),
    };
    if let Err(e) = rt.block_on(run(pods)) {
        eprintln!("process bench: {e}");
    }
    for pid in marked() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
}

fn build_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let profile = std::env::var("KUBERNEL_BENCH_PROFILE").unwrap_or_else(|_| "release".into());
    target.join(profile)
}

/// Live processes carrying [`MARK`] in their environment.
fn marked() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat
                .rfind(')')
                .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
            (!zombie && environ.split(|b| *b == 0).any(|v| v == MARK.as_bytes())).then_some(pid)
        })
        .collect()
}

/// The `kubernel run` child, stopped with SIGTERM when dropped.
struct Kernel {
    child: Child,
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

fn start(api_port: u16) -> Result<Kernel, String> {
    let dir = build_dir().join("bench-process");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lib = |name: &str| build_dir().join(format!("libkubernel_{name}.so"));
    let config = format!(
        "[kernel]\nadmin_addr = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_filter = \"warn\"\nconfig_poll_interval = \"0s\"\n\
         [[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nbind_address = \"127.0.0.1\"\nsecure_port = {api_port}\n\
         [[plugin]]\nname = \"kubelet\"\npath = \"{}\"\n[plugin.config]\nruntime = \"process\"\nnode_name = \"bench-node\"\nport = {}\n",
        lib("apiserver").display(),
        lib("kubelet").display(),
        free_port()?
    );
    let config_path = dir.join("kubernel.toml");
    std::fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let log = std::fs::File::create(dir.join("kubernel.log")).map_err(|e| e.to_string())?;
    let bin = build_dir().join("kubernel");
    let child = Command::new(&bin)
        .arg("--data-dir")
        .arg(&dir)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("starting {} (build it first): {e}", bin.display()))?;
    Ok(Kernel { child })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn run(count: usize) -> Result<(), String> {
    let api_port = free_port()?;
    let _kernel = start(api_port)?;
    let client =
        Client::from_url(&format!("http://127.0.0.1:{api_port}")).map_err(|e| e.to_string())?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !nodes.get_opt("bench-node").await.is_ok_and(|n| n.is_some()) {
        if Instant::now() > deadline {
            return Err("the node never registered".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let listed = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = Box::pin(
        pods.watch(&ListParams::default(), &listed.resource_version)
            .await
            .map_err(|e| e.to_string())?,
    );
    let seen = running.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Running") {
                    let name = p.metadata.name.unwrap_or_default();
                    seen.lock().entry(name).or_insert_with(Instant::now);
                }
            }
        }
    });
    let started = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(CREATORS, |i| {
            let (pods, created) = (pods.clone(), created.clone());
            async move {
                let name = format!("bench-{i}");
                let pod: Pod = match serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"nodeName": "bench-node", "terminationGracePeriodSeconds": 1, "containers": [{
                        "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "env": [{"name": "KUBERNEL_PROCESS_BENCH", "value": "1"}],
                    }]},
                })) {
                    Ok(p) => p,
                    Err(e) => return eprintln!("pod {name}: {e}"),
                };
                created.lock().insert(name.clone(), Instant::now());
                if let Err(e) = pods.create(&pod).await {
                    eprintln!("creating {name}: {e}");
                }
            }
        })
        .await;
    let created_all = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while running.lock().len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_running = started.elapsed();
    let mut latencies: Vec<Duration> = {
        let created = created.lock();
        running
            .lock()
            .iter()
            .filter_map(|(n, at)| Some(at.saturating_duration_since(*created.get(n)?)))
            .collect()
    };
    latencies.sort();
    let processes = marked().len();
    println!(
        "process kubelet benchmark ({} build, one node, {count} pods of `sleep 3600`)",
        build_dir()
            .file_name()
            .map_or("?".into(), |n| n.to_string_lossy().into_owned())
    );
    println!(
        "  created in {:.2} s, all Running after {:.2} s ({} of {count} Running, {processes} processes)",
        created_all.as_secs_f64(),
        all_running.as_secs_f64(),
        latencies.len()
    );
    println!(
        "  create -> Running: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    let deleting = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(CREATORS, |i| {
            let pods = pods.clone();
            async move {
                let _ = pods
                    .delete(&format!("bench-{i}"), &DeleteParams::default())
                    .await;
            }
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = pods
            .list(&ListParams::default())
            .await
            .map_or(usize::MAX, |l| l.items.len());
        if (left == 0 && marked().is_empty()) || Instant::now() > deadline {
            println!(
                "  deleted: {left} pods and {} processes left after {:.2} s",
                marked().len(),
                deleting.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.abort();
    Ok(())
}
