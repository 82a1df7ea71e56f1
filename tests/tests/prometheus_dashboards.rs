//! The real Prometheus scrapes a whole cluster (apiserver, scheduler,
//! controller-manager, a process kubelet, a sim kubelet, the userspace proxy) with
//! `deploy/prometheus/prometheus.yml`; after a small workload (two Deployments, a
//! NodePort Service and connections through it, a whole-scheduler hot swap and a
//! scheduler plugin swap) every query of every panel and annotation of every
//! dashboard returns at least one series through Prometheus's HTTP API, and every
//! metric name the dashboards use is in the exposition.
//!
//! Skips with a message when `prometheus` is not installed (`apt-get install prometheus`).

mod dashboards_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use dashboards_support::{dashboards, families, family_of, metric_names, queries, Place};
use kubernel_e2e::{
    component_entry, component_lib, eventually, free_port, kubernel, workspace, Cluster,
};
use serde_json::Value;

/// Debian's `prometheus` package.
const PROMETHEUS: &str = "prometheus";
/// The node the process kubelet registers.
const NODE: &str = "prom-node";
/// Pods of the Deployment on the simulated nodes (the scheduler samples per-plugin
/// durations in one cycle of ten).
const SIM_REPLICAS: usize = 12;
/// Where the proxy serves NodePorts: an address of its own, since other clusters on
/// a shared machine hold NodePorts on 127.0.0.1 (and 127.0.0.10).
const NODE_PORT_ADDRESS: &str = "127.0.0.21";
/// What Grafana's `$__rate_interval` becomes: four scrapes of 1 s and more.
const RATE_INTERVAL: &str = "20s";

/// A Prometheus server on a loopback port, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` with `deploy/prometheus/prometheus.yml` rendered for one
    /// target (`admin`, host:port) scraped every second, storing in a temp dir.
    fn start(admin: &str) -> Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let config = render_config(&workspace().join("deploy/prometheus/prometheus.yml"), admin)?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning prometheus")?;
        Ok(Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        })
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn get(&self, path_and_query: &str) -> Result<Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut resp = agent.get(&format!("{}{path_and_query}", self.url)).call()?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        let json: Value = serde_json::from_str(&body)
            .with_context(|| format!("GET {path_and_query}: {status}: not JSON: {body}"))?;
        if json["status"] != "success" {
            bail!("GET {path_and_query}: {status}: {body}");
        }
        Ok(json["data"].clone())
    }

    /// Series an instant query returns now.
    fn series(&self, query: &str) -> Result<usize> {
        let data = self.get(&format!("/api/v1/query?query={}", encode(query)))?;
        Ok(data["result"].as_array().map_or(0, Vec::len))
    }

    /// The value of a query that returns one series, if it does.
    fn value(&self, query: &str) -> Result<Option<f64>> {
        let data = self.get(&format!("/api/v1/query?query={}", encode(query)))?;
        Ok(data["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok()))
    }

    /// Series a range query from `start` (Unix seconds) to now returns, at 1 s
    /// steps: what Grafana asks for annotations over the dashboard's time range.
    fn series_over(&self, query: &str, start: f64) -> Result<usize> {
        let end = unix_now();
        let data = self.get(&format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
            encode(query)
        ))?;
        Ok(data["result"].as_array().map_or(0, Vec::len))
    }

    /// The single target's health and last scrape error.
    fn target(&self) -> Result<(String, String)> {
        let data = self.get("/api/v1/targets")?;
        let targets = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let [target] = targets.as_slice() else {
            bail!("expected one active target, got {targets:?}");
        };
        Ok((
            target["health"].as_str().unwrap_or_default().to_string(),
            target["lastError"].as_str().unwrap_or_default().to_string(),
        ))
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Percent-encodes a query parameter value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `deploy/prometheus/prometheus.yml` with its `kubernel` job pointed at `admin`
/// and every interval at 1 s.
fn render_config(path: &Path, admin: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}: not YAML", path.display()))?;
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow!("{}: no scrape_configs list", path.display()))?;
    let job = jobs
        .iter_mut()
        .find(|j| j["job_name"].as_str() == Some("kubernel"))
        .ok_or_else(|| anyhow!("{}: no job_name: kubernel", path.display()))?;
    job["scrape_interval"] = "1s".into();
    job["static_configs"] = serde_yaml_ng::from_str(&format!("[{{targets: [\"{admin}\"]}}]"))?;
    Ok(serde_yaml_ng::to_string(&config)?)
}

/// A dashboard query as Grafana sends it: variables replaced, `label_values()`
/// reduced to its metric selector.
fn as_sent(query: &str) -> String {
    let query = query
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", "1s")
        .replace("$instance", ".+");
    match query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .and_then(|q| q.rsplit_once(','))
    {
        Some((selector, _label)) => selector.trim().to_string(),
        None => query,
    }
}

/// Where `lib` is copied to be swapped in (a fresh file, as after a rebuild).
fn copy_of(lib: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let copy = dir.join(name);
    std::fs::copy(lib, &copy).with_context(|| format!("copying {}", lib.display()))?;
    Ok(copy)
}

fn swap(c: &Cluster, target: &str, lib: &Path) -> Result<()> {
    let data = c.kernel.data_dir().display().to_string();
    let lib = lib.display().to_string();
    let (status, out, err) = kubernel(&["--data-dir", &data, "swap", target, &lib], &[])?;
    if !status.success() {
        bail!("kubernel swap {target} {lib}: {status}: {out}{err}");
    }
    Ok(())
}

fn workload(app_port: u16) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {NODE}}}
      containers:
      - name: web
        image: python
        command: ["python3", "-m", "http.server", "{app_port}", "--bind", "127.0.0.1"]
        ports: [{{containerPort: {app_port}}}]
        readinessProbe:
          tcpSocket: {{port: {app_port}}}
          periodSeconds: 1
        livenessProbe:
          exec: {{command: ["true"]}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: {app_port}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sim}}
spec:
  replicas: {SIM_REPLICAS}
  selector: {{matchLabels: {{app: sim}}}}
  template:
    metadata: {{labels: {{app: sim}}}}
    spec:
      nodeSelector: {{kubernel.io/sim: "true"}}
      containers:
      - {{name: pause, image: registry.k8s.io/pause:3.10}}
"#
    )
}

fn available(c: &Cluster, name: &str, want: usize) -> Result<bool> {
    let (status, body) = c.get(&format!(
        "/apis/apps/v1/namespaces/default/deployments/{name}"
    ))?;
    if status != 200 {
        return Ok(false);
    }
    let d: Value = serde_json::from_str(&body)?;
    Ok(d["status"]["availableReplicas"].as_u64() == Some(want as u64))
}

#[test]
fn every_dashboard_query_should_return_data_from_prometheus() -> Result<()> {
    if Command::new(PROMETHEUS).arg("--version").output().is_err() {
        eprintln!("skipped: `{PROMETHEUS}` is not installed (apt-get install prometheus)");
        return Ok(());
    }
    let started = Instant::now();
    let kubelet_port = free_port()?;
    let healthz = free_port()?;
    let app_port = free_port()?;
    let components = [
        component_entry(
            "scheduler",
            "scheduler",
            &format!(
                "[[plugin.config.external_plugins]]\nname = \"Binpack\"\npath = \"{}\"\n\
                 [[plugin.config.profiles]]\nscheduler_name = \"default-scheduler\"\n\
                 plugins.score.enabled = [{{ name = \"Binpack\", weight = 5 }}]\n",
                component_lib("scheduler-binpack").display()
            ),
        ),
        // As config/all-in-one.toml: every controller, node IPAM on.
        component_entry(
            "controller-manager",
            "controller-manager",
            "controllers = [\"*\"]\nallocate_node_cidrs = true\ncluster_cidr = \"10.244.0.0/16\"\nnode_cidr_mask_size = 24",
        ),
        component_entry(
            "kubelet",
            "kubelet",
            &format!(
                "runtime = \"process\"\nnetwork = \"host\"\nnode_name = \"{NODE}\"\nport = {kubelet_port}\nlease_renew_interval = \"1s\"\nnode_status_update_frequency = \"1s\""
            ),
        ),
        component_entry("sim", "kubelet", "runtime = \"sim\"\nnodes = 3\nlease_renew_interval = \"1s\""),
        component_entry(
            "proxy",
            "proxy",
            &format!(
                "mode = \"userspace\"\ncluster_ips = \"false\"\nnode_port_addresses = [\"{NODE_PORT_ADDRESS}\"]\nhealthz_bind_address = \"127.0.0.1:{healthz}\""
            ),
        ),
    ];
    let c = Cluster::start(&components.concat())?;
    let admin = std::fs::read_to_string(c.kernel.data_dir().join("admin-addr"))?
        .trim()
        .to_string();
    let prom = Prometheus::start(&admin)?;

    // The first scrape holds every swap counter at 0, so that the swaps below are
    // increases (annotations).
    let scraped = eventually(Duration::from_secs(30), "Prometheus' first scrape", || {
        Ok(prom.series("kubernel_plugin_swaps_total")? > 0)
    });
    if let Err(e) = scraped {
        bail!("{e:#}\nprometheus log:\n{}", prom.logs());
    }

    let since = unix_now();
    let copies = tempfile::tempdir()?;
    let scheduler = copy_of(&component_lib("scheduler"), copies.path(), "scheduler.so")?;
    swap(&c, "scheduler", &scheduler)?;
    let spread = copy_of(
        &component_lib("scheduler-zone-spread"),
        copies.path(),
        "spread.so",
    )?;
    swap(&c, "scheduler:Binpack", &spread)?;

    c.ok_stdin(&["apply", "-f", "-"], &workload(app_port))?;
    eventually(
        Duration::from_secs(60),
        "both Deployments available",
        || Ok(available(&c, "web", 1)? && available(&c, "sim", SIM_REPLICAS)?),
    )?;
    let service: Value = serde_json::from_str(&c.ok(&["get", "service", "web", "-o", "json"])?)?;
    let node_port = service["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .ok_or_else(|| anyhow!("service web has no nodePort: {service}"))?;
    let url = format!("http://{NODE_PORT_ADDRESS}:{node_port}/");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut answered = 0;
    eventually(
        Duration::from_secs(30),
        "3 answers through the NodePort",
        || {
            if agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
                answered += 1;
            }
            Ok(answered >= 3)
        },
    )?;
    // Readiness checks travel the kernel bus (kubernel_bus_* series).
    assert_eq!(c.kernel.get("/readyz")?.0, 200);

    let mut all = Vec::new();
    for (path, dashboard) in dashboards()? {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (place, kind, query) in queries(&dashboard) {
            all.push((format!("{file}: {place}"), kind, query));
        }
    }
    assert!(
        all.iter().any(|(_, kind, _)| *kind == Place::Annotation),
        "no annotation queries found"
    );

    let mut empty = Vec::new();
    let result = eventually(
        Duration::from_secs(60),
        "every query returning data",
        || {
            empty.clear();
            for (place, kind, query) in &all {
                let sent = as_sent(query);
                let series = match kind {
                    Place::Annotation => prom.series_over(&sent, since),
                    Place::Panel | Place::Variable => prom.series(&sent),
                };
                match series {
                    Ok(0) => empty.push(format!("{place}: no series for {sent}")),
                    Ok(_) => {}
                    Err(e) => empty.push(format!("{place}: {e:#}")),
                }
            }
            Ok(empty.is_empty())
        },
    );
    if result.is_err() {
        let (_, exposition) = c.kernel.get("/metrics")?;
        bail!(
            "{} of {} dashboard queries return no data:\n{}\n\nexported families: {:?}",
            empty.len(),
            all.len(),
            empty.join("\n"),
            families(&exposition).keys().collect::<Vec<_>>()
        );
    }

    // The controller-manager's object metrics follow the cluster.
    let nodes_ready = r#"sum(kube_node_status_condition{condition="Ready",status="true"})"#;
    let sim_available = r#"sum(kube_deployment_status_replicas_available{deployment="sim"})"#;
    let running = r#"sum(kube_pod_status_phase{phase="Running"})"#;
    let mut values = Vec::new();
    let counted = eventually(Duration::from_secs(20), "the kube_* values", || {
        values = vec![
            prom.value(nodes_ready)?,
            prom.value(sim_available)?,
            prom.value(running)?,
        ];
        Ok(values
            == [
                Some(4.0),
                Some(SIM_REPLICAS as f64),
                Some(SIM_REPLICAS as f64 + 1.0),
            ])
    });
    assert!(
        counted.is_ok(),
        "4 nodes Ready, {SIM_REPLICAS} sim pods available, {} pods Running: got {values:?}",
        SIM_REPLICAS + 1
    );

    // The whole exposition is accepted (a duplicated label would fail the scrape).
    let (health, last_error) = prom.target()?;
    assert_eq!(
        (health.as_str(), last_error.as_str()),
        ("up", ""),
        "the kubernel target"
    );

    let (status, exposition) = c.kernel.get("/metrics")?;
    assert_eq!(status, 200, "{exposition}");
    let mut seen = BTreeSet::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (name, labels) = sample(line)?;
        assert!(
            name.starts_with("kubernel_")
                || name.starts_with("process_")
                || labels
                    .iter()
                    .any(|(k, _)| k == "plugin" || k == "kubernel_plugin"),
            "{line}: a component's sample without its plugin label"
        );
        assert!(seen.insert((name, labels)), "{line}: series exported twice");
    }
    let exported = families(&exposition);
    let mut unknown = BTreeSet::new();
    for (place, _, query) in &all {
        for name in metric_names(query) {
            if family_of(&name, &exported).is_none() {
                unknown.insert(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "dashboards use metrics the cluster does not export:\n{}",
        unknown.into_iter().collect::<Vec<_>>().join("\n")
    );
    eprintln!(
        "{} queries of {} dashboards returned data; {:.1} s",
        all.len(),
        dashboards()?.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A sample line's metric name and labels (sorted by name).
fn sample(line: &str) -> Result<(String, Vec<(String, String)>)> {
    let Some((name, rest)) = line.split_once('{') else {
        let name = line.split_whitespace().next().unwrap_or_default();
        return Ok((name.to_string(), Vec::new()));
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let key = key.trim_start_matches(',').to_string();
        if key.starts_with('}') || key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            bail!("{line}: label {key} has no quoted value");
        }
        let mut value = String::new();
        let mut escaped = false;
        for c in chars.by_ref() {
            match c {
                _ if escaped => {
                    value.push(c);
                    escaped = false;
                }
                '\\' => escaped = true,
                '"' => break,
                _ => value.push(c),
            }
        }
        labels.push((key, value));
    }
    labels.sort();
    Ok((name.to_string(), labels))
}

#[test]
fn sample_should_read_name_and_sorted_labels() -> Result<()> {
    assert_eq!(
        sample(r#"x_total{b="1,}",a="q\"t"} 3"#)?,
        (
            "x_total".to_string(),
            vec![("a".into(), "q\"t".into()), ("b".into(), "1,}".into())]
        )
    );
    assert_eq!(sample("up 1")?, ("up".to_string(), vec![]));
    Ok(())
}

#[test]
fn as_sent_should_replace_grafana_variables() {
    assert_eq!(
        as_sent(r#"sum(rate(x_total{instance=~"$instance"}[$__rate_interval]))"#),
        format!(r#"sum(rate(x_total{{instance=~".+"}}[{RATE_INTERVAL}]))"#)
    );
    assert_eq!(
        as_sent("label_values(kubernel_plugins, instance)"),
        "kubernel_plugins"
    );
}
