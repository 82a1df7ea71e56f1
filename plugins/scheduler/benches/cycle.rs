//! In-memory benchmark of the scheduling cycle: pods/s and p50/p99 per cycle.
//!
//! `cargo bench -p kubernel-scheduler --bench cycle` (release). For 1,000 and 5,000
//! nodes x 10,000 pods (like scheduler_perf's SchedulingBasic), with the default
//! profile and with each example `.so` scorer added to it, so that the cost of the
//! plugin boundary is visible. No API, no I/O: `schedule_one`, then the binding is
//! confirmed in memory. Printed, not asserted. Arguments: `--nodes N` (repeatable),
//! `--pods M`, `--percentage P` (percentage_of_nodes_to_score), `--parallelism T`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubernel_scheduler::config::SchedulerConfig;
use kubernel_scheduler::core::{ScheduleOutcome, Scheduler};
use kubernel_scheduler::external::register_external;
use kubernel_scheduler::plugins::in_tree_registry;
use kubernel_scheduler::testing::{NodeBuilder, PodBuilder};

/// Directory of this benchmark's profile (`target/release`).
fn target_dir() -> Result<PathBuf, Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target dir")?
        .to_path_buf())
}

/// Path of an example plugin built in this profile (rebuilt first: `cargo bench`
/// does not rebuild other packages' cdylibs).
fn example(crate_name: &str) -> Result<PathBuf, Box<dyn Error>> {
    let path = target_dir()?.join(format!("lib{}.so", crate_name.replace('-', "_")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", crate_name])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!(
            "building {crate_name} failed; using {} as it is",
            path.display()
        );
    }
    if !path.exists() {
        return Err(format!(
            "{} missing: run `cargo build --release --workspace`",
            path.display()
        )
        .into());
    }
    Ok(path)
}

struct Run {
    cycle: Vec<Duration>,
    wall: Duration,
}

/// Options from the command line.
struct Options {
    nodes: Vec<usize>,
    pods: usize,
    global: String,
}

fn config_for(global: &str, scorer: Option<(&str, &Path)>) -> String {
    let profile = match scorer {
        None => String::new(),
        Some((name, path)) => format!(
            "[[profiles]]\nplugins.score.enabled = [{{ name = {name:?}, weight = 1 }}]\n\
             [[external_plugins]]\nname = {name:?}\npath = {:?}\n",
            path.display().to_string()
        ),
    };
    format!("{global}{profile}")
}

fn run(nodes: usize, pods: usize, config: &str, scratch: &Path) -> Result<Run, Box<dyn Error>> {
    let config = SchedulerConfig::from_toml(config, "bench")?;
    let mut registry = in_tree_registry();
    register_external(&mut registry, &config.external_plugins, scratch)?;
    let mut s = Scheduler::new(&config, &registry, &prometheus::Registry::new())?.with_seed(42);
    let t0 = Instant::now();
    for i in 0..nodes {
        let node = NodeBuilder::new(&format!("node-{i:05}"))
            .cpu("32")
            .memory("128Gi")
            .pods(110)
            .label("topology.kubernetes.io/zone", &format!("zone-{}", i % 10))
            .build();
        s.on_node_add(Arc::new(node), t0)?;
    }
    for i in 0..pods {
        let pod = PodBuilder::new(&format!("pod-{i:05}"))
            .cpu("100m")
            .memory("500Mi")
            .label("app", "bench")
            .pod();
        s.on_pod_add(Arc::new(pod), t0)?;
    }
    let mut cycle = Vec::with_capacity(pods);
    let started = Instant::now();
    loop {
        let c = Instant::now();
        let Some(outcome) = s.schedule_one(t0) else {
            break;
        };
        cycle.push(c.elapsed());
        let ScheduleOutcome::Scheduled(sp) = outcome else {
            return Err(format!("unexpected outcome: {outcome:?}").into());
        };
        let mut bound = (*sp.pod.pod).clone();
        if let Some(spec) = bound.spec.as_mut() {
            spec.node_name = Some(sp.node.clone());
        }
        s.finish_binding(*sp, Ok(()), t0);
        s.on_pod_add(Arc::new(bound), t0)?;
    }
    if cycle.len() != pods {
        return Err(format!("scheduled {} of {pods} pods", cycle.len()).into());
    }
    Ok(Run {
        cycle,
        wall: started.elapsed(),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn args() -> Options {
    let mut nodes = Vec::new();
    let mut pods = 10_000;
    let mut global = String::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--percentage" | "--parallelism" => {
                let key = if a == "--percentage" {
                    "percentage_of_nodes_to_score"
                } else {
                    "parallelism"
                };
                if let Some(v) = it.next().and_then(|v| v.parse::<u32>().ok()) {
                    global.push_str(&format!("{key} = {v}\n"));
                }
            }
            "--nodes" => nodes.extend(it.next().and_then(|v| v.parse::<usize>().ok())),
            "--pods" => pods = it.next().and_then(|v| v.parse().ok()).unwrap_or(pods),
            _ => {}
        }
    }
    if nodes.is_empty() {
        nodes = vec![1000, 5000];
    }
    Options {
        nodes,
        pods,
        global,
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let Options {
        nodes: sizes,
        pods,
        global,
    } = args();
    let binpack = example("kubernel-scheduler-binpack")?;
    let spread = example("kubernel-scheduler-zone-spread")?;
    let scratch = std::env::temp_dir().join(format!("kubernel-sched-bench-{}", std::process::id()));
    let profiles: [(&str, Option<(&str, &Path)>); 3] = [
        ("default", None),
        ("default+Binpack.so", Some(("Binpack", &binpack))),
        ("default+ZoneSpread.so", Some(("ZoneSpread", &spread))),
    ];
    println!(
        "scheduling cycle, in memory, {pods} pods (target: 10,000 pods/s at 1,000 nodes) {}",
        global.replace('\n', " ")
    );
    println!(
        "{:>6}  {:<22} {:>13} {:>12} {:>9} {:>9} {:>9}",
        "nodes", "profile", "cycle pods/s", "loop pods/s", "p50 µs", "p99 µs", "vs default"
    );
    for &nodes in &sizes {
        let mut base = None;
        for (label, scorer) in &profiles {
            let r = run(nodes, pods, &config_for(&global, *scorer), &scratch)?;
            let mut sorted = r.cycle.clone();
            sorted.sort();
            let total: Duration = r.cycle.iter().sum();
            let rate = pods as f64 / total.as_secs_f64();
            let p50 = percentile(&sorted, 0.50);
            let ratio = base.map_or(1.0, |b: f64| rate / b);
            base.get_or_insert(rate);
            println!(
                "{nodes:>6}  {label:<22} {rate:>13.0} {:>12.0} {:>9.1} {:>9.1} {ratio:>9.2}",
                pods as f64 / r.wall.as_secs_f64(),
                p50.as_secs_f64() * 1e6,
                percentile(&sorted, 0.99).as_secs_f64() * 1e6,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
