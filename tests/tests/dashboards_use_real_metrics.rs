//! The Grafana dashboards in `dashboards/` are valid models with Prometheus
//! queries, and the kernel dashboard uses only metrics the kernel exports.
//! `prometheus_dashboards.rs` runs every dashboard's queries on a whole cluster.

mod dashboards_support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use dashboards_support::{dashboards, families, family_of, metric_names, panels, queries};
use kubernel_api::echo::{Add, Panic};
use kubernel_e2e::{kernel_section, kubernel, plugin, plugin_entry, workspace, Kernel};

/// Oldest Grafana dashboard schema accepted (Grafana 12).
const MIN_SCHEMA_VERSION: u64 = 41;

/// The dashboard of the kernel's own metrics, checked against a kernel without components.
const KERNEL_DASHBOARD: &str = "kubernel-kernel.json";

/// Families the kernel exposes only after a failure no test plugin can cause (a
/// plugin whose metrics cannot be gathered): checked against the names declared
/// in `core/kernel/src/metrics.rs` instead of the exposition.
const AFTER_FAILURE_ONLY: &[&str] = &["kubernel_plugin_metrics_errors_total"];

/// A kernel whose counter plugin has handled a message, restarted after a panic and
/// been hot-swapped, so that every labeled kernel family has a series.
fn kernel_with_every_series() -> Result<Kernel> {
    let mut k = Kernel::start(
        &(kernel_section() + &plugin_entry("counter", "counter")),
        &[],
    )?;
    k.ask("counter", &Add { n: 1 })?;

    let panicked = k.request(
        "counter",
        &Panic {
            message: "boom for the dashboards".into(),
        },
    )?;
    if panicked.is_ok() {
        bail!("echo.Panic to counter: answered instead of panicking");
    }
    k.wait_until(Duration::from_secs(10), "the restart", |k| {
        let p = k.plugin("counter")?;
        Ok(p["state"] == "running" && p["restarts"] == 1)
    })?;
    assert_eq!(
        k.metric(r#"kubernel_bus_message_errors_total{status="panicked",to="counter"}"#)?,
        Some(1.0),
        "the panic is a bus error of the counter"
    );

    let data = k.data_dir().display().to_string();
    let next = plugin("counter_next").display().to_string();
    let (status, _, err) = kubernel(&["--data-dir", &data, "swap", "counter", &next], &[])?;
    if !status.success() {
        bail!("kubernel swap counter {next}: {status}: {err}");
    }
    k.ask("counter", &Add { n: 1 })?;
    Ok(k)
}

#[test]
fn metric_names_should_skip_functions_labels_numbers_and_strings() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (to, le) (rate(kubernel_bus_message_duration_seconds_bucket{instance=~"$instance", to!="kubernel_x"}[1m]))) / process_threads"#,
    );
    let expected: BTreeSet<String> = [
        "kubernel_bus_message_duration_seconds_bucket",
        "process_threads",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
    assert_eq!(
        metric_names("label_values(kubernel_plugins, instance)"),
        BTreeSet::from(["kubernel_plugins".to_string()])
    );
}

#[test]
fn dashboards_should_be_grafana_models_with_prometheus_queries() -> Result<()> {
    let mut uids = BTreeSet::new();
    for (path, dashboard) in dashboards()? {
        let file = path.display();
        let uid = dashboard["uid"]
            .as_str()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| anyhow!("{file}: no uid"))?;
        assert!(
            uids.insert(uid.to_string()),
            "{file}: uid {uid:?} used twice"
        );
        let version = dashboard["schemaVersion"]
            .as_u64()
            .ok_or_else(|| anyhow!("{file}: no numeric schemaVersion"))?;
        assert!(
            version >= MIN_SCHEMA_VERSION,
            "{file}: schemaVersion {version} is older than {MIN_SCHEMA_VERSION}"
        );
        let top = dashboard["panels"]
            .as_array()
            .ok_or_else(|| anyhow!("{file}: no panels array"))?;
        assert!(!top.is_empty(), "{file}: panels is empty");
        let mut ids = BTreeSet::new();
        for panel in panels(&dashboard) {
            let id = panel["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("{file}: panel {} has no numeric id", panel["title"]))?;
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{file}: panel {} does not use the datasource variable",
                panel["title"]
            );
            let title = &panel["title"];
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(!targets.is_empty(), "{file}: panel {title} has no targets");
            for target in targets {
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "{file}: panel {title} target {} does not use the datasource variable",
                    target["refId"]
                );
                let expr = target["expr"].as_str().unwrap_or("");
                assert!(
                    !metric_names(expr).is_empty(),
                    "{file}: panel {title} target {}: expr {expr:?} queries no kubernel, process or component metric",
                    target["refId"]
                );
            }
        }
    }
    Ok(())
}

#[test]
fn kernel_dashboard_queries_should_use_only_metrics_the_kernel_exports() -> Result<()> {
    let k = kernel_with_every_series()?;
    let (status, exposition) = k.get("/metrics")?;
    assert_eq!(status, 200, "{exposition}");
    let exported = families(&exposition);
    for family in [
        "kubernel_plugin_restarts_total",
        "kubernel_plugin_swaps_total",
        "kubernel_bus_messages_total",
    ] {
        assert!(
            exported.contains_key(family),
            "the restart, swap and messages gave {family} a series:\n{exposition}"
        );
    }
    let declarations_path = workspace().join("core/kernel/src/metrics.rs");
    let declarations = std::fs::read_to_string(&declarations_path)
        .with_context(|| format!("reading {}", declarations_path.display()))?;

    let mut unknown = Vec::new();
    let kernel_dashboards = dashboards()?
        .into_iter()
        .filter(|(path, _)| path.ends_with(KERNEL_DASHBOARD));
    for (path, dashboard) in kernel_dashboards {
        for (place, _, expr) in queries(&dashboard) {
            for name in metric_names(&expr) {
                let known = family_of(&name, &exported).is_some()
                    || (AFTER_FAILURE_ONLY.contains(&name.as_str())
                        && declarations.contains(&format!("\"{name}\"")));
                if !known {
                    unknown.push(format!("{}: {place}: {name} in {expr:?}", path.display()));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "dashboard queries use metrics the kernel does not export:\n{}\n\nexported families: {:?}",
        unknown.join("\n"),
        exported.keys().collect::<Vec<_>>()
    );
    Ok(())
}
