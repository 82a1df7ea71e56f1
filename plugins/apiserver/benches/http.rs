//! Measures the apiserver over HTTP in the real release binary: creates/s, GET and LIST latency, watch fan-out, RSS.
//!
//! `cargo bench -p kubernel-apiserver --bench http` runs every phase; `-- fan-out`
//! runs only the watch fan-out with JSON watches, `-- fan-out table` with the Table
//! watches of `kubectl get -w` (`includeObject=Object`). Builds `kubernel` and the plugin in
//! release, starts the kernel with the apiserver on a free loopback port in a temporary
//! directory, drives it with a minimal keep-alive HTTP/1.1 client, prints a summary and
//! stops the kernel with SIGTERM. Client and server share the machine, so on few cores
//! the client's own CPU use lowers every figure. Nothing is asserted.

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Concurrent clients creating pods.
const CLIENTS: usize = 32;
/// Pods created for the creates/s figure.
const CREATES: usize = 20_000;
/// Sequential GETs of one pod.
const GETS: usize = 20_000;
/// Sequential LISTs with `limit=500`.
const LISTS: usize = 500;
/// Pods in the namespace listed whole.
const LIST_ALL_PODS: usize = 10_000;
/// Sequential LISTs of that namespace.
const LIST_ALL_RUNS: usize = 20;
/// Watch connections opened (fewer when the open-files limit is low).
const WATCHERS: usize = 1_000;
/// ConfigMaps updated during the watch phase, each by its own client on a fixed
/// schedule (open loop: a slow answer delays only that client's next update).
const UPDATERS: usize = 25;
/// ConfigMap updates in all.
const UPDATES: usize = 1_000;
/// Target update rate, per second.
const UPDATE_RATE: u64 = 1_000;
/// Stored pods the memory figure aims for.
const STORED_TARGET: usize = 100_000;
/// Longest time spent on any one read phase, and on filling the store.
const PHASE_BUDGET: Duration = Duration::from_secs(30);
const FILL_BUDGET: Duration = Duration::from_secs(120);

fn main() -> Result<()> {
    // `cargo bench ... -- fan-out [table]`: only the watch fan-out, with JSON or Table watches.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only_fan_out = args.iter().any(|a| a == "fan-out");
    let format = if args.iter().any(|a| a == "table") {
        WatchFormat::Table
    } else {
        WatchFormat::Json
    };
    let target = build()?;
    let kernel = KernelProcess::start(&target)?;
    println!(
        "kernel pid {} serving http://{}",
        kernel.child.id(),
        kernel.api
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = if only_fan_out {
        runtime.block_on(fan_out_rows(kernel.api, format))
    } else {
        runtime.block_on(measure(kernel.api, kernel.child.id()))
    };
    let stop = kernel.terminate();
    let mut rows = result?;
    rows.push(Row::new("SIGTERM to exit", stop?, "-"));
    print_table(&rows);
    Ok(())
}

/// Builds the binary and plugin in release; returns the directory holding them.
fn build() -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .ok_or("no workspace root above CARGO_MANIFEST_DIR")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "kubernel",
            "-p",
            "kubernel-apiserver",
        ])
        .current_dir(&workspace)
        .status()?;
    if !status.success() {
        return Err(format!("{cargo} build --release: {status}").into());
    }
    println!("release build: {:.1} s", started.elapsed().as_secs_f64());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target.join("release"))
}

/// The kernel child process and the temporary directory it runs in.
struct KernelProcess {
    child: Child,
    api: SocketAddr,
    dir: tempfile::TempDir,
}

impl KernelProcess {
    fn start(target: &Path) -> Result<KernelProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let config = format!(
            "[kernel]\nadmin_addr = \"127.0.0.1:0\"\nlog_filter = \"warn\"\n\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nbind_address = \"127.0.0.1\"\nsecure_port = 0\ninsecure_port = {port}\n",
            target.join("libkubernel_apiserver.so").display()
        );
        let config_path = dir.path().join("kubernel.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("kubernel.log"))?;
        let child = Command::new(target.join("kubernel"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut kernel = KernelProcess {
            child,
            api: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        kernel.wait_ready()?;
        Ok(kernel)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("kubernel exited with {status}:\n{}", self.logs()).into());
            }
            let ready = runtime.block_on(async {
                let mut conn = Conn::connect(self.api).await?;
                Ok::<_, Box<dyn Error + Send + Sync>>(
                    conn.request("GET", "/readyz", None, b"").await?.status == 200,
                )
            });
            if matches!(ready, Ok(true)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no /readyz within 30 s:\n{}", self.logs()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubernel.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits at most 30 s for the exit; returns how long it took.
    fn terminate(mut self) -> Result<String> {
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(format!(
                    "{:.2} s ({status})",
                    started.elapsed().as_secs_f64()
                ));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Ok("no exit within 30 s (killed)".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs every phase against the API at `api`; `pid` is the kernel's, for its RSS.
async fn measure(api: SocketAddr, pid: u32) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    println!("RSS at start: {}", rss(pid));

    let c = create_pods(api, "default", "bench", CREATES, None).await?;
    println!(
        "creates: {} in {:.2} s by {CLIENTS} clients, {} not 201",
        c.done,
        c.elapsed.as_secs_f64(),
        c.failed
    );
    let rate = c.done as f64 / c.elapsed.as_secs_f64();
    rows.push(Row::new(
        "pod creates/s (32 clients)",
        format!("{rate:.0}"),
        "5,000",
    ));
    rows.push(Row::new(
        "create latency p50 / p99",
        c.latency.p50_p99(),
        "-",
    ));
    rows.push(Row::new("creates not answered 201", c.failed, "0"));
    rows.push(Row::new(
        format!("RSS after {} pods", c.done),
        rss(pid),
        "-",
    ));
    let mut stored = c.done;

    let mut conn = Conn::connect(api).await?;
    let get = timed(
        GETS,
        &mut conn,
        "GET",
        "/api/v1/namespaces/default/pods/bench-000000",
    )
    .await?;
    rows.push(Row::new(
        format!("GET pod p50 / p99 ({} GETs)", get.len()),
        get.p50_p99(),
        "p99 < 5 ms",
    ));
    let list = timed(
        LISTS,
        &mut conn,
        "GET",
        "/api/v1/namespaces/default/pods?limit=500",
    )
    .await?;
    rows.push(Row::new(
        format!("LIST limit=500 p50 / p99 ({} of {stored})", list.len()),
        list.p50_p99(),
        "p99 < 20 ms",
    ));

    let ns = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench-list"}}"#;
    conn.request(
        "POST",
        "/api/v1/namespaces",
        Some("application/json"),
        ns.as_bytes(),
    )
    .await?;
    let c = create_pods(api, "bench-list", "pod", LIST_ALL_PODS, None).await?;
    stored += c.done;
    let all = timed(
        LIST_ALL_RUNS,
        &mut conn,
        "GET",
        "/api/v1/namespaces/bench-list/pods",
    )
    .await?;
    rows.push(Row::new(
        format!("LIST {} pods p50 ({} LISTs)", c.done, all.len()),
        all.p50(),
        "-",
    ));

    rows.extend(fan_out_rows(api, WatchFormat::Json).await?);

    let deadline = Instant::now() + FILL_BUDGET;
    let fill = create_pods(
        api,
        "default",
        "fill",
        STORED_TARGET - stored,
        Some(deadline),
    )
    .await?;
    stored += fill.done;
    println!(
        "fill: {} pods in {:.1} s ({:.0}/s), {} not 201",
        fill.done,
        fill.elapsed.as_secs_f64(),
        fill.done as f64 / fill.elapsed.as_secs_f64(),
        fill.failed
    );
    rows.push(Row::new(
        format!("pod creates/s filling to {stored}"),
        format!("{:.0}", fill.done as f64 / fill.elapsed.as_secs_f64()),
        "5,000",
    ));
    rows.push(Row::new(format!("RSS with {stored} pods"), rss(pid), "-"));
    Ok(rows)
}

/// What a batch of creates did.
struct Creates {
    done: usize,
    failed: usize,
    elapsed: Duration,
    latency: Latencies,
}

/// Creates `count` pods named `<prefix>-<i>` in `namespace` with [`CLIENTS`] connections, stopping early at `deadline`.
async fn create_pods(
    api: SocketAddr,
    namespace: &str,
    prefix: &str,
    count: usize,
    deadline: Option<Instant>,
) -> Result<Creates> {
    let next = Arc::new(AtomicUsize::new(0));
    let path = Arc::new(format!("/api/v1/namespaces/{namespace}/pods"));
    let prefix = Arc::new(prefix.to_string());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (next, path, prefix) = (next.clone(), path.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(api).await?;
            let (mut lat, mut failed) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || deadline.is_some_and(|d| Instant::now() > d) {
                    return Ok::<_, Box<dyn Error + Send + Sync>>((lat, failed));
                }
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{prefix}-{i:06}","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"app","image":"registry.k8s.io/pause:3.10"}}]}}}}"#
                );
                let t = Instant::now();
                let resp = conn
                    .request("POST", &path, Some("application/json"), body.as_bytes())
                    .await?;
                lat.push(t.elapsed());
                if resp.status != 201 {
                    if failed == 0 {
                        println!(
                            "create answered {}: {}",
                            resp.status,
                            String::from_utf8_lossy(&resp.body)
                        );
                    }
                    failed += 1;
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (lat, f) = t.await??;
        all.extend(lat);
        failed += f;
    }
    Ok(Creates {
        done: all.len() - failed,
        failed,
        elapsed: started.elapsed(),
        latency: Latencies::new(all),
    })
}

/// Sends `count` sequential requests (at most [`PHASE_BUDGET`] long) and returns their latencies.
async fn timed(count: usize, conn: &mut Conn, method: &str, path: &str) -> Result<Latencies> {
    let started = Instant::now();
    let mut lat = Vec::with_capacity(count);
    while lat.len() < count && started.elapsed() < PHASE_BUDGET {
        let t = Instant::now();
        let resp = conn.request(method, path, None, b"").await?;
        lat.push(t.elapsed());
        if resp.status != 200 {
            return Err(format!("{method} {path}: {}", resp.status).into());
        }
    }
    Ok(Latencies::new(lat))
}

/// How many watchers fit under the open-files limit, with a note when fewer than [`WATCHERS`].
fn watcher_count() -> (usize, Option<String>) {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    let fit = limit.saturating_sub(200);
    if fit < WATCHERS {
        (
            fit.max(1),
            Some(format!(
                "open-files limit {limit}: using {} watchers instead of {WATCHERS}",
                fit.max(1)
            )),
        )
    } else {
        (WATCHERS, None)
    }
}

/// The rows of the watch fan-out phase, with watches in `format`.
async fn fan_out_rows(api: SocketAddr, format: WatchFormat) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let (watchers, note) = watcher_count();
    if let Some(note) = note {
        println!("{note}");
    }
    let w = watch_fan_out(api, watchers, format).await?;
    rows.push(Row::new(
        format!(
            "watch delivery p50 / p99 ({watchers} {} watchers)",
            format.name()
        ),
        w.latency.p50_p99(),
        "p99 < 100 ms",
    ));
    rows.push(Row::new(
        "watch events delivered",
        format!("{} of {}", w.latency.len(), w.expected),
        "all",
    ));
    rows.push(Row::new(
        "configmap update rate",
        format!("{:.0}/s ({} not 200)", w.update_rate, w.update_failures),
        "~1,000/s",
    ));
    rows.push(Row::new(
        "configmap PATCH p50 / p99 during fan-out",
        w.patch_latency.p50_p99(),
        "-",
    ));
    Ok(rows)
}

/// What the watchers of the fan-out phase ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchFormat {
    /// Plain JSON events (client libraries, controllers).
    Json,
    /// `meta.k8s.io/v1` Table events with the whole object (`kubectl get -w`).
    Table,
}

impl WatchFormat {
    fn name(self) -> &'static str {
        match self {
            WatchFormat::Json => "JSON",
            WatchFormat::Table => "Table",
        }
    }

    /// The `Accept` header of the watch request, if any.
    fn accept(self) -> Option<&'static str> {
        match self {
            WatchFormat::Json => None,
            WatchFormat::Table => Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
        }
    }

    /// Extra query parameters of the watch request.
    fn query(self) -> &'static str {
        match self {
            WatchFormat::Json => "",
            WatchFormat::Table => "&includeObject=Object",
        }
    }
}

/// What the watch phase measured.
struct FanOut {
    latency: Latencies,
    expected: usize,
    update_rate: f64,
    update_failures: usize,
    patch_latency: Latencies,
}

/// Opens `watchers` watches on the configmaps of `default`, updates [`UPDATERS`] configmaps
/// [`UPDATES`] times at [`UPDATE_RATE`], and collects each event's delivery latency.
async fn watch_fan_out(api: SocketAddr, watchers: usize, format: WatchFormat) -> Result<FanOut> {
    let base = Instant::now();
    let mut conn = Conn::connect(api).await?;
    let mut rv = String::new();
    for u in 0..UPDATERS {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"watched-{u}"}},"data":{{"sent":"0"}}}}"#
        );
        let resp = conn
            .request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some("application/json"),
                body.as_bytes(),
            )
            .await?;
        let object: serde_json::Value = serde_json::from_slice(&resp.body)?;
        rv = object["metadata"]["resourceVersion"]
            .as_str()
            .ok_or("configmap without resourceVersion")?
            .to_string();
    }
    let path = Arc::new(format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}{}",
        format.query()
    ));
    let ready = Arc::new(AtomicUsize::new(0));
    let opened = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let (path, ready) = (path.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            watch_one(api, &path, format.accept(), &ready, base).await
        }));
    }
    while ready.load(Ordering::Relaxed) < watchers && opened.elapsed() < PHASE_BUDGET {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "watch: {} of {watchers} watches open in {:.2} s",
        ready.load(Ordering::Relaxed),
        opened.elapsed().as_secs_f64()
    );

    let started = tokio::time::Instant::now();
    let mut updaters = Vec::new();
    for u in 0..UPDATERS {
        updaters.push(tokio::spawn(async move {
            let mut conn = Conn::connect(api).await?;
            let path = format!("/api/v1/namespaces/default/configmaps/watched-{u}");
            let (mut lat, mut failed) = (Vec::new(), 0);
            for k in 0..UPDATES / UPDATERS {
                let slot = (k * UPDATERS + u) as u64;
                tokio::time::sleep_until(
                    started + Duration::from_micros(slot * 1_000_000 / UPDATE_RATE),
                )
                .await;
                let t = Instant::now();
                let sent = base.elapsed().as_micros();
                let body = format!(r#"{{"data":{{"sent":"{sent}"}}}}"#);
                let resp = conn
                    .request(
                        "PATCH",
                        &path,
                        Some("application/merge-patch+json"),
                        body.as_bytes(),
                    )
                    .await?;
                lat.push(t.elapsed());
                failed += usize::from(resp.status != 200);
            }
            Ok::<_, Box<dyn Error + Send + Sync>>((lat, failed))
        }));
    }
    let (mut patch_latency, mut update_failures) = (Vec::new(), 0);
    for u in updaters {
        let (lat, failed) = u.await??;
        patch_latency.extend(lat);
        update_failures += failed;
    }
    let update_rate = (UPDATES / UPDATERS * UPDATERS) as f64 / started.elapsed().as_secs_f64();

    let mut all = Vec::new();
    let mut opened = 0;
    for t in tasks {
        if let Ok(Ok(lat)) = t.await {
            opened += 1;
            all.extend(lat);
        }
    }
    Ok(FanOut {
        latency: Latencies::new(all),
        expected: opened * (UPDATES / UPDATERS * UPDATERS),
        update_rate,
        update_failures,
        patch_latency: Latencies::new(patch_latency),
    })
}

/// One watch: counts itself in `ready` once the response starts, then returns the
/// latency of every event carrying a send time, until all updates arrived or the stream idles 10 s.
async fn watch_one(
    api: SocketAddr,
    path: &str,
    accept: Option<&'static str>,
    ready: &AtomicUsize,
    base: Instant,
) -> Result<Vec<Duration>> {
    let mut conn = Conn::connect(api).await?;
    conn.accept = accept;
    conn.send("GET", path, None, b"").await?;
    let (status, _) = conn.head().await?;
    if status != 200 {
        return Err(format!("watch answered {status}").into());
    }
    ready.fetch_add(1, Ordering::Relaxed);
    let expected = UPDATES / UPDATERS * UPDATERS;
    let mut lat = Vec::with_capacity(expected);
    let mut line = Vec::new();
    while lat.len() < expected {
        let chunk = match tokio::time::timeout(Duration::from_secs(10), conn.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        let now = base.elapsed();
        line.extend_from_slice(&chunk);
        while let Some(end) = line.iter().position(|&b| b == b'\n') {
            if let Some(sent) = sent_micros(&line[..end]).filter(|&s| s > 0) {
                lat.push(now.saturating_sub(Duration::from_micros(sent)));
            }
            line.drain(..=end);
        }
    }
    Ok(lat)
}

/// The `"sent":"<micros>"` value of a watch line.
fn sent_micros(line: &[u8]) -> Option<u64> {
    let key = br#""sent":""#;
    let at = line.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// VmRSS of process `pid`, as printed in `/proc/<pid>/status`.
fn rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let kb: f64 = s
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.0} MiB", kb / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Sorted request latencies.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Latencies(v)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn quantile(&self, q: f64) -> String {
        match self.0.len() {
            0 => "-".into(),
            n => ms(self.0[((n - 1) as f64 * q).round() as usize]),
        }
    }

    fn p50(&self) -> String {
        self.quantile(0.5)
    }

    fn p50_p99(&self) -> String {
        format!("{} / {}", self.quantile(0.5), self.quantile(0.99))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// One line of the summary.
struct Row {
    metric: String,
    measured: String,
    target: String,
}

impl Row {
    fn new(metric: impl ToString, measured: impl ToString, target: impl ToString) -> Row {
        Row {
            metric: metric.to_string(),
            measured: measured.to_string(),
            target: target.to_string(),
        }
    }
}

fn print_table(rows: &[Row]) {
    let w0 = rows
        .iter()
        .map(|r| r.metric.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w1 = rows
        .iter()
        .map(|r| r.measured.len())
        .max()
        .unwrap_or(0)
        .max(8);
    println!("\n{:<w0$}  {:<w1$}  target", "metric", "measured");
    println!("{}", "-".repeat(w0 + w1 + 14));
    for r in rows {
        println!("{:<w0$}  {:<w1$}  {}", r.metric, r.measured, r.target);
    }
}

/// A response: status and body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// How a response body is delimited.
enum Framing {
    Length(usize),
    Chunked,
}

/// A keep-alive HTTP/1.1 connection (only what the apiserver's answers need).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// `Accept` header of its requests, if any.
    accept: Option<&'static str>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            accept: None,
        })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response> {
        self.send(method, path, content_type, body).await?;
        let (status, framing) = self.head().await?;
        let body = match framing {
            Framing::Length(n) => {
                while self.buf.len() < n {
                    self.fill().await?;
                }
                self.buf.drain(..n).collect()
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                while let Some(c) = self.chunk().await? {
                    body.extend(c);
                }
                body
            }
        };
        Ok(Response { status, body })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        if let Some(accept) = self.accept {
            req.push_str(&format!("accept: {accept}\r\n"));
        }
        if let Some(ct) = content_type {
            req.push_str(&format!(
                "content-type: {ct}\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; a closed connection is an error.
    async fn fill(&mut self) -> Result<()> {
        loop {
            self.stream.readable().await?;
            let len = self.buf.len();
            self.buf.resize(len + 64 * 1024, 0);
            let read = self.stream.try_read(&mut self.buf[len..]);
            self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads the status line and headers.
    async fn head(&mut self) -> Result<(u16, Framing)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.lines();
                let status = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                    .ok_or_else(|| format!("bad status line in {head:?}"))?;
                let mut framing = Framing::Length(0);
                for (name, value) in lines.filter_map(|l| l.split_once(':')) {
                    if name.eq_ignore_ascii_case("content-length") {
                        framing = Framing::Length(value.trim().parse()?);
                    } else if name.eq_ignore_ascii_case("transfer-encoding")
                        && value.contains("chunked")
                    {
                        framing = Framing::Chunked;
                    }
                }
                return Ok((status, framing));
            }
            self.fill().await?;
        }
    }

    /// The next chunk of a chunked body; `None` after the last one.
    async fn chunk(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size_line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                let hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)?;
                if self.buf.len() >= i + 2 + size + 2 {
                    let data = self.buf[i + 2..i + 2 + size].to_vec();
                    self.buf.drain(..i + 2 + size + 2);
                    return Ok((size > 0).then_some(data));
                }
            }
            self.fill().await?;
        }
    }
}
