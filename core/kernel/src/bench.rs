//! `kubernel bench scheduler`: starts a cluster of simulated nodes in a child
//! process, creates pods through the API and reports how fast they get bound, and
//! how fast they are done (their `Scheduled` Event written, reported Running).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a create answered 429 is retried (client-go's `maxRetries` is 10).
const CREATE_RETRIES_ON_429: usize = 10;

/// What to measure.
pub struct SchedulerBench {
    /// Simulated nodes.
    pub nodes: usize,
    /// Pods to create.
    pub pods: usize,
    /// Concurrent creating clients.
    pub concurrency: usize,
    /// TOML lines for the scheduler's `[plugin.config]` (a profile using an example scorer, say).
    pub scheduler_config: Option<PathBuf>,
    /// Give up after this long.
    pub timeout: Duration,
    /// The components' `client.transport`: `bus` or `http`.
    pub transport: String,
    /// Whether the simulated nodes run their pods (the kubelet's `run_pods`);
    /// without, the scheduler is measured alone, as scheduler_perf does.
    pub run_pods: bool,
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

/// Stops the child cluster when dropped.
struct ChildCluster(Child);

impl Drop for ChildCluster {
    fn drop(&mut self) {
        // SIGTERM lets the kernel drain; SIGKILL after a grace period.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("timed out after {timeout:?} waiting for {what}"))
}

fn get_json(agent: &ureq::Agent, url: &str) -> Option<serde_json::Value> {
    let mut resp = agent.get(url).call().ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.body_mut().read_json().ok()
}

/// The bench's creating clients: HTTP/1.1 connections on one thread, so that
/// they cost the machine little beside the cluster they measure.
struct Clients {
    url: String,
    total: usize,
    next: AtomicUsize,
    /// When each created pod's create was sent.
    created: Mutex<HashMap<String, Instant>>,
    /// Distinct create failures (status and message, or the transport error) with counts.
    errors: Mutex<BTreeMap<String, usize>>,
    /// Creates answered 429 and sent again.
    retried: AtomicUsize,
}

impl Clients {
    /// Creates every pod with `concurrency` requests at a time.
    fn run(&self, concurrency: usize) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the bench's clients: {e}"))?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("making the bench's HTTP client: {e}"))?;
        runtime.block_on(futures::future::join_all(
            (0..concurrency).map(|_| self.client(&client)),
        ));
        Ok(())
    }

    /// One client: creates the next pod until there is none left.
    async fn client(&self, http: &reqwest::Client) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.total {
                return;
            }
            let name = format!("pod-{i}");
            let pod = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": format!("bench-{}", i % 10)}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            })
            .to_string();
            let sent = Instant::now();
            match self.create(http, pod).await {
                Ok(()) => {
                    lock(&self.created).insert(name, sent);
                }
                Err(text) => *lock(&self.errors).entry(text).or_default() += 1,
            }
        }
    }

    /// Sends one create. Like client-go, a 429 (the apiserver's flow control) is
    /// sent again after its Retry-After, up to 10 times; only then is it an error.
    async fn create(&self, http: &reqwest::Client, pod: String) -> Result<(), String> {
        let mut attempt = 0;
        loop {
            let resp = http
                .post(&self.url)
                .header("content-type", "application/json")
                .body(pod.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            if status == 429 && attempt < CREATE_RETRIES_ON_429 {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                attempt += 1;
                self.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(wait.min(10))).await;
                continue;
            }
            // Read to the end, so that the connection is used again.
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            if status == 201 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&body);
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_else(|| text.into_owned());
            return Err(format!("HTTP {status}: {message}"));
        }
    }
}

/// A watch event of a pod, as far as the bench reads it.
#[derive(serde::Deserialize)]
struct WatchedPod {
    object: PodFields,
}

#[derive(serde::Deserialize)]
struct PodFields {
    metadata: PodName,
    #[serde(default)]
    spec: PodNode,
    #[serde(default)]
    status: PodPhase,
}

#[derive(serde::Deserialize, Default)]
struct PodPhase {
    phase: Option<String>,
}

#[derive(serde::Deserialize)]
struct PodName {
    #[serde(default)]
    name: String,
}

#[derive(serde::Deserialize, Default)]
struct PodNode {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

/// What the bench's watches saw, by pod name: when each pod was first seen bound
/// and reported Running, and how many `Scheduled` Events were added (the last when).
#[derive(Default)]
struct Seen {
    bound: Mutex<HashMap<String, Instant>>,
    running: Mutex<HashMap<String, Instant>>,
    events: Mutex<(usize, Option<Instant>)>,
}

/// Locks `m`, also after a panic of another holder.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Watches `url` on a thread of its own, handing each line to `on` until it returns
/// false or the watch ends.
fn watch_lines(url: String, mut on: impl FnMut(&str) -> bool + Send + 'static) {
    std::thread::spawn(move || {
        let watcher: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let Ok(resp) = watcher.get(&url).call() else {
            return;
        };
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if !on(&line) {
                return;
            }
        }
    });
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs the benchmark; prints the figures; returns the exit code.
pub fn scheduler(opts: &SchedulerBench, data_dir: &Path) -> i32 {
    match run(opts, data_dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kubernel bench scheduler: {e}");
            1
        }
    }
}

fn run(opts: &SchedulerBench, data_dir: &Path) -> Result<(), String> {
    let dir = data_dir.join("bench-scheduler");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let api_port = free_port()?;
    let scheduler_extra = match &opts.scheduler_config {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => String::new(),
    };
    let config = format!(
        r#"[kernel]
admin_addr = "127.0.0.1:0"
log_format = "json"
log_filter = "warn"
config_poll_interval = "0s"

[[plugin]]
name = "apiserver"
path = "libkubernel_apiserver.so"
[plugin.config]
bind_address = "127.0.0.1"
secure_port = 0
# The bench's own clients: plain HTTP on loopback.
insecure_port = {api_port}

[[plugin]]
name = "kubelet"
path = "libkubernel_kubelet.so"
[plugin.config]
runtime = "sim"
nodes = {nodes}
run_pods = {run_pods}
client.transport = "{transport}"

[[plugin]]
name = "scheduler"
path = "libkubernel_scheduler.so"
[plugin.config]
client.transport = "{transport}"
{scheduler_extra}
"#,
        nodes = opts.nodes,
        run_pods = opts.run_pods,
        transport = opts.transport,
    );
    let config_path = dir.join("bench.toml");
    std::fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let log_path = dir.join("kubernel.log");
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("locating kubernel: {e}"))?;
    let child = Command::new(exe)
        .arg("--data-dir")
        .arg(&dir)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("starting the cluster: {e}"))?;
    let mut cluster = ChildCluster(child);
    let agent = crate::cli::agent();
    let api = format!("http://127.0.0.1:{api_port}");
    let fail = |cluster: &mut ChildCluster, e: String| {
        let exited = matches!(cluster.0.try_wait(), Ok(Some(_)));
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        format!(
            "{e}{}; last log lines (see {}):\n{}",
            if exited { " (the cluster exited)" } else { "" },
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    };
    let started = Instant::now();
    wait_for(
        &format!("{} simulated nodes", opts.nodes),
        Duration::from_secs(120),
        || {
            get_json(&agent, &format!("{api}/api/v1/nodes"))
                .and_then(|v| v["items"].as_array().map(Vec::len))
                .is_some_and(|n| n >= opts.nodes)
        },
    )
    .map_err(|e| fail(&mut cluster, e))?;
    let nodes_ready = started.elapsed();
    // The kernel records its admin address once every plugin has started, which
    // can be after the kubelet has registered its nodes.
    let admin_path = dir.join("admin-addr");
    wait_for("the admin address", Duration::from_secs(60), || {
        admin_path.exists()
    })
    .map_err(|e| fail(&mut cluster, e))?;
    let admin = std::fs::read_to_string(&admin_path)
        .map(|s| format!("http://{}", s.trim()))
        .map_err(|e| fail(&mut cluster, format!("reading the admin address: {e}")))?;

    let ns =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}});
    let _ = agent
        .post(&format!("{api}/api/v1/namespaces"))
        .send_json(&ns);
    let list = get_json(&agent, &format!("{api}/api/v1/namespaces/bench/pods"))
        .ok_or_else(|| fail(&mut cluster, "listing pods failed".into()))?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();

    // Watch before creating anything: bound pods (only those, as the scheduler's
    // informer of assigned pods, so creates are not sent back) for their binding
    // and the kubelet's Running report, and the scheduler's `Scheduled` Events.
    let seen = Arc::new(Seen::default());
    let timeout = opts.timeout.as_secs().max(1);
    let pods_url = format!(
        "{api}/api/v1/namespaces/bench/pods?watch=true&resourceVersion={rv}&timeoutSeconds={timeout}&fieldSelector=spec.nodeName%21%3D"
    );
    let events_url = format!(
        "{api}/api/v1/namespaces/bench/events?watch=true&resourceVersion={rv}&timeoutSeconds={timeout}&fieldSelector=reason%3DScheduled"
    );
    let total = opts.pods;
    let total_running = if opts.run_pods { total } else { 0 };
    {
        let seen = seen.clone();
        watch_lines(pods_url, move |line| {
            // Only the fields the bench needs: the rest is skipped unparsed.
            let Ok(ev) = serde_json::from_str::<WatchedPod>(line) else {
                return true;
            };
            let name = ev.object.metadata.name;
            let mut running = lock(&seen.running);
            if ev.object.status.phase.as_deref() == Some("Running") {
                running.entry(name.clone()).or_insert_with(Instant::now);
            }
            let mut bound = lock(&seen.bound);
            if ev.object.spec.node_name.is_some_and(|n| !n.is_empty()) {
                bound.entry(name).or_insert_with(Instant::now);
            }
            running.len() < total_running || bound.len() < total
        });
    }
    {
        let seen = seen.clone();
        watch_lines(events_url, move |line| {
            #[derive(serde::Deserialize)]
            struct Kind<'a> {
                #[serde(rename = "type", borrow)]
                kind: &'a str,
            }
            if serde_json::from_str::<Kind>(line).is_ok_and(|k| k.kind == "ADDED") {
                let mut events = lock(&seen.events);
                events.0 += 1;
                events.1 = Some(Instant::now());
                return events.0 < total;
            }
            true
        });
    }

    let clients = Clients {
        url: format!("{api}/api/v1/namespaces/bench/pods"),
        total: opts.pods,
        next: AtomicUsize::new(0),
        created: Mutex::new(HashMap::new()),
        errors: Mutex::new(BTreeMap::new()),
        retried: AtomicUsize::new(0),
    };
    let cluster_pid = cluster.0.id();
    let cpu_at_start = (cpu_time(&cluster_pid.to_string()), cpu_time("self"));
    let create_start = Instant::now();
    clients
        .run(opts.concurrency.max(1))
        .map_err(|e| fail(&mut cluster, e))?;
    let create_time = create_start.elapsed();
    let created = clients
        .created
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let created_count = created.len();
    let running_count = if opts.run_pods { created_count } else { 0 };
    let wait = wait_for("every pod bound", opts.timeout, || {
        lock(&seen.bound).len() >= created_count
    });
    let end = Instant::now();
    // The scheduler writes its `Scheduled` Events and the kubelet its status
    // reports behind the bindings: wait for them until all are there or they stop
    // coming.
    let mut last_progress = (0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let events = lock(&seen.events).0;
        let running = lock(&seen.running).len();
        if events >= created_count && running >= running_count {
            break;
        }
        if events + running > last_progress.0 {
            last_progress = (events + running, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let cpu_used = |start: Option<Duration>, pid: &str| Some(cpu_time(pid)? - start?);
    let cpu_per_pod = (
        cpu_used(cpu_at_start.0, &cluster_pid.to_string()),
        cpu_used(cpu_at_start.1, "self"),
    );
    let bound = lock(&seen.bound).clone();
    let running = lock(&seen.running).clone();
    let (events_written, last_event) = *lock(&seen.events);
    let mut latencies: Vec<f64> = created
        .iter()
        .filter_map(|(name, sent)| {
            bound
                .get(name)
                .map(|b| b.duration_since(*sent).as_secs_f64())
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let last_bound = bound.values().max().copied().unwrap_or(end);
    let e2e = last_bound.duration_since(create_start).as_secs_f64();
    let last_running = running.values().max().copied();
    // Done: the last of the binding, the Running report and the Event.
    let all_done = [Some(last_bound), last_running, last_event]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(last_bound);
    let after_binding = |t: Option<Instant>| {
        t.map_or_else(
            || "none".to_string(),
            |t| {
                format!(
                    "{:.2} s",
                    t.saturating_duration_since(last_bound).as_secs_f64()
                )
            },
        )
    };
    let done_time = all_done.duration_since(create_start).as_secs_f64();
    let metrics = agent
        .get(&format!("{admin}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    let cycle = histogram(
        &metrics,
        "scheduler_scheduling_attempt_duration_seconds",
        "result=\"scheduled\"",
    );

    println!(
        "scheduler benchmark: {} nodes, {} pods ({} create errors), {} creating clients, components over {}",
        opts.nodes,
        opts.pods,
        lock(&clients.errors).values().sum::<usize>(),
        opts.concurrency,
        if opts.transport == "http" { "HTTPS" } else { "the kernel bus" }
    );
    for (text, n) in lock(&clients.errors).iter() {
        println!("  create error ({n}x):       {text}");
    }
    let too_many = series_by(
        &metrics,
        "apiserver_request_total",
        "code=\"429\"",
        &["verb", "resource", "subresource"],
    );
    if too_many.is_empty() {
        println!("  apiserver 429 answers:     none");
    } else {
        let parts: Vec<String> = too_many.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "  apiserver 429 answers:     {} (in-flight limit; creates retried {} times)",
            parts.join(", "),
            clients.retried.load(Ordering::Relaxed)
        );
    }
    if let Some(cfg) = &opts.scheduler_config {
        println!("  scheduler config:          {}", cfg.display());
    }
    println!(
        "  nodes registered in:       {:.1} s",
        nodes_ready.as_secs_f64()
    );
    println!(
        "  create rate:               {:.0} pods/s",
        created_count as f64 / create_time.as_secs_f64()
    );
    println!(
        "  bound:                     {} of {}",
        latencies.len(),
        created_count
    );
    println!(
        "  end to end:                {:.0} pods/s (first create to last binding, {:.2} s)",
        latencies.len() as f64 / e2e.max(1e-9),
        e2e
    );
    println!(
        "  Scheduled Events written:  {} of {} (the last {} after the last binding)",
        events_written,
        created_count,
        after_binding(last_event)
    );
    if opts.run_pods {
        println!(
            "  reported Running:          {} of {} (the last {} after the last binding)",
            running.len(),
            created_count,
            after_binding(last_running)
        );
    } else {
        println!(
            "  reported Running:          {} (--run-pods false: the nodes leave their pods alone)",
            running.len()
        );
    }
    // Pods done: created, their Event written, and reported Running when the
    // nodes run them.
    let done_count = created_count.min(events_written).min(if opts.run_pods {
        running.len()
    } else {
        created_count
    });
    println!(
        "  all done:                  {:.0} pods/s (first create until every binding{}, {:.2} s)",
        done_count as f64 / done_time.max(1e-9),
        if opts.run_pods {
            ", Event and Running report"
        } else {
            " and Event"
        },
        done_time
    );
    println!(
        "  create -> bound latency:   p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.50) * 1000.0,
        percentile(&latencies, 0.99) * 1000.0
    );
    if let (Some(cluster), Some(bench)) = cpu_per_pod {
        let per_pod = |d: Duration| d.as_secs_f64() * 1e6 / created_count.max(1) as f64;
        println!(
            "  CPU per pod:               cluster {:.0} µs, bench {:.0} µs (user + system, from the first create until all is done)",
            per_pod(cluster),
            per_pod(bench)
        );
    }
    match cycle {
        Some(h) => println!(
            "  scheduling attempt (algorithm + binding round trip): mean {:.3} ms, p50 <= {:.3} ms, p99 <= {:.3} ms ({} attempts; histogram bucket bounds)",
            h.sum / h.count * 1000.0,
            h.quantile(0.5) * 1000.0,
            h.quantile(0.99) * 1000.0,
            h.count
        ),
        None => println!("  scheduling attempt:        no scheduler_scheduling_attempt_duration_seconds samples"),
    }
    wait.map_err(|e| fail(&mut cluster, e))
}

/// User + system CPU time of process `pid` (a number or `self`) so far, from
/// `/proc/<pid>/stat`; `None` off Linux or once the process is gone.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, in clock ticks (USER_HZ, 100 on Linux).
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// Sums of the `name` series whose labels contain `filter`, keyed by the values of
/// `labels` joined with spaces (e.g. `create pods binding`).
fn series_by(text: &str, name: &str, filter: &str, labels: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let prefix = format!("{name}{{");
    for line in text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(filter))
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key: Vec<&str> = labels
            .iter()
            .map(|l| {
                series
                    .split([',', '{'])
                    .find_map(|kv| kv.strip_prefix(&format!("{l}=\"")))
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("")
            })
            .filter(|v| !v.is_empty())
            .collect();
        *out.entry(key.join(" ")).or_default() += value;
    }
    out
}

/// A cumulative Prometheus histogram summed over the series whose labels contain `filter`.
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// The upper bound of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> f64 {
        let target = self.count * q;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= target)
            .map(|(le, _)| *le)
            .unwrap_or(f64::INFINITY)
    }
}

fn histogram(text: &str, name: &str, filter: &str) -> Option<Histogram> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let (mut sum, mut count) = (0.0, 0.0);
    for line in text.lines().filter(|l| l.contains(filter)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if let Some(rest) = series.strip_prefix(&format!("{name}_bucket{{")) {
            // `rest` is `label="v",...,le="0.01"}`: find the label named exactly `le`.
            let le = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("le=\""))
                .and_then(|s| s.split('"').next())
                .unwrap_or("+Inf");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += value,
                None => buckets.push((le, value)),
            }
        } else if series.starts_with(&format!("{name}_sum{{")) {
            sum += value;
        } else if series.starts_with(&format!("{name}_count{{")) {
            count += value;
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    (count > 0.0).then_some(Histogram {
        buckets,
        sum,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_by_should_sum_by_the_named_labels() {
        let text = "r_total{code=\"429\",resource=\"pods\",subresource=\"\",verb=\"create\"} 3\n\
                    r_total{code=\"429\",resource=\"pods\",subresource=\"binding\",verb=\"create\"} 2\n\
                    r_total{code=\"201\",resource=\"pods\",subresource=\"\",verb=\"create\"} 9\n";
        let m = series_by(
            text,
            "r_total",
            "code=\"429\"",
            &["verb", "resource", "subresource"],
        );
        assert_eq!(m.get("create pods"), Some(&3.0));
        assert_eq!(m.get("create pods binding"), Some(&2.0));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn histogram_should_sum_series_and_find_quantile_buckets() {
        let text = "x_bucket{profile=\"a\",result=\"scheduled\",le=\"0.001\"} 5\n\
                    x_bucket{profile=\"a\",result=\"scheduled\",le=\"0.01\"} 9\n\
                    x_bucket{profile=\"a\",result=\"scheduled\",le=\"+Inf\"} 10\n\
                    x_sum{profile=\"a\",result=\"scheduled\"} 0.02\n\
                    x_count{profile=\"a\",result=\"scheduled\"} 10\n\
                    x_count{profile=\"a\",result=\"error\"} 3\n";
        let h = histogram(text, "x", "result=\"scheduled\"").expect("samples");
        assert_eq!(h.count, 10.0);
        assert_eq!(h.buckets.len(), 3, "{:?}", h.buckets);
        assert_eq!(h.quantile(0.5), 0.001);
        assert_eq!(h.quantile(0.9), 0.01);
        assert!(h.quantile(0.99).is_infinite());
    }
}
