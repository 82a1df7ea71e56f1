//! The Grafana dashboards in `dashboards/` are valid models whose queries use only metrics the kernel exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use kubernel_api::echo::{Add, Panic};
use kubernel_e2e::{kernel_section, kubernel, plugin, plugin_entry, workspace, Kernel};
use serde_json::Value;

/// Oldest Grafana dashboard schema accepted (Grafana 11).
const MIN_SCHEMA_VERSION: u64 = 39;

/// Families the kernel exposes only after a failure no test plugin can cause (a
/// plugin whose metrics cannot be gathered): checked against the names declared
/// in `core/kernel/src/metrics.rs` instead of the exposition.
const AFTER_FAILURE_ONLY: &[&str] = &["kubernel_plugin_metrics_errors_total"];

/// Prefixes of the metric names queried: the kernel's and the process collector's.
/// Functions, keywords and label names never start with them.
const METRIC_PREFIXES: &[&str] = &["kubernel_", "process_"];

/// Every `dashboards/*.json`, parsed, in file name order.
fn dashboards() -> Result<Vec<(PathBuf, Value)>> {
    let dir = workspace().join("dashboards");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    if paths.is_empty() {
        bail!("{}: no dashboards (*.json)", dir.display());
    }
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))?;
            Ok((path, json))
        })
        .collect()
}

/// Every panel of a dashboard, including those nested in collapsed rows.
fn panels(parent: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in parent["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panels(panel));
    }
    out
}

/// Every PromQL query of a dashboard, with where it is: panel targets and query variables.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let place = format!("panel {} target {}", panel["title"], target["refId"]);
                out.push((place, expr.to_string()));
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = &variable["query"];
        if let Some(q) = query.as_str().or_else(|| query["query"].as_str()) {
            if variable["type"] == "query" {
                out.push((format!("variable {}", variable["name"]), q.to_string()));
            }
        }
    }
    out
}

/// The metric names a PromQL expression uses: identifiers with a kernel or process
/// prefix, outside quoted strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                match d {
                    _ if escaped => escaped = false,
                    '\\' if c != '`' => escaped = true,
                    _ if d == c => break,
                    _ => {}
                }
            }
        } else if is_start(c) {
            let mut end = start + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if !is_part(d) {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
            let ident = &expr[start..end];
            if METRIC_PREFIXES.iter().any(|p| ident.starts_with(p)) {
                names.insert(ident.to_string());
            }
        } else if c.is_ascii_digit() || c == '$' {
            // Numbers (`0.99`, `1e-3`) and variables (`$instance`) are not names.
            while chars.peek().is_some_and(|&(_, d)| is_part(d) || d == '.') {
                chars.next();
            }
        }
    }
    names
}

/// Metric families of a text exposition: name -> type, from the `# TYPE` lines.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// The family a sample name belongs to: itself, or the histogram or summary it is a
/// `_bucket`, `_sum` or `_count` series of.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, String>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ]
    .into_iter()
    .find_map(|(suffix, kinds)| {
        let base = name.strip_suffix(suffix)?;
        let kind = families.get(base)?;
        kinds.contains(&kind.as_str()).then_some(base)
    })
}

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
        for panel in panels(&dashboard) {
            if panel["type"] == "row" {
                continue;
            }
            let title = &panel["title"];
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(!targets.is_empty(), "{file}: panel {title} has no targets");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or("");
                assert!(
                    !metric_names(expr).is_empty(),
                    "{file}: panel {title} target {}: expr {expr:?} queries no kubernel or process metric",
                    target["refId"]
                );
            }
        }
    }
    Ok(())
}

#[test]
fn dashboard_queries_should_use_only_metrics_the_kernel_exports() -> Result<()> {
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
    for (path, dashboard) in dashboards()? {
        for (place, expr) in queries(&dashboard) {
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
