//! Client subcommands that talk to a running kernel's admin endpoint.

use std::path::Path;

use serde::Deserialize;

/// Output format of `kubernel plugins`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The admin endpoint's JSON.
    Json,
}

/// Base URL of the admin endpoint: the flag, else the address the kernel recorded, else the default.
pub fn admin_base(flag: Option<String>, data_dir: &Path) -> String {
    let addr = flag
        .or_else(|| {
            std::fs::read_to_string(data_dir.join("admin-addr"))
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "127.0.0.1:10260".to_string());
    if addr.starts_with("http://") {
        addr
    } else {
        format!("http://{addr}")
    }
}

/// An HTTP agent for the admin endpoint and the benchmarks: statuses are answers, not errors.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

fn unreachable(base: &str, e: ureq::Error) -> i32 {
    eprintln!("kubernel: cannot reach the admin endpoint at {base}: {e} (is `kubernel run` running? see --admin-addr)");
    1
}

#[derive(Deserialize)]
struct PluginRow {
    name: String,
    kind: String,
    version: String,
    path: String,
    state: String,
    restarts: u64,
    uptime_seconds: f64,
}

/// Human age like kubectl's: 45s, 12m, 3h, 2d.
fn age(seconds: f64) -> String {
    let s = seconds as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `kubernel plugins`.
pub fn plugins(base: &str, output: Output) -> i32 {
    let mut resp = match agent().get(&format!("{base}/plugins")).call() {
        Ok(r) => r,
        Err(e) => return unreachable(base, e),
    };
    let body = match resp.body_mut().read_to_string() {
        Ok(b) => b,
        Err(e) => return unreachable(base, e),
    };
    if let Output::Json = output {
        println!("{body}");
        return 0;
    }
    let rows: Vec<PluginRow> = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubernel: unexpected answer from {base}/plugins: {e}");
            return 1;
        }
    };
    let header = [
        "NAME", "KIND", "VERSION", "STATE", "RESTARTS", "UPTIME", "PATH",
    ]
    .map(String::from);
    let mut table = vec![header.to_vec()];
    for r in rows {
        table.push(vec![
            r.name,
            r.kind,
            r.version,
            r.state,
            r.restarts.to_string(),
            age(r.uptime_seconds),
            r.path,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    0
}

/// `kubernel swap NAME PATH`; `NAME` may be `PLUGIN:EXTENSION` to swap one
/// extension (e.g. a scheduler framework plugin) inside a running component.
pub fn swap(base: &str, name: &str, path: &Path) -> i32 {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let body = serde_json::json!({ "name": name, "path": path });
    let mut resp = match agent().post(&format!("{base}/plugins")).send_json(&body) {
        Ok(r) => r,
        Err(e) => return unreachable(base, e),
    };
    let ok = resp.status().is_success();
    let answer: serde_json::Value = resp
        .body_mut()
        .read_json()
        .unwrap_or(serde_json::Value::Null);
    if ok && answer.get("report").is_some() {
        println!(
            "swapped {name}: {}",
            answer["report"].as_str().unwrap_or("done")
        );
        0
    } else if ok {
        println!(
            "swapped {name}: {} -> {} (paused {:.3} ms)",
            answer["from_version"].as_str().unwrap_or("?"),
            answer["to_version"].as_str().unwrap_or("?"),
            answer["pause_seconds"].as_f64().unwrap_or(0.0) * 1000.0
        );
        0
    } else {
        eprintln!(
            "kubernel: swap failed: {}",
            answer["error"].as_str().unwrap_or("unknown error")
        );
        1
    }
}
