//! Hot swaps under a steady message stream: every message answered exactly once, state carried over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use kubernel_api::echo::{Add, GetCount};
use kubernel_e2e::{kernel_section, kubernel, plugin, plugin_entry, Kernel};

const MESSAGES: usize = 10_000;
const THREADS: usize = 4;

fn swap(k: &Kernel, lib: &str) -> Result<()> {
    let data = k.data_dir();
    let path = plugin(lib);
    let (status, out, err) = kubernel(
        &[
            "--data-dir",
            &data.display().to_string(),
            "swap",
            "counter",
            &path.display().to_string(),
        ],
        &[],
    )?;
    if !status.success() {
        return Err(anyhow!("swap to {lib} failed: {err}"));
    }
    assert!(out.starts_with("swapped counter: "), "{out}");
    Ok(())
}

/// Runs `work(i)` for i in 0..MESSAGES over THREADS threads while swapping twice.
fn under_two_swaps(
    k: &Arc<Kernel>,
    work: impl Fn(&Kernel) -> Result<u64> + Send + Sync + 'static,
) -> Result<Vec<u64>> {
    let done = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (k, done, work) = (k.clone(), done.clone(), work.clone());
            std::thread::spawn(move || -> Result<Vec<u64>> {
                let mut replies = Vec::new();
                for _ in 0..MESSAGES / THREADS {
                    replies.push(work(&k)?);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(replies)
            })
        })
        .collect();
    let wait_for = |n: usize| {
        while done.load(Ordering::Relaxed) < n && workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    wait_for(MESSAGES / 5);
    swap(k, "counter_next")?;
    wait_for(MESSAGES / 2);
    // The same build again: a fresh copy of the library and a fresh instance.
    swap(k, "counter_next")?;
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().map_err(|_| anyhow!("worker panicked"))??);
    }
    Ok(all)
}

fn counter_kernel() -> Result<Arc<Kernel>> {
    Ok(Arc::new(Kernel::start(
        &(kernel_section() + &plugin_entry("counter", "counter")),
        &[],
    )?))
}

#[test]
fn requests_during_two_swaps_should_each_be_answered_once() -> Result<()> {
    let k = counter_kernel()?;
    let mut totals = under_two_swaps(&k, |k| k.ask("counter", &Add { n: 1 }))?;
    totals.sort_unstable();
    let expected: Vec<u64> = (1..=MESSAGES as u64).collect();
    assert!(
        totals == expected,
        "each Add answered exactly once with a distinct running total"
    );
    let count = k.ask("counter", &GetCount)?;
    assert_eq!(
        (count.total, count.adds, count.version.as_str()),
        (MESSAGES as u64, MESSAGES as u64, "0.2.0")
    );
    assert_eq!(
        k.metric("kubernel_plugin_swaps_total{name=\"counter\",result=\"success\"}")?,
        Some(2.0)
    );
    assert_eq!(
        k.metric("kubernel_plugin_swap_pause_seconds_count")?,
        Some(2.0)
    );
    Ok(())
}

#[test]
fn sends_during_two_swaps_should_each_be_handled_once() -> Result<()> {
    let k = counter_kernel()?;
    under_two_swaps(&k, |k| k.send("counter", &Add { n: 1 }).map(|_| 0))?;
    let mut k = Arc::try_unwrap(k).map_err(|_| anyhow!("kernel still shared"))?;
    k.wait_until(Duration::from_secs(20), "the mailbox to drain", |k| {
        Ok(k.ask("counter", &GetCount)?.adds >= MESSAGES as u64)
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let count = k.ask("counter", &GetCount)?;
    assert_eq!(
        (count.total, count.adds),
        (MESSAGES as u64, MESSAGES as u64),
        "no send lost or handled twice"
    );
    Ok(())
}

#[test]
fn failed_swap_should_roll_back_and_keep_the_plugin_running() -> Result<()> {
    let mut k = Kernel::start(
        &(kernel_section() + &plugin_entry("counter", "counter")),
        &[],
    )?;
    k.ask("counter", &Add { n: 7 })?;

    // A library that is not a plugin: refused, the running instance untouched.
    let data = k.data_dir().display().to_string();
    let bogus = plugin("not_a_plugin").display().to_string();
    let (status, _, err) = kubernel(&["--data-dir", &data, "swap", "counter", &bogus], &[])?;
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("not a kubernel plugin: no descriptor symbol KUBERNEL_PLUGIN"),
        "{err}"
    );
    assert!(
        err.contains("libkubernel_test_not_a_plugin.so"),
        "names the file: {err}"
    );

    // A new build whose restore fails (path and config changed in the watched
    // config file; a config-only change would be applied in place): rolled back.
    let config = std::fs::read_to_string(k.config_path())?;
    let current = plugin("counter").display().to_string();
    let next = plugin("counter_next").display().to_string();
    std::fs::write(
        k.config_path(),
        format!(
            "{}[plugin.config]\nfail_restore = \"refusing old state\"\n",
            config.replace(&current, &next)
        ),
    )?;
    k.wait_until(Duration::from_secs(10), "the rolled-back swap", |k| {
        Ok(
            k.metric("kubernel_plugin_swaps_total{name=\"counter\",result=\"rolled_back\"}")?
                == Some(1.0),
        )
    })?;
    assert!(
        k.logs().contains("refusing old state"),
        "the plugin's message is logged"
    );
    let count = k.ask("counter", &GetCount)?;
    assert_eq!((count.total, count.version.as_str()), (7, "0.1.0"));
    assert_eq!(k.plugin("counter")?["state"], "running");
    assert_eq!(
        k.metric("kubernel_plugin_swaps_total{name=\"counter\",result=\"load_failed\"}")?,
        Some(1.0)
    );

    // Editing the plugin's path in the config file swaps it.
    std::fs::write(k.config_path(), config.replace(&current, &next))?;
    k.wait_until(Duration::from_secs(10), "the config-driven swap", |k| {
        Ok(k.plugin("counter")?["version"] == "0.2.0")
    })?;
    assert_eq!(
        k.ask("counter", &GetCount)?.total,
        7,
        "state carried into the new build"
    );

    // Back to the old build: it cannot read the newer snapshot format, so the swap rolls back.
    let (status, _, err) = kubernel(&["--data-dir", &data, "swap", "counter", &current], &[])?;
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("rolled back: restore into the new instance failed"),
        "{err}"
    );
    assert!(
        err.contains("snapshot state version 2 is newer than this build's 1"),
        "{err}"
    );
    assert_eq!(k.ask("counter", &GetCount)?.version, "0.2.0");
    Ok(())
}
