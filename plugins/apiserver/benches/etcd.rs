//! Pod creates through kubernel on etcd, next to raw etcd puts of the same values and to kubernel on its embedded store.
//!
//! `cargo bench -p kubernel-apiserver --bench etcd`. Builds `kubernel` and the
//! apiserver plugin in release and starts a fresh etcd (Debian's `etcd-server`) per
//! phase. Each phase runs `CLIENTS` concurrent clients: pod creates over HTTP through
//! kubernel storing in etcd; raw etcd puts (etcd-client, one put per request) of
//! values as large as the pods kubernel stored; pod creates through kubernel on the
//! embedded store. Client, kubernel and etcd share the machine. Nothing is asserted.

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
/// Pods created (and raw puts made) per phase.
const WRITES: usize = 10_000;

fn main() -> Result<()> {
    let release = build()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let etcd = Etcd::start()?;
    let storage = format!(
        "storage = \"etcd\"\netcd_endpoints = [\"{}\"]\n",
        etcd.endpoint
    );
    let on_etcd = runtime.block_on(KernelProcess::start(&release, &storage)?.create_pods())?;
    let value = runtime.block_on(stored_pod(&etcd.endpoint))?;
    drop(etcd);

    let etcd = Etcd::start()?;
    let raw = runtime.block_on(raw_puts(&etcd.endpoint, &value))?;
    drop(etcd);

    let embedded = runtime.block_on(KernelProcess::start(&release, "")?.create_pods())?;

    println!(
        "\n{CLIENTS} clients, {WRITES} writes per phase, stored pod value {} bytes\n",
        value.len()
    );
    println!(
        "{:<34} {:>10} {:>9} {:>9}",
        "phase", "writes/s", "p50", "p99"
    );
    for (name, run) in [
        ("kubernel pod creates on etcd", &on_etcd),
        ("raw etcd puts (etcd-client)", &raw),
        ("kubernel pod creates on embedded", &embedded),
    ] {
        println!(
            "{name:<34} {:>10.0} {:>9} {:>9}",
            run.rate(),
            ms(run.quantile(0.50)),
            ms(run.quantile(0.99))
        );
    }
    println!(
        "\nkubernel on etcd / raw etcd puts: {:.0}% (target at least 50%)",
        100.0 * on_etcd.rate() / raw.rate()
    );
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

/// `WRITES` puts of `value` to distinct keys from `CLIENTS` tasks.
async fn raw_puts(endpoint: &str, value: &[u8]) -> Result<Run> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let value = Arc::new(value.to_vec());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let mut kv = client.kv_client();
            let value = value.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(WRITES / CLIENTS);
                for i in 0..WRITES / CLIENTS {
                    let sent = Instant::now();
                    kv.put(format!("/bench/{task}/{i}"), value.as_slice(), None)
                        .await?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, etcd_client::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(WRITES);
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
            "[kernel]\nadmin_addr = \"127.0.0.1:0\"\nlog_filter = \"warn\"\n\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nsecure_port = {port}\n{extra}",
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

    /// Creates `WRITES` pods in `default` from `CLIENTS` tasks, each with its own
    /// keep-alive connection; stops the kernel afterwards.
    async fn create_pods(self) -> Result<Run> {
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let addr = self.addr;
                tokio::spawn(async move {
                    let mut conn = Conn::connect(addr).await?;
                    let mut latencies = Vec::with_capacity(WRITES / CLIENTS);
                    for i in 0..WRITES / CLIENTS {
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
        let mut latencies = Vec::with_capacity(WRITES);
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
