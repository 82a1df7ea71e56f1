//! Proxy benchmarks (printed, not asserted):
//!
//! - nftables (root; the bench runs itself again in a network namespace it creates): full sync of 1,000 and
//!   10,000 Services with 10 endpoints each, and applying one changed Service when
//!   10,000 exist (endpoints replaced, one endpoint more, one Service more);
//! - userspace: request/response round trips through the proxy against a direct
//!   connection to the same backend (requests/s and p50/p99, and their ratio).
//!
//! `cargo bench -p kubernel-proxy --bench proxy`

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubernel_client::CancellationToken;
use kubernel_proxy::config::{ProxyConfig, Scheduler};
use kubernel_proxy::libnftables::Nft;
use kubernel_proxy::metrics::Metrics;
use kubernel_proxy::model::{ServicePort, ServicePortName};
use kubernel_proxy::nftables::NftProxier;
use kubernel_proxy::userspace::Proxier;

fn services(n: usize, endpoints: usize, generation: u8) -> BTreeMap<ServicePortName, ServicePort> {
    (0..n)
        .map(|i| {
            let ip = format!("10.96.{}.{}", (i / 250) % 256, i % 250 + 1);
            let name = ServicePortName {
                namespace: "bench".into(),
                name: format!("svc-{i}"),
                port: "http".into(),
            };
            let eps = (0..endpoints)
                .map(|e| {
                    let addr = format!(
                        "10.{}.{}.{}:8080",
                        128 + generation % 64,
                        (i * endpoints + e) / 250 % 256,
                        (i * endpoints + e) % 250 + 1
                    );
                    addr.parse().unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            let port = ServicePort {
                cluster_ip: ip.parse().ok(),
                port: 80,
                node_port: (i < 2700).then(|| 30000 + u16::try_from(i).unwrap_or(0)),
                client_ip_affinity: false,
                endpoints: eps,
            };
            (name, port)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn nftables() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root || Command::new("nft").arg("--version").output().is_err() {
        println!("nftables: skipped (needs root and nft)");
        return;
    }
    if std::env::var_os(IN_NETNS).is_none() {
        // Run again inside a fresh network namespace, so that `nft` runs there as the
        // plugin runs it (no `ip netns exec` in the timed path).
        let ns = format!("kubernel-bench-{}", std::process::id());
        if !Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .is_ok_and(|s| s.success())
        {
            println!("nftables: skipped (cannot create a network namespace)");
            return;
        }
        let status = std::env::current_exe().and_then(|exe| {
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(exe)
                .env(IN_NETNS, "1")
                .status()
        });
        if let Err(e) = status {
            println!("nftables: running inside the namespace: {e}");
        }
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        return;
    }
    nftables_with("libnftables", &|| {
        NftProxier::in_process(Scheduler::RoundRobin)
    });
    nftables_with("nft -f", &|| {
        Ok(NftProxier::new(vec!["nft".into()], Scheduler::RoundRobin))
    });
}

/// The nftables figures with proxiers made by `make`, named `how`.
fn nftables_with(how: &str, make: &dyn Fn() -> Result<NftProxier, String>) {
    println!("nftables, scripts run by {how}:");
    for n in [1_000, 10_000] {
        let mut p = match make() {
            Ok(p) => p,
            Err(e) => {
                println!("nftables: skipped ({e})");
                return;
            }
        };
        let desired = services(n, 10, 0);
        let cpu = cpu_ms();
        let started = Instant::now();
        match p.sync_full(&desired) {
            Ok(_) => println!(
                "nftables: full sync of {n:>6} Services x 10 endpoints: {:>8.1} ms (CPU {:.0} ms)",
                started.elapsed().as_secs_f64() * 1000.0,
                cpu_ms() - cpu
            ),
            Err(e) => println!("nftables: full sync of {n} failed: {e}"),
        }
        if n == 10_000 {
            if how == "libnftables" {
                nft_floor(n);
            }
            // What comparing 10,000 Service ports costs, with nothing to program.
            let mut idle = Vec::new();
            for _ in 0..20 {
                let started = Instant::now();
                if let Err(e) = p.sync(&desired) {
                    println!("nftables: incremental sync failed: {e}");
                    break;
                }
                idle.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            idle.sort_by(f64::total_cmp);
            println!(
                "nftables: no change among {n} (comparing only): p50 {:.2} ms, p99 {:.2} ms",
                percentile(&idle, 0.5),
                percentile(&idle, 0.99)
            );
            let mut times = Vec::new();
            let mut desired = desired;
            let cpu = cpu_ms();
            for round in 0..20u8 {
                let key = ServicePortName {
                    namespace: "bench".into(),
                    name: format!("svc-{}", usize::from(round) * 97),
                    port: "http".into(),
                };
                if let Some(port) = desired.get_mut(&key) {
                    port.endpoints = services(1, 10, round + 1)
                        .into_values()
                        .next()
                        .map(|p| p.endpoints)
                        .unwrap_or_default();
                }
                let started = Instant::now();
                if let Err(e) = p.sync(&desired) {
                    println!("nftables: incremental sync failed: {e}");
                    break;
                }
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            // CPU of this process and its waited-for children, setup included.
            let cpu = (cpu_ms() - cpu) / times.len().max(1) as f64;
            times.sort_by(f64::total_cmp);
            println!(
                "nftables: one changed Service among {n}: p50 {:.1} ms, p99 {:.1} ms ({} changes, CPU {cpu:.1} ms each)",
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                times.len()
            );
            let mut grown = Vec::new();
            for round in 0..20u8 {
                let key = ServicePortName {
                    namespace: "bench".into(),
                    name: format!("svc-{}", usize::from(round) * 89 + 1),
                    port: "http".into(),
                };
                if let Some(port) = desired.get_mut(&key) {
                    let extra = SocketAddr::from(([10, 127, 0, round + 1], 8080));
                    port.endpoints.push(extra);
                }
                let started = Instant::now();
                if let Err(e) = p.sync(&desired) {
                    println!("nftables: incremental sync failed: {e}");
                    break;
                }
                grown.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            grown.sort_by(f64::total_cmp);
            println!(
                "nftables: one Service among {n} gains an endpoint: p50 {:.1} ms, p99 {:.1} ms ({} changes)",
                percentile(&grown, 0.5),
                percentile(&grown, 0.99),
                grown.len()
            );
            let mut added = Vec::new();
            for round in 0..20usize {
                let key = ServicePortName {
                    namespace: "bench".into(),
                    name: format!("svc-{}", n + round),
                    port: "http".into(),
                };
                let Some(port) = services(n + round + 1, 10, 0).remove(&key) else {
                    break;
                };
                desired.insert(key, port);
                let started = Instant::now();
                if let Err(e) = p.sync(&desired) {
                    println!("nftables: incremental sync failed: {e}");
                    break;
                }
                added.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            added.sort_by(f64::total_cmp);
            println!(
                "nftables: one new Service beside {n}: p50 {:.1} ms, p99 {:.1} ms ({} changes)",
                percentile(&added, 0.5),
                percentile(&added, 0.99),
                added.len()
            );
            let cpu = cpu_ms();
            let started = Instant::now();
            match p.sync_full(&desired) {
                Ok(_) => println!(
                    "nftables: full resync replacing the table of {} Services: {:.1} ms (CPU {:.0} ms)",
                    desired.len(),
                    started.elapsed().as_secs_f64() * 1000.0,
                    cpu_ms() - cpu
                ),
                Err(e) => println!("nftables: full resync failed: {e}"),
            }
        }
        p.close();
    }
}

/// What libnftables itself costs per transaction with `n` Services programmed: a
/// command that needs only the list of tables, and replacing one element of the
/// endpoints map (nft 1.0.6 first reads every chain of the ruleset into its cache).
fn nft_floor(n: usize) {
    let mut nft = match Nft::new() {
        Ok(nft) => nft,
        Err(e) => {
            println!("nftables: {e}");
            return;
        }
    };
    let mut time = |script: &dyn Fn(usize) -> String| {
        let mut times: Vec<f64> = (0..20)
            .filter_map(|i| {
                let started = Instant::now();
                nft.run(&script(i))
                    .map_err(|e| println!("nftables: {e}"))
                    .ok()?;
                Some(started.elapsed().as_secs_f64() * 1000.0)
            })
            .collect();
        times.sort_by(f64::total_cmp);
        percentile(&times, 0.5)
    };
    let table = time(&|_| "add table ip kubernel\n".to_string());
    let element = time(&|i| {
        format!(
            "delete element ip kubernel service-endpoints {{ 0x4000 }}\n\
             add element ip kubernel service-endpoints {{ 0x4000 : 10.127.1.{} . 8080 }}\n",
            i + 1
        )
    });
    println!(
        "nftables: libnftables alone among {n}: `add table` p50 {table:.1} ms, one endpoints-map element replaced p50 {element:.1} ms"
    );
}

/// CPU time of this process and of its waited-for children (`nft`), in ms, from
/// /proc/self/stat (10 ms resolution: the kernel counts in ticks of 1/100 s).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    // After the command name: state (not a number, so skipped), then ppid ... with
    // utime, stime, cutime, cstime at positions 10..14 of the numeric fields.
    fields
        .get(10..14)
        .map_or(0.0, |t| t.iter().sum::<f64>() * 10.0)
}

/// A backend answering every 64-byte request with 64 bytes, on 127.0.0.1.
fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Round trips over one connection to `addr`: (requests/s, sorted latencies in µs).
fn round_trips(addr: SocketAddr, n: usize) -> (f64, Vec<f64>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_nodelay(true);
    let buf = [7u8; 64];
    let mut back = [0u8; 64];
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        if s.write_all(&buf).is_err() || s.read_exact(&mut back).is_err() {
            break;
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (rate, lat)
}

fn userspace() {
    let backend = echo_backend();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).unwrap_or_else(|e| panic!("{e}"));
    let node_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().map(|a| a.port()).unwrap_or(0)
    };
    let config = ProxyConfig {
        node_port_addresses: vec!["127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))],
        cluster_ips: kubernel_proxy::config::ClusterIps::False,
        ..ProxyConfig::default()
    };
    let stop = CancellationToken::new();
    let mut proxier = Proxier::new(
        Arc::new(config),
        metrics,
        runtime.handle().clone(),
        stop.clone(),
        None,
    );
    let mut desired = BTreeMap::new();
    desired.insert(
        ServicePortName {
            namespace: "bench".into(),
            name: "echo".into(),
            port: String::new(),
        },
        ServicePort {
            cluster_ip: None,
            port: 80,
            node_port: Some(node_port),
            client_ip_affinity: false,
            endpoints: vec![backend],
        },
    );
    proxier.sync(&desired);
    std::thread::sleep(Duration::from_millis(100));
    let n = 20_000;
    let (direct_rate, direct) = round_trips(backend, n);
    let (proxy_rate, proxied) = round_trips(SocketAddr::from(([127, 0, 0, 1], node_port)), n);
    println!(
        "userspace: 64-byte round trips, one connection: direct {direct_rate:.0}/s (p50 {:.0} µs, p99 {:.0} µs); through the proxy {proxy_rate:.0}/s (p50 {:.0} µs, p99 {:.0} µs); ratio {:.2}, added p99 {:.0} µs",
        percentile(&direct, 0.5),
        percentile(&direct, 0.99),
        percentile(&proxied, 0.5),
        percentile(&proxied, 0.99),
        proxy_rate / direct_rate,
        percentile(&proxied, 0.99) - percentile(&direct, 0.99),
    );
    proxier.close();
    stop.cancel();
}

/// Set in the copy of the benchmark running inside its network namespace.
const IN_NETNS: &str = "KUBERNEL_BENCH_IN_NETNS";

fn main() {
    if std::env::var_os(IN_NETNS).is_none() {
        userspace();
    }
    nftables();
}
