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
