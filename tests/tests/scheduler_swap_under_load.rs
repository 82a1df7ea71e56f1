//! A scorer `.so` swapped several times while pods are created at a steady rate:
//! every pod is bound exactly once (one `Scheduled` Event per pod uid, folded
//! count 1; the scheduler counted exactly as many scheduled attempts as pods; no
//! binding refused as a double), none is lost, placement follows the library
//! loaded at the time, and every swap is recorded.
//!
//! The profile's external plugin slot is named `Binpack`; the swaps load, in turn,
//! the zone-spread library and a fresh copy of the bin-packing one into it
//! (`kubernel swap scheduler:Binpack PATH`), so packing and spreading phases
//! alternate and can be told apart in the placements.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kubernel_e2e::{component_entry, component_lib, eventually, kubernel, Cluster};
use serde_json::{json, Value};

const NODES: usize = 25;
/// Pods next to a swap (in creation order) may have been placed by either library.
const MARGIN: usize = 40;
/// 2,000 pods over about 20 s.
const PODS: usize = 2000;
const EVERY: Duration = Duration::from_millis(10);
const SWAPS: usize = 5;

fn list(c: &Cluster, path: &str) -> Result<Vec<Value>> {
    let (status, body) = c.get(path)?;
    if status != 200 {
        bail!("GET {path}: {status} {body}");
    }
    let v: Value = serde_json::from_str(&body)?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

/// Sum of the `scheduler_schedule_attempts_total` series with `result`.
fn attempts(metrics: &str, result: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("scheduler_schedule_attempts_total{")
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn every_pod_should_be_bound_exactly_once_while_the_scorer_is_swapped() -> Result<()> {
    let binpack = component_lib("scheduler-binpack");
    let spread = component_lib("scheduler-zone-spread");
    let kubelet = component_entry(
        "kubelet",
        "kubelet",
        &format!("runtime = \"sim\"\nnodes = {NODES}\nlease_renew_interval = \"2s\"\ncapacity = {{ cpu = \"1100m\", memory = \"1760Mi\", pods = \"110\" }}"),
    );
    let scheduler = component_entry(
        "scheduler",
        "scheduler",
        &format!(
            "[[plugin.config.external_plugins]]\nname = \"Binpack\"\npath = \"{}\"\n\
             [[plugin.config.profiles]]\nscheduler_name = \"default-scheduler\"\n\
             plugins.score.enabled = [{{ name = \"Binpack\", weight = 5 }}]\n",
            binpack.display()
        ),
    );
    let c = Cluster::start(&(kubelet + &scheduler))?;
    eventually(Duration::from_secs(60), "simulated nodes", || {
        Ok(list(&c, "/api/v1/nodes")?.len() == NODES)
    })?;
    let data = c.kernel.data_dir().display().to_string();
    let copies = tempfile::tempdir()?;

    let api = c.api.clone();
    let progress = Arc::new(AtomicUsize::new(0));
    let created_so_far = progress.clone();
    let creator = std::thread::spawn(move || -> Result<usize> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let url = format!("{api}/api/v1/namespaces/default/pods");
        let start = Instant::now();
        let mut created = 0;
        for i in 0..PODS {
            let at = start + EVERY * i as u32;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("load-{i}")},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            });
            let resp = agent.post(&url).send_json(&pod)?;
            if resp.status().as_u16() != 201 {
                bail!("creating load-{i}: HTTP {}", resp.status());
            }
            created += 1;
            created_so_far.store(created, Ordering::SeqCst);
        }
        Ok(created)
    });

    // Swap the slot's library during the load: zone-spread, bin-packing, ... (a fresh
    // copy each time, as after a rebuild). `edges` are the creation counts at each swap.
    let mut edges = vec![0];
    for n in 0..SWAPS {
        std::thread::sleep(PODS as u32 * EVERY / (SWAPS as u32 + 1));
        let (lib, kind) = if n % 2 == 0 {
            (&spread, "spread")
        } else {
            (&binpack, "binpack")
        };
        let copy = copies.path().join(format!("{kind}-{n}.so"));
        std::fs::copy(lib, &copy)?;
        let (status, out, err) = kubernel(
            &[
                "--data-dir",
                &data,
                "swap",
                "scheduler:Binpack",
                &copy.display().to_string(),
            ],
            &[],
        )?;
        assert!(status.success(), "swap {n}: {out}{err}");
        assert!(out.contains("scheduler plugin Binpack now runs"), "{out}");
        edges.push(progress.load(Ordering::SeqCst));
    }
    let created = match creator.join() {
        Ok(r) => r?,
        Err(_) => bail!("the creating thread panicked"),
    };
    assert_eq!(created, PODS);
    edges.push(PODS);

    eventually(Duration::from_secs(120), "every pod bound", || {
        let pods = list(&c, "/api/v1/namespaces/default/pods")?;
        let bound = pods
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
            })
            .count();
        Ok(pods.len() == PODS && bound == PODS)
    })?;
    let pods = list(&c, "/api/v1/namespaces/default/pods")?;
    let node_of: HashMap<String, String> = pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    // Placement follows the library of each phase: bin-packing puts consecutive
    // pods on the same node (until it is full), spreading never twice in a row.
    let by_name: HashMap<&str, &str> = pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or_default(),
                p["spec"]["nodeName"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let node_at = |i: usize| by_name.get(format!("load-{i}").as_str()).copied();
    for (phase, w) in edges.windows(2).enumerate() {
        let (from, to) = (w[0] + MARGIN, w[1].saturating_sub(MARGIN));
        if to <= from + 10 {
            continue;
        }
        let same = (from..to - 1)
            .filter(|&i| node_at(i).is_some() && node_at(i) == node_at(i + 1))
            .count() as f64
            / (to - 1 - from) as f64;
        eprintln!("phase {phase}, pods {from}..{to}: {same:.2} of consecutive pods share a node");
        if phase % 2 == 0 {
            assert!(same >= 0.6, "phase {phase} (binpack, pods {from}..{to}): only {same:.2} of consecutive pods share a node");
        } else {
            assert!(same <= 0.3, "phase {phase} (spread, pods {from}..{to}): {same:.2} of consecutive pods share a node");
        }
    }

    // One Scheduled Event per pod, never repeated, naming the node the pod is on.
    let mut per_pod: HashMap<String, usize> = HashMap::new();
    eventually(Duration::from_secs(60), "a Scheduled event per pod", || {
        per_pod.clear();
        for e in list(
            &c,
            "/api/v1/namespaces/default/events?fieldSelector=reason%3DScheduled",
        )? {
            let uid = e["involvedObject"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let count = e["count"].as_u64().unwrap_or(1) as usize;
            let msg = e["message"].as_str().unwrap_or_default();
            let node = node_of.get(&uid).map(String::as_str).unwrap_or("?");
            assert!(
                msg.ends_with(&format!(" to {node}")),
                "{msg} (pod on {node})"
            );
            *per_pod.entry(uid).or_default() += count;
        }
        Ok(per_pod.len() == PODS)
    })?;
    let twice: Vec<_> = per_pod.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "pods scheduled more than once: {twice:?}");
    let refused = list(
        &c,
        "/api/v1/namespaces/default/events?fieldSelector=reason%3DFailedScheduling",
    )?;
    assert!(
        refused.iter().all(|e| !e["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Binding rejected")),
        "no binding refused: {refused:?}"
    );
    let metrics = c.kernel.get("/metrics")?.1;
    assert_eq!(
        attempts(&metrics, "scheduled"),
        PODS as f64,
        "scheduled attempts"
    );
    let swaps: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("kubernel_scheduler_plugin_swaps_total{")
                && l.contains("Binpack")
                && l.contains("result=\"success\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(swaps >= SWAPS as f64, "swaps counted: {swaps}");
    let swapped = list(
        &c,
        "/api/v1/namespaces/kube-system/events?fieldSelector=reason%3DPluginSwapped",
    )?;
    assert!(!swapped.is_empty(), "PluginSwapped events");
    Ok(())
}
