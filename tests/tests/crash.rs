//! A plugin that panics is restarted from its last snapshot; the others keep running.

use std::time::Duration;

use anyhow::Result;
use kubernel_api::echo::{Add, Echo, GetCount, Panic, SharedPanic};
use kubernel_e2e::{kernel_section, plugin_entry, Kernel};

fn cluster() -> Result<Kernel> {
    let config = kernel_section()
        + &plugin_entry("counter", "counter")
        + &plugin_entry("bystander", "counter");
    Kernel::start(&config, &[])
}

fn restarted(k: &mut Kernel, name: &str, restarts: u64) -> Result<()> {
    k.wait_until(Duration::from_secs(10), "the restart", |k| {
        let p = k.plugin(name)?;
        Ok(p["state"] == "running" && p["restarts"] == restarts)
    })
}

#[test]
fn panicking_plugin_should_restart_with_its_state() -> Result<()> {
    let mut k = cluster()?;
    for _ in 0..5 {
        k.ask("counter", &Add { n: 3 })?;
    }
    // Let a snapshot (every 50 ms here) capture the state.
    std::thread::sleep(Duration::from_millis(300));

    let err = k
        .request(
            "counter",
            &Panic {
                message: "boom on demand".into(),
            },
        )?
        .expect_err("panics");
    assert_eq!(err.status, "panicked");
    assert!(err.message.contains("boom on demand"), "{}", err.message);
    // The other plugin is unaffected while the counter waits out its backoff.
    assert_eq!(
        k.ask(
            "bystander",
            &Echo {
                text: "still here".into()
            }
        )?
        .text,
        "still here"
    );

    restarted(&mut k, "counter", 1)?;
    assert_eq!(
        k.ask("counter", &GetCount)?.total,
        15,
        "state restored from the snapshot"
    );
    assert_eq!(
        k.metric("kubernel_plugin_restarts_total{name=\"counter\"}")?,
        Some(1.0)
    );
    assert_eq!(
        k.metric(
            "kubernel_plugin_load_duration_seconds_count{name=\"counter\",reason=\"restart\"}"
        )?,
        Some(1.0)
    );
    assert_eq!(
        k.metric("kubernel_plugin_load_duration_seconds_count{name=\"counter\",reason=\"start\"}")?,
        Some(1.0)
    );
    let logs = k.logs();
    assert!(
        logs.contains("boom on demand") && logs.contains("\"plugin\":\"counter\""),
        "panic logged with the plugin name:\n{logs}"
    );
    Ok(())
}

#[test]
fn messages_queued_behind_a_crash_should_be_delivered_after_restart() -> Result<()> {
    let mut k = cluster()?;
    k.ask("counter", &Add { n: 100 })?;
    std::thread::sleep(Duration::from_millis(300));
    k.send(
        "counter",
        &Panic {
            message: "queued boom".into(),
        },
    )?;
    for _ in 0..20 {
        k.send("counter", &Add { n: 1 })?;
    }
    restarted(&mut k, "counter", 1)?;
    k.wait_until(Duration::from_secs(10), "the queued adds", |k| {
        Ok(k.ask("counter", &GetCount)?.adds >= 21)
    })?;
    let count = k.ask("counter", &GetCount)?;
    assert_eq!(
        count.total, 120,
        "every queued message delivered once, after the restart"
    );
    Ok(())
}

#[test]
fn a_panic_in_a_shared_handler_should_restart_the_plugin_like_one_in_handle() -> Result<()> {
    let mut k = cluster()?;
    k.ask("counter", &Add { n: 4 })?;
    std::thread::sleep(Duration::from_millis(300));
    // Echo goes through the shared handler, many at once.
    let shared = &k;
    let echoes: Vec<String> = std::thread::scope(|s| {
        let askers: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || {
                    shared.ask(
                        "counter",
                        &Echo {
                            text: format!("e{i}"),
                        },
                    )
                })
            })
            .collect();
        askers
            .into_iter()
            .map(|a| match a.join() {
                Ok(answer) => answer.map(|e| e.text),
                Err(_) => Err(anyhow::anyhow!("an asking thread panicked")),
            })
            .collect::<Result<_>>()
    })?;
    assert_eq!(echoes, (0..8).map(|i| format!("e{i}")).collect::<Vec<_>>());
    let err = k
        .request(
            "counter",
            &SharedPanic {
                message: "shared boom".into(),
            },
        )?
        .expect_err("panics");
    assert_eq!(err.status, "panicked");
    assert!(err.message.contains("shared boom"), "{}", err.message);
    restarted(&mut k, "counter", 1)?;
    assert_eq!(k.ask("counter", &GetCount)?.total, 4, "state restored");
    assert_eq!(
        k.ask(
            "counter",
            &Echo {
                text: "back".into()
            }
        )?
        .text,
        "back"
    );
    Ok(())
}
