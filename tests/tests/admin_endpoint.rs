//! The admin endpoint: one metrics exposition, Kubernetes-style health checks, the plugin list.

use anyhow::Result;
use kubernel_api::echo::Add;
use kubernel_e2e::{kernel_section, kubernel, plugin_entry, Kernel};

fn kernel() -> Result<Kernel> {
    Kernel::start(
        &(kernel_section()
            + &plugin_entry("counter", "counter")
            + &plugin_entry("other", "counter")),
        &[],
    )
}

#[test]
fn metrics_should_merge_kernel_and_plugin_metrics() -> Result<()> {
    let k = kernel()?;
    k.ask("counter", &Add { n: 1 })?;
    let (status, body) = k.get("/metrics")?;
    assert_eq!(status, 200);
    for series in [
        "kubernel_plugins{kind=\"echo\",name=\"counter\",state=\"running\",version=\"0.1.0\"} 1",
        "echo_messages_handled_total{plugin=\"counter\"} 1",
        "echo_messages_handled_total{plugin=\"other\"} 0",
        "kubernel_mailbox_depth{name=\"counter\"} 0",
        "kubernel_bus_messages_total{from=\"admin\",kind=\"echo.Add\",to=\"counter\"} 1",
    ] {
        assert!(body.contains(series), "missing {series} in:\n{body}");
    }
    assert!(
        body.contains("process_resident_memory_bytes "),
        "process metrics"
    );
    // Two plugins export the same metric name: one HELP/TYPE block, both samples.
    let help_lines = body
        .lines()
        .filter(|l| l.starts_with("# HELP echo_messages_handled_total "))
        .count();
    assert_eq!(help_lines, 1, "one family per name:\n{body}");
    let mut names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "no duplicated families");
    Ok(())
}

#[test]
fn health_endpoints_should_answer_like_kubernetes_components() -> Result<()> {
    let k = kernel()?;
    assert_eq!(k.get("/healthz")?, (200, "ok".to_string()));
    assert_eq!(k.get("/livez")?, (200, "ok".to_string()));
    assert_eq!(k.get("/readyz")?, (200, "ok".to_string()));
    let (status, body) = k.get("/readyz?verbose")?;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "[+]ping ok\n[+]plugin/counter ok\n[+]plugin/other ok\nreadyz check passed\n"
    );
    let (status, body) = k.get("/readyz?verbose&exclude=plugin/other")?;
    assert_eq!(status, 200);
    assert!(!body.contains("plugin/other"), "{body}");
    assert_eq!(k.get("/readyz/plugin/counter")?, (200, "ok".to_string()));
    assert_eq!(k.get("/readyz/plugin/nope")?.0, 404);
    Ok(())
}

#[test]
fn kubernel_plugins_should_list_each_plugin() -> Result<()> {
    let k = kernel()?;
    let data = k.data_dir().display().to_string();
    let (status, out, err) = kubernel(&["--data-dir", &data, "plugins"], &[])?;
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "KIND", "VERSION", "STATE", "RESTARTS", "UPTIME", "PATH"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..5], ["counter", "echo", "0.1.0", "running", "0"]);
    assert!(row[6].ends_with("libkubernel_test_counter.so"), "{out}");

    let (status, out, _) = kubernel(&["--data-dir", &data, "plugins", "-o", "json"], &[])?;
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(json[1]["name"], "other");

    let (status, _, err) = kubernel(&["plugins", "--admin-addr", "127.0.0.1:1"], &[])?;
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("cannot reach the admin endpoint at http://127.0.0.1:1"),
        "{err}"
    );
    Ok(())
}
