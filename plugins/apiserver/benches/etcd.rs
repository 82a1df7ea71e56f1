//! Pod creates through kubernel on etcd, next to raw etcd puts of the same values and to kubernel on its embedded store.
//!
//! `cargo bench -p kubernel-apiserver --bench etcd`. Builds `kubernel` and the
//! apiserver plugin in release and starts a fresh etcd (Debian's `etcd-server`) per
//! phase. Each phase runs `CLIENTS` concurrent clients: pod creates over HTTP through
//! kubernel storing in etcd; raw etcd puts (etcd-client, one put per request) of
//! values as large as the pods kubernel stored; pod creates through kubernel on the
//! embedded store. Client, kubernel and etcd share the machine. The three phases
//! run in rounds ([`rounds`]) and the median ratio of the rounds is reported.
//! Nothing is asserted.

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubernel_e2e::Etcd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Concurrent clients in every phase.
const CLIENTS: usize = 32;
/// Pods created (and raw puts made) per phase, unless `KUBERNEL_BENCH_WRITES`
/// says otherwise (longer phases leave time to profile one).
fn writes() -> usize {
    std::env::var("KUBERNEL_BENCH_WRITES")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(10_000)
}

/// Rounds of the three phases, unless `KUBERNEL_BENCH_ROUNDS` says otherwise.
/// The machine's speed drifts over minutes (other tenants, etcd's fsyncs), so
/// the phases are compared within each round and the median ratio is reported.
fn rounds() -> usize {
    std::env::var("KUBERNEL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(3)
}

/// One round's runs and the CPU each process used, by phase.
struct Round {
    on_etcd: (Run, Vec<Duration>),
    raw: (Run, Vec<Duration>),
    embedded: (Run, Vec<Duration>),
    value_len: usize,
}

fn main() -> Result<()> {
    let release = build()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut ratios = Vec::new();
    for round in 1..=rounds() {
        let r = run_round(&release, &runtime)?;
        println!(
            "\nround {round}: {CLIENTS} clients, {} writes per phase, stored pod value {} bytes\n",
            writes(),
            r.value_len
        );
        report(&r);
        ratios.push(r.on_etcd.0.rate() / r.raw.0.rate());
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let each: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:.0}%", 100.0 * r))
        .collect();
    println!(
        "\nkubernel on etcd / raw etcd puts, median of {} rounds: {:.0}% (rounds: {}; target at least 50%)",
        ratios.len(),
        100.0 * median,
        each.join(", ")
    );
    Ok(())
}

/// Runs the three phases once: creates through kubernel on etcd, raw puts of the
/// same values, creates through kubernel on the embedded store; each with a
/// fresh etcd or kubernel.
fn run_round(release: &Path, runtime: &tokio::runtime::Runtime) -> Result<Round> {
    let etcd = Etcd::start()?;
    let storage = format!(
        "storage = \"etcd\"\netcd_endpoints = [\"{}\"]\n",
        etcd.endpoint
    );
    let kernel = KernelProcess::start(release, &storage)?;
    let meter = Meter::start(&[kernel.child.id(), pid(&etcd)?, std::process::id()]);
    let on_etcd = runtime.block_on(kernel.create_pods())?;
    let on_etcd_cpu = meter.stop();
    drop(kernel);
    let value = runtime.block_on(stored_pod(&etcd.endpoint))?;
    drop(etcd);

    let etcd = Etcd::start()?;
    let meter = Meter::start(&[0, pid(&etcd)?, std::process::id()]);
    let raw = runtime.block_on(raw_puts(&etcd.endpoint, &value))?;
    let raw_cpu = meter.stop();
    drop(etcd);

    let kernel = KernelProcess::start(release, "")?;
    let meter = Meter::start(&[kernel.child.id(), 0, std::process::id()]);
    let embedded = runtime.block_on(kernel.create_pods())?;
    let embedded_cpu = meter.stop();
    drop(kernel);
    Ok(Round {
        on_etcd: (on_etcd, on_etcd_cpu),
        raw: (raw, raw_cpu),
        embedded: (embedded, embedded_cpu),
        value_len: value.len(),
    })
}

/// Prints one round: rates and latencies, the ratio, and CPU per write.
fn report(round: &Round) {
    let phases = [
        ("kubernel pod creates on etcd", &round.on_etcd),
        ("raw etcd puts (etcd-client)", &round.raw),
        ("kubernel pod creates on embedded", &round.embedded),
    ];
    println!(
        "{:<34} {:>10} {:>9} {:>9}",
        "phase", "writes/s", "p50", "p99"
    );
    for (name, (run, _)) in phases {
        println!(
            "{name:<34} {:>10.0} {:>9} {:>9}",
            run.rate(),
            ms(run.quantile(0.50)),
            ms(run.quantile(0.99))
        );
    }
    println!(
        "\nkubernel on etcd / raw etcd puts: {:.0}% (target at least 50%)",
        100.0 * round.on_etcd.0.rate() / round.raw.0.rate()
    );
    // CPU time per write does not depend on what else the machine runs; the writes
    // per second the machine's cores could sustain follow from it.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("\nCPU per write (user + system, from /proc/<pid>/stat)\n");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "phase", "kubernel", "etcd", "client", "total", "writes/s on"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "",
        "",
        "",
        "",
        "",
        format!("{cores} cores")
    );
    for (name, (run, cpu)) in phases {
        let per_write: Vec<f64> = cpu
            .iter()
            .map(|used| used.as_secs_f64() * 1e6 / run.latencies.len().max(1) as f64)
            .collect();
        let total: f64 = per_write.iter().sum();
        let cell = |i: usize| format!("{:.0} us", per_write.get(i).copied().unwrap_or(0.0));
        println!(
            "{name:<34} {:>9} {:>9} {:>9} {:>9} {:>12.0}",
            cell(0),
            cell(1),
            cell(2),
            format!("{total:.0} us"),
            cores as f64 * 1e6 / total.max(1e-9)
        );
    }
}

/// The etcd process' id.
fn pid(etcd: &Etcd) -> Result<u32> {
    etcd.pid().ok_or_else(|| "etcd is not running".into())
}

/// CPU time used by a few processes between [`Meter::start`] and [`Meter::stop`].
struct Meter {
    pids: Vec<u32>,
    before: Vec<Duration>,
}

impl Meter {
    /// Starts metering `pids` (0: none, reported as zero).
    fn start(pids: &[u32]) -> Meter {
        Meter {
            pids: pids.to_vec(),
            before: pids.iter().map(|&pid| cpu_time(pid)).collect(),
        }
    }

    /// The CPU time each process used since the start, in the order given.
    fn stop(self) -> Vec<Duration> {
        self.pids
            .iter()
            .zip(&self.before)
            .map(|(&pid, before)| cpu_time(pid).saturating_sub(*before))
            .collect()
    }
}

/// User plus system CPU time of process `pid` so far (zero for pid 0 or when
/// `/proc` cannot tell).
fn cpu_time(pid: u32) -> Duration {
    if pid == 0 {
        return Duration::ZERO;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // proc(5): after the command in parentheses, field 3 (state) comes first;
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Builds the binary and plugin in release; returns the directory holding them.
fn build() -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .ok_or("no workspace root above CARGO_MANIFEST_DIR")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
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
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target.join("release"))
}

/// Latencies of one phase and how long it took.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn new(mut latencies: Vec<Duration>, elapsed: Duration) -> Run {
        latencies.sort();
        Run { latencies, elapsed }
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile(&self, q: f64) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        let at = ((last as f64) * q).round() as usize;
        self.latencies.get(at).copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The value kubernel stored in etcd for the first pod (defaults included).
async fn stored_pod(endpoint: &str) -> Result<Vec<u8>> {
    let mut client = etcd_client::Client::connect([endpoint], None).await?;
    let found = client.get("/registry/pods/default/p-0-0", None).await?;
    let kv = found.kvs().first().ok_or("no pod p-0-0 in etcd")?;
    Ok(kv.value().to_vec())
}

/// [`writes`] puts of `value` to distinct keys from `CLIENTS` tasks.
async fn raw_puts(endpoint: &str, value: &[u8]) -> Result<Run> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let value = Arc::new(value.to_vec());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let mut kv = client.kv_client();
            let value = value.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(writes() / CLIENTS);
                for i in 0..writes() / CLIENTS {
                    let sent = Instant::now();
                    kv.put(format!("/bench/{task}/{i}"), value.as_slice(), None)
                        .await?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, etcd_client::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(writes());
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run::new(latencies, started.elapsed()))
}

/// A kubernel process running the release apiserver plugin on a free port.
struct KernelProcess {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl KernelProcess {
    /// Starts it with `extra` apiserver config lines; waits until the API answers.
    fn start(release: &Path, extra: &str) -> Result<KernelProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let config = format!(
            "[kernel]\nadmin_addr = \"127.0.0.1:0\"\nlog_filter = \"warn\"\n\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nbind_address = \"127.0.0.1\"\nsecure_port = 0\ninsecure_port = {port}\n{extra}",
            release.join("libkubernel_apiserver.so").display()
        );
        let config_path = dir.path().join("kubernel.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("kubernel.log"))?;
        let child = Command::new(release.join("kubernel"))
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
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("http://{}/readyz", kernel.addr))
            .call()
            .is_err()
        {
            if let Some(status) = kernel.child.try_wait()? {
                return Err(format!("kubernel exited with {status}:\n{}", kernel.logs()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("no /readyz within 30 s:\n{}", kernel.logs()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(kernel)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubernel.log")).unwrap_or_default()
    }

    /// Creates [`writes`] pods in `default` from `CLIENTS` tasks, each with its own
    /// keep-alive connection.
    async fn create_pods(&self) -> Result<Run> {
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let addr = self.addr;
                tokio::spawn(async move {
                    let mut conn = Conn::connect(addr).await?;
                    let mut latencies = Vec::with_capacity(writes() / CLIENTS);
                    for i in 0..writes() / CLIENTS {
                        let pod = format!(
                            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p-{client}-{i}","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"app","image":"registry.k8s.io/pause:3.10","resources":{{"requests":{{"cpu":"100m","memory":"64Mi"}}}}}}]}}}}"#
                        );
                        let sent = Instant::now();
                        let status = conn.post("/api/v1/namespaces/default/pods", pod.as_bytes()).await?;
                        if status != 201 {
                            return Err(format!("create p-{client}-{i}: HTTP {status}").into());
                        }
                        latencies.push(sent.elapsed());
                    }
                    Ok::<_, Box<dyn Error + Send + Sync>>(latencies)
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(writes());
        for task in tasks {
            latencies.extend(task.await??);
        }
        Ok(Run::new(latencies, started.elapsed()))
    }
}

/// A minimal keep-alive HTTP/1.1 client connection: POSTs JSON and reads
/// `Content-Length` framed answers, so the clients cost the server's cores little.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    /// POSTs `body` to `path`; returns the status once the answer is read.
    async fn post(&mut self, path: &str, body: &[u8]) -> Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: kubernel\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or("an answer without Content-Length")?;
        let mut rest = vec![0; length];
        self.stream.read_exact(&mut rest).await?;
        Ok(status)
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
