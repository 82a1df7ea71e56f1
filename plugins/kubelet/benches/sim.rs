//! Sim kubelet benchmark: memory per simulated node and per pod, and time to Running.
//!
//! Runs the release `kubernel` binary twice side by side — one process with the apiserver,
//! one with the sim kubelet pointed at it — so each one's resident memory is measured on
//! its own. For each `NODES:PODS` scenario it registers the nodes, creates the pods with
//! `spec.nodeName` set (round-robin over the nodes), and waits until the kubelet has
//! reported every pod Running.
//!
//! ```text
//! cargo build --release -p kubernel -p kubernel-apiserver -p kubernel-kubelet
//! cargo bench -p kubernel-kubelet --bench sim                       # 1000:10000 5000:100000
//! cargo bench -p kubernel-kubelet --bench sim -- 2000:20000
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kubernel_client::{Api, Client};
use serde_json::json;

/// Concurrent pod creations.
const CREATORS: usize = 64;

fn main() {
    let scenarios: Vec<(u32, usize)> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| {
            let (n, p) = a.split_once(':')?;
            Some((n.parse().ok()?, p.parse().ok()?))
        })
        .collect();
    let scenarios = if scenarios.is_empty() {
        vec![(1000, 10_000), (5000, 100_000)]
    } else {
        scenarios
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("sim bench: tokio runtime: {e}"),
    };
    let baseline = match rt.block_on(baseline_rss()) {
        Ok(b) => b,
        Err(e) => return eprintln!("sim bench: {e}"),
    };
    println!(
        "sim kubelet benchmark (release; apiserver and kubelet in separate kubernel processes)"
    );
    println!(
        "  idle RSS: apiserver process {:.1} MiB, kubelet process (0 nodes) {:.1} MiB",
        mib(baseline.0),
        mib(baseline.1)
    );
    for (nodes, pods) in scenarios {
        if let Err(e) = rt.block_on(scenario(nodes, pods, baseline)) {
            eprintln!("sim bench: {nodes} nodes, {pods} pods: {e}");
        }
    }
}

fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("release")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A `kubernel run` child process, stopped when dropped.
struct Kernel {
    child: Child,
    dir: PathBuf,
}

impl Kernel {
    fn start(name: &str, plugins: &str) -> Result<Kernel, String> {
        let dir = release_dir().join("bench-sim").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = format!(
            "[kernel]\nadmin_addr = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_filter = \"warn\"\nconfig_poll_interval = \"0s\"\n{plugins}"
        );
        let config_path = dir.join("kubernel.toml");
        std::fs::write(&config_path, config)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log = std::fs::File::create(dir.join("kubernel.log")).map_err(|e| e.to_string())?;
        let bin = release_dir().join("kubernel");
        let child = Command::new(&bin)
            .arg("--data-dir")
            .arg(&dir)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                format!(
                    "starting {} (build it with cargo build --release): {e}",
                    bin.display()
                )
            })?;
        Ok(Kernel { child, dir })
    }

    /// Resident memory of the process, from `/proc/PID/status`.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// The admin endpoint's base URL, once the kernel wrote it.
    async fn admin(&self) -> Result<Client, String> {
        let path = self.dir.join("admin-addr");
        for _ in 0..200 {
            if let Ok(addr) = std::fs::read_to_string(&path) {
                return Client::from_url(&format!("http://{}", addr.trim()))
                    .map_err(|e| e.to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{} never appeared", path.display()))
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plugin(name: &str, lib: &str, config: &str) -> String {
    let path = release_dir().join(lib);
    format!(
        "\n[[plugin]]\nname = \"{name}\"\npath = \"{}\"\n[plugin.config]\n{config}\n",
        path.display()
    )
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

fn apiserver(port: u16) -> Result<Kernel, String> {
    Kernel::start(
        "apiserver",
        &plugin(
            "apiserver",
            "libkubernel_apiserver.so",
            &format!("secure_port = 0\ninsecure_port = {port}"),
        ),
    )
}

fn kubelet(name: &str, port: u16, nodes: u32) -> Result<Kernel, String> {
    let config = format!("runtime = \"sim\"\nnodes = {nodes}\n[plugin.config.client]\nserver = \"http://127.0.0.1:{port}\"");
    Kernel::start(name, &plugin("kubelet", "libkubernel_kubelet.so", &config))
}

/// One sample of the kubelet's metrics (`name{plugin="kubelet"}`).
async fn metric(admin: &Client, name: &str) -> Option<f64> {
    let body = admin.send("GET", "/metrics", None).await.ok()?;
    let text = String::from_utf8_lossy(&body);
    let series = format!("{name}{{plugin=\"kubelet\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

async fn wait_metric(
    admin: &Client,
    name: &str,
    target: f64,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if metric(admin, name).await.is_some_and(|v| v >= target) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "{name} did not reach {target} within {timeout:?} (last {:?})",
        metric(admin, name).await
    ))
}

async fn wait_api(api: &str) -> Result<Client, String> {
    let client = Client::from_url(api).map_err(|e| e.to_string())?;
    for _ in 0..200 {
        if client.send("GET", "/version", None).await.is_ok() {
            return Ok(client);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the apiserver at {api} did not answer"))
}

/// RSS of an idle apiserver process and of a kubelet process with no nodes.
async fn baseline_rss() -> Result<(u64, u64), String> {
    let port = free_port()?;
    let api = apiserver(port)?;
    wait_api(&format!("http://127.0.0.1:{port}")).await?;
    let kubelet = kubelet("kubelet-idle", port, 0)?;
    kubelet.admin().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok((api.rss(), kubelet.rss()))
}

async fn scenario(nodes: u32, pods: usize, baseline: (u64, u64)) -> Result<(), String> {
    let port = free_port()?;
    let api = apiserver(port)?;
    let client = wait_api(&format!("http://127.0.0.1:{port}")).await?;
    let kubelet = kubelet("kubelet", port, nodes)?;
    let admin = kubelet.admin().await?;
    let started = Instant::now();
    wait_metric(
        &admin,
        "kubernel_kubelet_sim_nodes",
        f64::from(nodes),
        Duration::from_secs(600),
    )
    .await?;
    let registered = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (api_nodes, kubelet_nodes) = (api.rss(), kubelet.rss());

    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}}))
        .map_err(|e| e.to_string())?;
    Api::<Namespace>::all(client.clone())
        .create(&ns)
        .await
        .map_err(|e| e.to_string())?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let errors = Arc::new(AtomicUsize::new(0));
    let created_at = Instant::now();
    futures::stream::iter(0..pods)
        .for_each_concurrent(CREATORS, |i| {
            let (pods_api, errors) = (pods_api.clone(), errors.clone());
            async move {
                let pod = json!({
                    "metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("bench-{}", i % 10)}},
                    "spec": {
                        "nodeName": format!("sim-node-{}", i % nodes as usize),
                        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
                    }
                });
                let created = match serde_json::from_value::<Pod>(pod) {
                    Ok(p) => pods_api.create(&p).await.is_ok(),
                    Err(_) => false,
                };
                if !created {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let create_time = created_at.elapsed();
    let created = pods - errors.load(Ordering::Relaxed);
    wait_metric(
        &admin,
        "kubelet_pod_start_duration_seconds_count",
        created as f64,
        Duration::from_secs(1200),
    )
    .await?;
    let running = created_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (api_pods, kubelet_pods) = (api.rss(), kubelet.rss());
    let start_sum = metric(&admin, "kubelet_pod_start_duration_seconds_sum")
        .await
        .unwrap_or(0.0);

    println!(
        "\n  {nodes} nodes, {pods} pods ({} create errors)",
        pods - created
    );
    println!(
        "    nodes registered in        {:.1} s",
        registered.as_secs_f64()
    );
    println!(
        "    pods created in            {:.1} s ({:.0} pods/s, {CREATORS} clients)",
        create_time.as_secs_f64(),
        created as f64 / create_time.as_secs_f64()
    );
    println!(
        "    first create -> all Running {:.1} s ({:.0} pods/s); kubelet seen -> reported mean {:.1} ms",
        running.as_secs_f64(),
        created as f64 / running.as_secs_f64(),
        start_sum / created.max(1) as f64 * 1000.0
    );
    println!(
        "    kubelet RSS                {:.1} MiB with nodes, {:.1} MiB with pods",
        mib(kubelet_nodes),
        mib(kubelet_pods)
    );
    println!(
        "    apiserver RSS              {:.1} MiB with nodes, {:.1} MiB with pods",
        mib(api_nodes),
        mib(api_pods)
    );
    let per = |after: u64, before: u64, n: usize| {
        after.saturating_sub(before) as f64 / n.max(1) as f64 / 1024.0
    };
    println!(
        "    per node                   kubelet {:.1} KiB, apiserver {:.1} KiB",
        per(kubelet_nodes, baseline.1, nodes as usize),
        per(api_nodes, baseline.0, nodes as usize)
    );
    println!(
        "    per pod                    kubelet {:.2} KiB, apiserver {:.2} KiB",
        per(kubelet_pods, kubelet_nodes, created),
        per(api_pods, api_nodes, created)
    );
    println!(
        "    total (one process would hold about) {:.0} MiB",
        mib(kubelet_pods + api_pods)
    );
    Ok(())
}
