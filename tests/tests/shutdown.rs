//! SIGTERM drains every plugin in reverse start order, then the kernel exits 0.

use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{kernel_section, plugin_entry, Kernel};

#[test]
fn sigterm_should_drain_plugins_in_reverse_order() -> Result<()> {
    let config =
        kernel_section() + &plugin_entry("first", "counter") + &plugin_entry("second", "driver");
    let mut k = Kernel::start(&config, &[])?;
    let status = k.terminate(Duration::from_secs(15))?;
    assert_eq!(status.code(), Some(0), "logs:\n{}", k.logs());
    let logs = k.logs();
    let drained = |name: &str| {
        logs.lines().position(|l| {
            l.contains("\"plugin drained\"") && l.contains(&format!("\"plugin\":\"{name}\""))
        })
    };
    let (first, second) = (drained("first"), drained("second"));
    assert!(first.is_some() && second.is_some(), "both drained:\n{logs}");
    assert!(second < first, "reverse start order:\n{logs}");
    assert!(logs.contains("all plugins drained; exiting"), "{logs}");
    Ok(())
}

fn slow_kernel() -> Result<Kernel> {
    let config = kernel_section()
        + &plugin_entry("slow", "counter")
        + "grace_period = \"1s\"\n[plugin.config]\nquiesce_delay_ms = 8000\n";
    Kernel::start(&config, &[])
}

#[test]
fn drain_deadline_should_not_hold_the_exit() -> Result<()> {
    let mut k = slow_kernel()?;
    let started = std::time::Instant::now();
    let status = k.terminate(Duration::from_secs(15))?;
    assert_eq!(status.code(), Some(0), "{}", k.logs());
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "exited at the grace deadline, not after the plugin"
    );
    assert!(
        k.logs().contains("did not drain within its grace period"),
        "{}",
        k.logs()
    );
    Ok(())
}

#[test]
fn second_signal_should_force_exit() -> Result<()> {
    let mut k = Kernel::start(
        &(kernel_section()
            + &plugin_entry("slow", "counter")
            + "grace_period = \"30s\"\n[plugin.config]\nquiesce_delay_ms = 20000\n"),
        &[],
    )?;
    kubernel_e2e::signal(k.pid(), "TERM");
    k.wait_until(Duration::from_secs(10), "the drain to start", |k| {
        Ok(k.logs().contains("draining plugin"))
    })?;
    let status = k.terminate(Duration::from_secs(10))?;
    assert_eq!(status.code(), Some(1), "{}", k.logs());
    assert!(k.logs().contains("second signal"), "{}", k.logs());
    Ok(())
}
