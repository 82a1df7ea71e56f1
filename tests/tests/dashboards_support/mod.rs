//! Reading the Grafana dashboards of `dashboards/`: their panels, PromQL queries
//! and the metric names those use; and the metric families of an exposition.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use kubernel_e2e::workspace;
use serde_json::Value;

/// Prefixes of the metric names the dashboards query: the kernel's, the process
/// collector's and the components' (upstream Kubernetes names). Functions,
/// keywords and label names never start with them.
pub const METRIC_PREFIXES: &[&str] = &[
    "kubernel_",
    "process_",
    "apiserver_",
    "etcd_",
    "scheduler_",
    "workqueue_",
    "rest_client_",
    "leader_election_",
    "node_collector_",
    "node_ipam_",
    "taint_eviction_",
    "garbagecollector_",
    "kubelet_",
    "prober_",
    "kubeproxy_",
    "kube_",
];

/// Every `dashboards/*.json`, parsed, in file name order.
pub fn dashboards() -> Result<Vec<(PathBuf, Value)>> {
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
pub fn panels(parent: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in parent["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panels(panel));
    }
    out
}

/// Where a query is in a dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A panel target.
    Panel,
    /// A query variable.
    Variable,
    /// An annotation query.
    Annotation,
}

/// Every PromQL query of a dashboard: where it is (described), what, and the query.
pub fn queries(dashboard: &Value) -> Vec<(String, Place, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let place = format!("panel {} target {}", panel["title"], target["refId"]);
                out.push((place, Place::Panel, expr.to_string()));
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
                let place = format!("variable {}", variable["name"]);
                out.push((place, Place::Variable, q.to_string()));
            }
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            let place = format!("annotation {}", annotation["name"]);
            out.push((place, Place::Annotation, expr.to_string()));
        }
    }
    out
}

/// The metric names a PromQL expression uses: identifiers with one of
/// [`METRIC_PREFIXES`], outside quoted strings.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
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
pub fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// The family a sample name belongs to: itself, or the histogram or summary it is a
/// `_bucket`, `_sum` or `_count` series of.
pub fn family_of<'a>(name: &'a str, families: &BTreeMap<String, String>) -> Option<&'a str> {
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
