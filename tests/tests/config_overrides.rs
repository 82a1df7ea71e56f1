//! Environment variables override config keys; bad config is refused naming file, key and value.

use anyhow::Result;
use kubernel_api::echo::GetCount;
use kubernel_e2e::{kernel_section, plugin_entry, run_refused, Kernel};

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[test]
fn environment_should_override_config_keys() -> Result<()> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let k = Kernel::start(
        &(kernel_section() + &plugin_entry("counter", "counter")),
        &[
            ("KUBERNEL_KERNEL__ADMIN_ADDR", &addr),
            ("KUBERNEL_PLUGIN__COUNTER__CONFIG__START", "100"),
        ],
    )?;
    assert_eq!(k.admin, format!("http://{addr}"));
    assert_eq!(k.ask("counter", &GetCount)?.total, 100);
    Ok(())
}

#[test]
fn bad_config_should_be_refused_naming_file_and_key() -> Result<()> {
    let (code, err) = run_refused("[kernel]\nadmn_addr = \"127.0.0.1:1\"\n", &[])?;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("kubernel.toml: kernel") && err.contains("unknown field `admn_addr`"),
        "{err}"
    );

    let (code, err) = run_refused("[kernel]\nrequest_timeout = 5\n", &[])?;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("kernel.request_timeout: invalid type: integer `5`"),
        "{err}"
    );

    let (code, err) = run_refused(
        &kernel_section(),
        &[("KUBERNEL_KERNEL__SHUTDOWN_GRACE", "forever")],
    )?;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("kernel.shutdown_grace")
            && err.contains("(set by environment variable KUBERNEL_KERNEL__SHUTDOWN_GRACE)"),
        "{err}"
    );

    let (code, err) = run_refused(&kernel_section(), &[("KUBERNEL_KERNL__X", "1")])?;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("environment variable KUBERNEL_KERNL__X: no config section \"KERNL\""),
        "{err}"
    );

    let (code, err) = run_refused("[kernel\n", &[])?;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("kubernel.toml: ") && err.contains("line 1"),
        "{err}"
    );

    let (code, err) = run_refused(&kernel_section(), &[("RUST_LOG", "kubernel=lots")])?;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("RUST_LOG: invalid filter \"kubernel=lots\""),
        "{err}"
    );
    Ok(())
}

#[test]
fn missing_config_file_should_be_refused() -> Result<()> {
    let (status, _, err) =
        kubernel_e2e::kubernel(&["run", "--config", "/nonexistent/lab.toml"], &[])?;
    assert_eq!(status.code(), Some(2));
    assert!(
        err.contains("/nonexistent/lab.toml: No such file or directory"),
        "{err}"
    );
    Ok(())
}

/// `THP_enabled` of the kernel process, from `/proc/<pid>/status` (Linux 5.0 and later).
fn thp_enabled(k: &Kernel) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", k.pid()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| anyhow::anyhow!("no THP_enabled line in /proc/{}/status", k.pid()))
}

#[test]
fn transparent_huge_pages_should_be_off_unless_the_config_allows_them() -> Result<()> {
    let config = kernel_section() + &plugin_entry("counter", "counter");
    let k = Kernel::start(&config, &[])?;
    assert_eq!(thp_enabled(&k)?, "0", "off by default");
    drop(k);
    let k = Kernel::start(
        &config,
        &[("KUBERNEL_KERNEL__TRANSPARENT_HUGE_PAGES", "true")],
    )?;
    assert_eq!(
        thp_enabled(&k)?,
        "1",
        "kernel.transparent_huge_pages = true"
    );
    Ok(())
}
