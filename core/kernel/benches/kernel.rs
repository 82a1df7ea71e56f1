//! Kernel benchmark: request/reply latency, bus throughput, plugin load time, swap pause under load, idle RSS.
//!
//! Builds the release `kubernel` binary and test plugins first, then runs a kernel
//! in-process (sections 1-4) and the real binary (section 5). It prints figures
//! next to their targets and asserts nothing about time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use kubernel_api::bench::{Drive, DriveMode, DriveReport};
use kubernel_api::codec;
use kubernel_api::echo::{Count, Echo, GetCount};
use kubernel_api::Message;
use kubernel_kernel::bus::{Bus, Envelope};
use kubernel_kernel::{Config, Kernel};

/// Packages the bench needs in `target/release`.
const PACKAGES: [&str; 4] = [
    "kubernel",
    "kubernel-test-counter",
    "kubernel-test-counter-next",
    "kubernel-test-driver",
];
/// Timed requests of the driver -> counter latency run (and of its warm-up).
const REQUESTS: u64 = 200_000;
/// Sends of the mailbox throughput run.
const SENDS: u64 = 1_000_000;
/// Sends of the mailbox warm-up run.
const WARMUP_SENDS: u64 = 100_000;
/// Requests per thread of the multi-threaded throughput runs.
const REQUESTS_PER_THREAD: u64 = 500_000;
/// Longest a throughput thread runs, whatever its count.
const THREAD_MAX: Duration = Duration::from_secs(20);
/// Iterations of the load-time and idle-swap runs.
const LOADS: usize = 50;
/// Swaps of the swap-under-load run.
const SWAPS: usize = 100;
/// Time between two swaps under load, so the load thread gets the plugin in between.
const SWAP_GAP: Duration = Duration::from_millis(5);
/// Margin before a swap's pause window when matching slow requests to swaps.
const PAUSE_SLACK: Duration = Duration::from_millis(2);
/// Longest the swap-under-load run keeps its load thread going.
const LOAD_MAX: Duration = Duration::from_secs(60);
/// Latencies kept by the load thread (its max and count cover all requests).
const LOAD_SAMPLES: usize = 20_000_000;
/// A load-thread request at least this slow is kept with its start time.
const SLOW: Duration = Duration::from_millis(1);
/// Slow requests kept by the load thread.
const SLOW_SAMPLES: usize = 10_000;
/// How long the real binary gets to write its admin address.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long the real binary idles before its RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(2);
/// How long the real binary gets to exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Paths of the release build.
struct Build {
    kubernel: PathBuf,
    counter: PathBuf,
    counter_next: PathBuf,
    driver: PathBuf,
}

/// One line of the summary table.
struct Row {
    metric: String,
    measured: String,
    target: &'static str,
    met: Option<bool>,
}

/// The summary table, filled section by section.
#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn add(
        &mut self,
        metric: impl Into<String>,
        measured: String,
        target: &'static str,
        met: Option<bool>,
    ) {
        self.0.push(Row {
            metric: metric.into(),
            measured,
            target,
            met,
        });
    }

    fn print(&self) {
        let w = self.0.iter().map(|r| r.metric.len()).max().unwrap_or(0);
        let m = self
            .0
            .iter()
            .map(|r| r.measured.chars().count())
            .max()
            .unwrap_or(0);
        println!(
            "{:<w$}  {:>m$}  {:<10}  vs target",
            "metric", "measured", "target"
        );
        for r in &self.0 {
            let verdict = match r.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            println!(
                "{:<w$}  {:>m$}  {:<10}  {verdict}",
                r.metric, r.measured, r.target
            );
        }
    }
}

fn main() -> Result<()> {
    let started = Instant::now();
    println!("kubernel kernel bench");
    println!("machine: {} CPUs (nproc), {}", nproc(), cpu_model());
    let build = build()?;
    let mut table = Table::default();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    actix::System::new().block_on(in_process(&build, dir.path(), &mut table))?;
    idle_rss(&build, &mut table)?;
    println!("\nsummary ({:.0} s)", started.elapsed().as_secs_f64());
    table.print();
    Ok(())
}

fn nproc() -> String {
    std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU model".to_string())
}

/// Runs `cargo build --release` of the binary and test plugins; returns their paths.
fn build() -> Result<Build> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .context("the kernel crate is not two levels below the workspace root")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args: Vec<&str> = ["build", "--release"]
        .into_iter()
        .chain(PACKAGES.iter().flat_map(|p| ["-p", *p]))
        .collect();
    let shown = format!("{} {}", cargo.to_string_lossy(), args.join(" "));
    println!("build: {shown}");
    let t = Instant::now();
    let status = Command::new(&cargo)
        .args(&args)
        .current_dir(workspace)
        .status()
        .with_context(|| format!("cannot run `{shown}` in {}", workspace.display()))?;
    if !status.success() {
        bail!("`{shown}` in {} failed ({status}); the bench needs the release binary and test plugins", workspace.display());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let release = workspace.join(target).join("release");
    let file = |name: &str| -> Result<PathBuf> {
        let path = release.join(name);
        if !path.is_file() {
            bail!("{} is missing after `{shown}`", path.display());
        }
        Ok(path)
    };
    let build = Build {
        kubernel: file("kubernel")?,
        counter: file("libkubernel_test_counter.so")?,
        counter_next: file("libkubernel_test_counter_next.so")?,
        driver: file("libkubernel_test_driver.so")?,
    };
    let size = std::fs::metadata(&build.counter)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "build: ok in {:.1} s; {} ({:.1} MB)",
        t.elapsed().as_secs_f64(),
        build.counter.display(),
        size as f64 / 1e6
    );
    Ok(build)
}

/// A kernel config with `extra` under `[kernel]` and one `[[plugin]]` per entry.
fn config_text(extra: &str, plugins: &[(&str, &Path)]) -> String {
    let mut text = format!("[kernel]\n{extra}");
    for (name, path) in plugins {
        let path = toml::Value::String(path.display().to_string());
        text.push_str(&format!("\n[[plugin]]\nname = \"{name}\"\npath = {path}\n"));
    }
    text
}

/// Sections 1-4, against a kernel started in this process.
async fn in_process(build: &Build, dir: &Path, table: &mut Table) -> Result<()> {
    let plugins = [
        ("counter", build.counter.as_path()),
        ("counter2", build.counter.as_path()),
        ("driver", build.driver.as_path()),
    ];
    let config_path = dir.join("bench.toml");
    let config = Config::parse(&config_text("", &plugins), &config_path, std::iter::empty())
        .context("bench config")?;
    let kernel = Kernel::start(config, &dir.join("data")).context("starting the kernel")?;
    request_reply(&kernel, table)?;
    throughput(&kernel, table)?;
    load_time(&kernel, build, table).await?;
    swap_under_load(&kernel, build, table).await?;
    kernel.drain().await;
    Ok(())
}

/// Asks the driver plugin to run `count` operations against `target`.
fn drive(bus: &Bus, target: &str, count: u64, mode: DriveMode) -> Result<DriveReport> {
    let msg = Drive {
        target: target.to_string(),
        count,
        mode,
    };
    let payload = codec::encode(Drive::KIND, &msg)?;
    let reply = bus
        .request("driver", Envelope::new("bench", Drive::KIND, &payload))
        .with_context(|| format!("driver: {count} {mode:?} to {target}"))?;
    let report: DriveReport = codec::decode(Drive::KIND, &reply)?;
    if report.failed > 0 {
        bail!(
            "driver: {} of {count} {mode:?} to {target} failed",
            report.failed
        );
    }
    Ok(report)
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(ns: u64) -> String {
    format!("{:.2} µs", ns as f64 / 1e3)
}

fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// A rate with thousands separators: `1,234,567 msg/s`.
fn rate(r: f64) -> String {
    let digits = (r.round() as u64).to_string();
    let groups: Vec<_> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(String::from_utf8_lossy)
        .collect();
    format!("{} msg/s", groups.join(","))
}

/// Section 1: driver -> counter request/reply latency, measured inside the driver plugin.
fn request_reply(kernel: &Kernel, table: &mut Table) -> Result<()> {
    println!("\n[1] request/reply driver -> counter through the kernel ({REQUESTS} requests after a warm-up of {REQUESTS})");
    drive(&kernel.bus, "counter", REQUESTS, DriveMode::Request)?;
    let r = drive(&kernel.bus, "counter", REQUESTS, DriveMode::Request)?;
    let l = &r.latencies_ns;
    println!(
        "    min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        us(pct(l, 0.0)),
        us(pct(l, 50.0)),
        us(pct(l, 90.0)),
        us(pct(l, 99.0)),
        us(pct(l, 99.9)),
        us(pct(l, 100.0))
    );
    let elapsed = Duration::from_nanos(r.elapsed_ns);
    println!(
        "    {} sequential requests in {:.3} s = {}",
        r.ok,
        elapsed.as_secs_f64(),
        rate(per_second(r.ok, elapsed))
    );
    table.add(
        "1. request/reply p50",
        us(pct(l, 50.0)),
        "< 2 µs",
        Some(pct(l, 50.0) < 2_000),
    );
    for p in [90.0, 99.0, 99.9] {
        table.add(format!("1. request/reply p{p}"), us(pct(l, p)), "-", None);
    }
    Ok(())
}

/// Section 2: mailbox sends from the driver, and synchronous requests from bench threads.
fn throughput(kernel: &Kernel, table: &mut Table) -> Result<()> {
    println!("\n[2a] sends driver -> counter mailbox ({SENDS} after a warm-up of {WARMUP_SENDS}; timed until all are handled)");
    drive(&kernel.bus, "counter", WARMUP_SENDS, DriveMode::Send)?;
    let r = drive(&kernel.bus, "counter", SENDS, DriveMode::Send)?;
    let elapsed = Duration::from_nanos(r.elapsed_ns);
    let sends = per_second(r.ok, elapsed);
    println!(
        "    {} sends handled in {:.3} s = {}",
        r.ok,
        elapsed.as_secs_f64(),
        rate(sends)
    );
    table.add(
        "2a. sends through the mailbox",
        rate(sends),
        "> 500k/s",
        Some(sends > 500_000.0),
    );

    println!(
        "\n[2b] synchronous requests bench thread(s) -> counter ({REQUESTS_PER_THREAD} per thread)"
    );
    let runs: [(&str, &[&str]); 3] = [
        ("1 thread -> counter", &["counter"]),
        ("2 threads -> counter (one lock)", &["counter", "counter"]),
        ("2 threads -> counter, counter2", &["counter", "counter2"]),
    ];
    for (label, targets) in runs {
        let (ok, elapsed) = hammer(&kernel.bus, targets)?;
        let r = per_second(ok, elapsed);
        println!(
            "    {label:<32} {ok} requests in {:.3} s = {}",
            elapsed.as_secs_f64(),
            rate(r)
        );
        table.add(
            format!("2b. requests, {label}"),
            rate(r),
            "> 500k/s",
            Some(r > 500_000.0),
        );
    }
    Ok(())
}

/// One thread per target, each sending `REQUESTS_PER_THREAD` echo requests; total and wall time.
fn hammer(bus: &Bus, targets: &[&str]) -> Result<(u64, Duration)> {
    let payload = codec::encode(
        Echo::KIND,
        &Echo {
            text: "ping".to_string(),
        },
    )?;
    let start = Instant::now();
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let threads: Vec<_> = targets
            .iter()
            .map(|target| {
                let payload = &payload;
                s.spawn(move || -> Result<u64> {
                    let deadline = Instant::now() + THREAD_MAX;
                    let mut ok = 0;
                    while ok < REQUESTS_PER_THREAD && Instant::now() < deadline {
                        bus.request(target, Envelope::new("bench", Echo::KIND, payload))
                            .with_context(|| format!("echo request to {target}"))?;
                        ok += 1;
                    }
                    Ok(ok)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow!("request thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok((total, elapsed))
}

/// Section 3: `load_library` (copy + dlopen + validation) and full hot swaps of an idle plugin.
async fn load_time(kernel: &Kernel, build: &Build, table: &mut Table) -> Result<()> {
    println!("\n[3] plugin load: {LOADS} x Kernel::load_library, then {LOADS} x swap_path(counter2, counter build) while idle");
    let plugin = kernel
        .config()
        .plugins
        .into_iter()
        .find(|p| p.name == "counter2")
        .context("counter2 is not in the kernel config")?;
    let mut loads = Vec::with_capacity(LOADS);
    for _ in 0..LOADS {
        let t = Instant::now();
        let lib = kernel
            .load_library(&plugin)
            .context("load_library(counter2)")?;
        loads.push(t.elapsed().as_nanos() as u64);
        drop(lib);
    }
    loads.sort_unstable();
    let mut totals = Vec::with_capacity(LOADS);
    let mut pauses = Vec::with_capacity(LOADS);
    for _ in 0..LOADS {
        let t = Instant::now();
        let report = kernel
            .swap_path("counter2", &build.counter)
            .await
            .context("swap of counter2")?;
        totals.push(t.elapsed().as_nanos() as u64);
        pauses.push((report.pause_seconds * 1e9) as u64);
    }
    totals.sort_unstable();
    pauses.sort_unstable();
    println!(
        "    load_library  p50 {}  p99 {}  max {}",
        ms(pct(&loads, 50.0)),
        ms(pct(&loads, 99.0)),
        ms(pct(&loads, 100.0))
    );
    println!(
        "    full swap     p50 {}  p99 {}  max {}",
        ms(pct(&totals, 50.0)),
        ms(pct(&totals, 99.0)),
        ms(pct(&totals, 100.0))
    );
    println!(
        "    swap pause    p50 {}  p99 {}  max {}  (idle plugin)",
        ms(pct(&pauses, 50.0)),
        ms(pct(&pauses, 99.0)),
        ms(pct(&pauses, 100.0))
    );
    let copy = copy_time(&build.counter)?;
    println!(
        "    of which a plain std::fs::copy of the library (the loader copies every load): p50 {}",
        ms(copy)
    );
    for (metric, values) in [
        ("3. load_library", &loads),
        ("3. full swap (load+init+restore)", &totals),
    ] {
        for p in [50.0, 99.0] {
            let v = pct(values, p);
            table.add(
                format!("{metric} p{p}"),
                ms(v),
                "< 20 ms",
                Some(v < 20_000_000),
            );
        }
    }
    Ok(())
}

/// Median time of copying `lib` to a fresh file, as the loader does before each `dlopen`.
fn copy_time(lib: &Path) -> Result<u64> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut times = Vec::new();
    for i in 0..10 {
        let to = dir.path().join(format!("copy{i}.so"));
        let t = Instant::now();
        std::fs::copy(lib, &to).with_context(|| format!("copying {}", lib.display()))?;
        times.push(t.elapsed().as_nanos() as u64);
        std::fs::remove_file(&to).with_context(|| format!("removing {}", to.display()))?;
    }
    times.sort_unstable();
    Ok(pct(&times, 50.0))
}

/// What the load thread of section 4 saw.
struct Load {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    max_ns: u64,
    sorted_ns: Vec<u64>,
    /// Start and latency (ns) of requests slower than `SLOW`.
    slow: Vec<(Instant, u64)>,
}

/// Echo requests to `counter` until `stop` is set or `LOAD_MAX` passes.
fn load_loop(bus: Arc<Bus>, stop: Arc<AtomicBool>) -> Result<Load> {
    let payload = codec::encode(
        Echo::KIND,
        &Echo {
            text: "ping".to_string(),
        },
    )?;
    let mut load = Load {
        requests: 0,
        errors: 0,
        first_error: None,
        max_ns: 0,
        sorted_ns: Vec::new(),
        slow: Vec::new(),
    };
    let deadline = Instant::now() + LOAD_MAX;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let t = Instant::now();
        let result = bus.request("counter", Envelope::new("bench", Echo::KIND, &payload));
        let ns = t.elapsed().as_nanos() as u64;
        load.requests += 1;
        load.max_ns = load.max_ns.max(ns);
        if load.sorted_ns.len() < LOAD_SAMPLES {
            load.sorted_ns.push(ns);
        }
        if ns >= SLOW.as_nanos() as u64 && load.slow.len() < SLOW_SAMPLES {
            load.slow.push((t, ns));
        }
        if let Err(e) = result {
            load.errors += 1;
            load.first_error.get_or_insert_with(|| e.to_string());
        }
    }
    load.sorted_ns.sort_unstable();
    Ok(load)
}

/// Section 4: swaps of `counter` while a thread keeps requesting it.
async fn swap_under_load(kernel: &Kernel, build: &Build, table: &mut Table) -> Result<()> {
    println!("\n[4] swap pause under load: {SWAPS} x swap_path(counter, counter-next build) while a thread requests counter nonstop");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (bus, stop) = (kernel.bus.clone(), stop.clone());
        std::thread::spawn(move || load_loop(bus, stop))
    };
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let mut pauses = Vec::with_capacity(SWAPS);
    // Windows that hold each swap's pause: it ends before `swap_path` returns.
    let mut windows = Vec::with_capacity(SWAPS);
    let mut failures = Vec::new();
    let t = Instant::now();
    for _ in 0..SWAPS {
        match kernel.swap_path("counter", &build.counter_next).await {
            Ok(report) => {
                let end = Instant::now();
                let pause = Duration::from_secs_f64(report.pause_seconds);
                windows.push((end.checked_sub(pause + PAUSE_SLACK).unwrap_or(end), end));
                pauses.push(pause.as_nanos() as u64);
            }
            Err(e) => failures.push(e.to_string()),
        }
        actix_rt::time::sleep(SWAP_GAP).await;
    }
    let swapping = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let load = load.join().map_err(|_| anyhow!("load thread panicked"))??;
    pauses.sort_unstable();
    println!(
        "    {} swaps ok, {} failed, in {:.2} s",
        pauses.len(),
        failures.len(),
        swapping.as_secs_f64()
    );
    if let Some(first) = failures.first() {
        println!("    first swap failure: {first}");
    }
    println!(
        "    swap pause    p50 {}  p99 {}  max {}",
        ms(pct(&pauses, 50.0)),
        ms(pct(&pauses, 99.0)),
        ms(pct(&pauses, 100.0))
    );
    let l = &load.sorted_ns;
    println!(
        "    load thread   {} requests, {} errors; latency p50 {}  p99 {}  p99.99 {}  max {}",
        load.requests,
        load.errors,
        us(pct(l, 50.0)),
        us(pct(l, 99.0)),
        us(pct(l, 99.99)),
        ms(load.max_ns)
    );
    if let Some(e) = &load.first_error {
        println!("    first load error: {e}");
    }
    let in_pause = |(start, ns): &(Instant, u64)| {
        let end = *start + Duration::from_nanos(*ns);
        windows.iter().any(|(from, to)| *start < *to && end > *from)
    };
    let (near, away): (Vec<_>, Vec<_>) = load.slow.iter().partition(|s| in_pause(s));
    let worst = |v: &[&(Instant, u64)]| ms(v.iter().map(|s| s.1).max().unwrap_or(0));
    println!(
        "    load requests over {SLOW:?}: {} overlapping a swap pause (worst {}), {} overlapping none (worst {})",
        near.len(),
        worst(&near),
        away.len(),
        worst(&away)
    );
    let count = ask_count(&kernel.bus)?;
    println!("    counter now answers as version {}", count.version);
    match kernel.swap_path("counter", &build.counter).await {
        Ok(r) => println!("    downgrade counter-next -> counter: accepted ({} -> {})", r.from_version, r.to_version),
        Err(e) => println!("    downgrade counter-next -> counter: refused, as the counter plugin's restore intends: {e}"),
    }
    if pauses.is_empty() {
        bail!("every swap under load failed");
    }
    let p99 = pct(&pauses, 99.0);
    table.add(
        "4. swap pause under load p50",
        ms(pct(&pauses, 50.0)),
        "-",
        None,
    );
    table.add(
        "4. swap pause under load p99",
        ms(p99),
        "< 5 ms",
        Some(p99 < 5_000_000),
    );
    table.add(
        "4. swap pause under load max",
        ms(pct(&pauses, 100.0)),
        "-",
        None,
    );
    table.add(
        "4. failed swaps",
        failures.len().to_string(),
        "0",
        Some(failures.is_empty()),
    );
    table.add(
        "4. load thread max request latency",
        ms(load.max_ns),
        "-",
        None,
    );
    table.add(
        "4. load thread request errors",
        load.errors.to_string(),
        "0",
        Some(load.errors == 0),
    );
    Ok(())
}

fn ask_count(bus: &Bus) -> Result<Count> {
    let payload = codec::encode(GetCount::KIND, &GetCount)?;
    let reply = bus
        .request("counter", Envelope::new("bench", GetCount::KIND, &payload))
        .context("GetCount to counter")?;
    Ok(codec::decode(GetCount::KIND, &reply)?)
}

/// Section 5: RSS of the real binary, idle, without plugins and with the two test plugins.
fn idle_rss(build: &Build, table: &mut Table) -> Result<()> {
    println!(
        "\n[5] idle RSS of `kubernel run` ({}s after start)",
        IDLE_SETTLE.as_secs()
    );
    let bare = measure_rss(&build.kubernel, &[])?;
    let plugins = [
        ("counter", build.counter.as_path()),
        ("driver", build.driver.as_path()),
    ];
    let with = measure_rss(&build.kubernel, &plugins)?;
    for (label, m) in [("no plugins", &bare), ("counter + driver", &with)] {
        println!(
            "    {label:<17} VmRSS {:.1} MB  VmHWM {:.1} MB  threads {}  exit after SIGTERM: {}",
            m.rss_kb as f64 / 1024.0,
            m.hwm_kb as f64 / 1024.0,
            m.threads,
            m.exit
        );
    }
    println!("    note: the kernel with only the two test plugins; the five real components are not built yet");
    let mb = with.rss_kb as f64 / 1024.0;
    table.add(
        "5. idle RSS, kernel + counter + driver",
        format!("{mb:.1} MB"),
        "< 60 MB",
        Some(mb < 60.0),
    );
    table.add(
        "5. idle RSS, kernel alone",
        format!("{:.1} MB", bare.rss_kb as f64 / 1024.0),
        "-",
        None,
    );
    Ok(())
}

/// Memory of an idle kernel process.
struct Rss {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    exit: String,
}

/// Kills and reaps the child if it is still running when dropped (error paths).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn measure_rss(bin: &Path, plugins: &[(&str, &Path)]) -> Result<Rss> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let config = dir.path().join("idle.toml");
    let kernel = "admin_addr = \"127.0.0.1:0\"\nlog_format = \"json\"\nshutdown_grace = \"5s\"\n";
    std::fs::write(&config, config_text(kernel, plugins))
        .with_context(|| format!("writing {}", config.display()))?;
    let log_path = dir.path().join("kubernel.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let mut child = Reap(child);
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let addr = dir.path().join("admin-addr");
    let deadline = Instant::now() + START_WAIT;
    while !addr.exists() {
        if let Some(status) = child.0.try_wait()? {
            bail!("kubernel exited with {status} during start:\n{}", logs());
        }
        if Instant::now() > deadline {
            bail!(
                "kubernel wrote no {} within {START_WAIT:?}:\n{}",
                addr.display(),
                logs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(IDLE_SETTLE);
    let pid = child.0.id();
    let status_path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&status_path).with_context(|| format!("reading {status_path}"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{status_path} has no numeric {name}"))
    };
    let (rss_kb, hwm_kb, threads) = (field("VmRSS:")?, field("VmHWM:")?, field("Threads:")?);
    terminate(pid).with_context(|| format!("sending SIGTERM to kubernel (pid {pid})"))?;
    let t = Instant::now();
    let exit = wait_exit(&mut child.0, EXIT_WAIT)?
        .map(|s| format!("{s} in {:.0} ms", t.elapsed().as_secs_f64() * 1e3))
        .unwrap_or_else(|| format!("still running after {EXIT_WAIT:?}; killed"));
    Ok(Rss {
        rss_kb,
        hwm_kb,
        threads,
        exit,
    })
}

fn wait_exit(child: &mut Child, max: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(None)
}

#[allow(unsafe_code)]
fn terminate(pid: u32) -> Result<()> {
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) takes two integers and touches no memory of this process;
    // `pid` is our child, which is not reaped yet, so the id cannot have been reused.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
