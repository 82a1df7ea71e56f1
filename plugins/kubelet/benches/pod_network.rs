//! Pod network benchmark (root): what the bridge network costs a pod. Inside a network
//! namespace of its own (the benchmark runs itself again there), attaches `PODS` pod
//! namespaces to a bridge through the CNI plugins (bridge + host-local + loopback, as
//! the kubelet does for each pod), one after another, then detaches them; as the
//! baseline, creates and deletes as many bare named namespaces (`ip netns add/del`).
//! Prints percentiles and the ratio to the baseline.
//!
//! ```text
//! cargo bench -p kubernel-kubelet --bench pod_network          # 50 pods
//! cargo bench -p kubernel-kubelet --bench pod_network -- 200
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use kubernel_kubelet::cidr::Ipv4Cidr;
use kubernel_kubelet::runtime::pod_network::PodNetwork;

const INSIDE: &str = "KUBERNEL_BENCH_IN_NETNS";

fn main() {
    let pods: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(50)
        .clamp(1, 250);
    if !rustix::process::geteuid().is_root() {
        return println!("pod_network bench: skipped, needs root (network namespaces)");
    }
    if std::env::var_os(INSIDE).is_none() {
        if let Err(e) = in_own_netns(pods) {
            eprintln!("pod_network bench: {e}");
        }
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("pod_network bench: tokio runtime: {e}"),
    };
    if let Err(e) = rt.block_on(run(pods)) {
        eprintln!("pod_network bench: {e}");
    }
}

/// Runs this benchmark again inside a new network namespace, then deletes it.
fn in_own_netns(pods: usize) -> Result<(), String> {
    let ns = format!("kubernel-bench-net-{}", std::process::id());
    ip(&["netns", "add", &ns])?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .arg(pods.to_string())
        .env(INSIDE, "1")
        .status();
    let deleted = ip(&["netns", "del", &ns]);
    status.map_err(|e| e.to_string())?;
    deleted
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn run(pods: usize) -> Result<(), String> {
    ip(&["link", "set", "lo", "up"])?;
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let node = format!("bench{}", std::process::id());
    let network = PodNetwork::new(
        "/usr/lib/cni".into(),
        data.path().to_path_buf(),
        "kbench0".into(),
        &node,
    )?;
    let cidr: Ipv4Cidr = "10.99.0.0/24".parse().map_err(|e| format!("{e}"))?;
    let names: Vec<String> = (0..pods)
        .map(|i| network.netns_name(&format!("pod{i}"), "1"))
        .collect();

    let mut attach = Vec::new();
    for n in &names {
        let started = Instant::now();
        network.attach(n, cidr).await?;
        attach.push(started.elapsed());
    }
    let mut detach = Vec::new();
    for n in &names {
        let started = Instant::now();
        network.detach(n, Some(cidr)).await;
        detach.push(started.elapsed());
    }
    let mut baseline = Vec::new();
    for n in &names {
        let started = Instant::now();
        ip(&["netns", "add", n])?;
        ip(&["netns", "del", n])?;
        baseline.push(started.elapsed());
    }
    println!("pod network, {pods} pods one after another (CNI bridge + host-local + loopback):");
    let (a, d, b) = (
        summary(&mut attach),
        summary(&mut detach),
        summary(&mut baseline),
    );
    println!("  attach (netns + CNI ADD)   {a}");
    println!("  detach (CNI DEL + netns)   {d}");
    println!("  baseline ip netns add+del  {b}");
    println!(
        "  attach+detach / baseline, at p50: {:.1}x",
        (median(&attach) + median(&detach)).as_secs_f64()
            / median(&baseline).as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// Sorts `d` and formats p50, p90, p99 and max in milliseconds.
fn summary(d: &mut [Duration]) -> String {
    d.sort();
    let at = |q: f64| {
        let i = ((d.len() as f64 - 1.0) * q).round() as usize;
        d.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
    };
    format!(
        "p50 {:6.2} ms  p90 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}
