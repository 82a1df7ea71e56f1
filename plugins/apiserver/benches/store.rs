//! Measures the embedded store: concurrent creates/s, get and list latency, reopen time.
//!
//! `cargo bench -p kubernel-apiserver --bench store`; the database
//! goes to a temporary directory under `$STORE_BENCH_DIR` (default: the system's).

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubernel_apiserver::store::embedded::EmbeddedStore;
use kubernel_apiserver::store::CacheOptions;
use kubernel_apiserver::store::{ListOptions, Store};
use serde_json::{json, Value};

/// Objects created.
const CREATES: usize = 50_000;
/// Concurrent writer tasks.
const TASKS: usize = 32;
/// Namespaces the pods spread over (so one namespace holds `CREATES / NAMESPACES` keys).
const NAMESPACES: usize = 5;
/// Gets timed.
const GETS: usize = 200_000;
/// Lists of one namespace timed.
const LISTS: usize = 20;

/// A pod-like object of about 1 KB.
fn pod(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("{:0>36}", name),
            "labels": {"app": "bench", "pod-template-hash": "5d4f8c7b9"},
            "annotations": {"kubernel.io/padding": "x".repeat(300)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bench-5d4f8c7b9", "uid": "0", "controller": true}],
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "env": [{"name": "MODE", "value": "bench"}, {"name": "LEVEL", "value": "info"}],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            }],
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30,
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    })
}

/// The key of pod `i`.
fn key(i: usize) -> String {
    format!("pods/ns{}/pod-{i:06}", i % NAMESPACES)
}

/// The `q` quantile of sorted durations, in microseconds.
fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let base = std::env::var_os("STORE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(&base)?;
    let store = Arc::new(EmbeddedStore::open(dir.path(), CacheOptions::default())?);
    let size = serde_json::to_vec(&pod("ns0", "pod-000000"))?.len();
    println!(
        "store_bench: {CREATES} creates of {size}-byte pods from {TASKS} tasks in {}",
        dir.path().display()
    );

    let started = Instant::now();
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (task..CREATES).step_by(TASKS) {
                    let key = key(i);
                    let object = pod(&format!("ns{}", i % NAMESPACES), &key);
                    let begun = Instant::now();
                    store.create(&key, object).await?;
                    latencies.push(begun.elapsed());
                }
                Ok::<_, kubernel_apiserver::store::StoreError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(CREATES);
    for writer in writers {
        latencies.extend(writer.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let batches = store.commit_batches();
    println!(
        "create: {:.0}/s ({CREATES} in {:.2} s), {batches} commits = {:.1} writes/fsync, latency p50 {:.0} us p99 {:.0} us",
        CREATES as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        CREATES as f64 / batches.max(1) as f64,
        quantile_us(&latencies, 0.5),
        quantile_us(&latencies, 0.99),
    );

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut gets = Vec::with_capacity(GETS);
    let started = Instant::now();
    for _ in 0..GETS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = key((seed % CREATES as u64) as usize);
        let begun = Instant::now();
        let found = store.get(&key)?;
        gets.push(begun.elapsed());
        if found.is_none() {
            return Err(format!("{key} missing").into());
        }
    }
    let elapsed = started.elapsed();
    gets.sort();
    println!(
        "get: {:.0}/s on one thread, p50 {:.2} us p99 {:.2} us",
        GETS as f64 / elapsed.as_secs_f64(),
        quantile_us(&gets, 0.5),
        quantile_us(&gets, 0.99),
    );

    let opts = ListOptions {
        prefix: "pods/ns0/".into(),
        ..ListOptions::default()
    };
    let mut lists = Vec::with_capacity(LISTS);
    let mut items = 0;
    for _ in 0..LISTS {
        let begun = Instant::now();
        items = store.list(&opts)?.items.len();
        lists.push(begun.elapsed());
    }
    lists.sort();
    let paged = ListOptions {
        limit: Some(500),
        ..opts.clone()
    };
    let begun = Instant::now();
    let page = store.list(&paged)?;
    let first_page = begun.elapsed();
    println!(
        "list: {items} keys p50 {:.2} ms max {:.2} ms; first page of 500 {:.0} us ({} remaining)",
        quantile_us(&lists, 0.5) / 1e3,
        quantile_us(&lists, 1.0) / 1e3,
        first_page.as_secs_f64() * 1e6,
        page.remaining,
    );

    let stats = store.stats();
    drop(store);
    let begun = Instant::now();
    let reopened = EmbeddedStore::open(dir.path(), CacheOptions::default())?;
    println!(
        "reopen: {} keys at revision {} in {:.0} ms; file {:.1} MB",
        reopened.stats().keys,
        reopened.revision(),
        begun.elapsed().as_secs_f64() * 1e3,
        stats.db_size_bytes as f64 / 1e6,
    );
    Ok(())
}
