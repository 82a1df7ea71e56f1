//! The deploy recipes hold together: `deploy/compose/` (compose file, Dockerfile,
//! Grafana provisioning) references files that exist, mounts
//! `deploy/prometheus/prometheus.yml` where Prometheus reads it and the dashboards
//! where Grafana's provider looks; the Dockerfile builds every plugin the configs
//! load; the systemd units run the configs they name with the state in
//! /var/lib/kubernel. No container engine runs here: these are structural checks
//! (plus `promtool check config` when Prometheus is installed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context as _, Result};
use kubernel_e2e::workspace;
use serde_yaml_ng::Value;

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn yaml(path: &Path) -> Result<Value> {
    serde_yaml_ng::from_str(&read(path)?).with_context(|| format!("{}: not YAML", path.display()))
}

fn compose_dir() -> PathBuf {
    workspace().join("deploy/compose")
}

fn compose() -> Result<Value> {
    yaml(&compose_dir().join("compose.yaml"))
}

fn service<'a>(compose: &'a Value, name: &str) -> Result<&'a Value> {
    let s = &compose["services"][name];
    if s.is_null() {
        bail!("compose.yaml: no service {name:?}");
    }
    Ok(s)
}

/// A service's bind mounts: (host path resolved from the compose dir, container path).
fn binds(service: &Value) -> Vec<(PathBuf, String)> {
    service["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|v| {
            let mut parts = v.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            (source.starts_with('.') || source.starts_with('/'))
                .then(|| (compose_dir().join(source), target.to_string()))
        })
        .collect()
}

/// The container path `host` is mounted at.
fn mounted_at(service: &Value, host: &Path) -> Result<String> {
    let want = host.canonicalize()?;
    binds(service)
        .into_iter()
        .find(|(source, _)| source.canonicalize().is_ok_and(|s| s == want))
        .map(|(_, target)| target)
        .ok_or_else(|| anyhow!("{} is not mounted", host.display()))
}

/// The value of `--flag=value` in a service's command list.
fn flag(service: &Value, name: &str) -> Result<String> {
    service["command"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no {name}= in the command"))
}

/// The kernel's plugin libraries the configs of `config/` load (`libkubernel_*.so`).
fn plugin_libraries(configs: &[&str]) -> Result<BTreeSet<String>> {
    let mut libs = BTreeSet::new();
    for name in configs {
        let path = workspace().join("config").join(name);
        let config: toml::Table =
            toml::from_str(&read(&path)?).with_context(|| format!("{}", path.display()))?;
        for plugin in config
            .get("plugin")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(lib) = plugin.get("path").and_then(toml::Value::as_str) {
                libs.insert(lib.to_string());
            }
        }
    }
    Ok(libs)
}

#[test]
fn every_file_the_compose_recipe_references_should_exist() -> Result<()> {
    let compose = compose()?;
    for name in ["kubernel", "prometheus", "grafana"] {
        let s = service(&compose, name)?;
        for (source, target) in binds(s) {
            assert!(
                source.exists(),
                "compose.yaml: service {name} mounts {} at {target}, which does not exist",
                source.display()
            );
        }
    }
    let build = &service(&compose, "kubernel")?["build"];
    let context = compose_dir().join(
        build["context"]
            .as_str()
            .ok_or_else(|| anyhow!("kubernel: no build.context"))?,
    );
    let dockerfile = context.join(
        build["dockerfile"]
            .as_str()
            .ok_or_else(|| anyhow!("kubernel: no build.dockerfile"))?,
    );
    assert!(
        context.join("Cargo.toml").exists(),
        "the build context {} is not the workspace",
        context.display()
    );
    assert!(dockerfile.exists(), "{} is missing", dockerfile.display());
    let ignore = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
    assert!(
        read(&ignore)?.lines().any(|l| l.trim() == "target/"),
        "{}: target/ is not left out of the build context",
        ignore.display()
    );
    Ok(())
}

#[test]
fn the_dockerfile_should_build_every_plugin_the_configs_load_in_two_stages() -> Result<()> {
    let path = compose_dir().join("Dockerfile");
    let text = read(&path)?.replace("\\\n", " ");
    let stages: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .collect();
    assert!(stages.len() >= 2, "{}: not multi-stage", path.display());
    let named: Vec<&str> = stages
        .iter()
        .filter_map(|s| s.split_whitespace().skip_while(|w| *w != "AS").nth(1))
        .collect();
    let copied_from: Vec<&str> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--from="))
        .collect();
    assert!(
        !copied_from.is_empty() && copied_from.iter().all(|s| named.contains(s)),
        "{}: the last stage must COPY --from a named stage ({named:?}), copies from {copied_from:?}",
        path.display()
    );

    let words: Vec<&str> = text.split_whitespace().collect();
    let built: BTreeSet<String> = words
        .windows(2)
        .filter(|w| w[0] == "-p" && !w[1].starts_with('/'))
        .map(|w| w[1].to_string())
        .collect();
    for lib in plugin_libraries(&["all-in-one.toml", "control-plane.toml", "worker.toml"])? {
        let krate = lib
            .strip_prefix("lib")
            .and_then(|l| l.strip_suffix(".so"))
            .map(|l| l.replace('_', "-"))
            .ok_or_else(|| anyhow!("plugin path {lib:?} is not lib<crate>.so"))?;
        assert!(
            built.contains(&krate),
            "{}: the configs load {lib} but `cargo build` has no -p {krate} (builds {built:?})",
            path.display()
        );
    }
    assert!(
        built.contains("kubernel"),
        "the kubernel binary is not built"
    );
    assert!(
        text.contains("libkubernel_*.so") && text.contains("target/release/kubernel"),
        "{}: the binary and the plugins are not copied out together",
        path.display()
    );
    for source in words
        .windows(3)
        .filter(|w| w[0] == "COPY" && !w[1].starts_with("--"))
        .map(|w| w[1])
    {
        if source != "." {
            assert!(
                workspace().join(source).exists(),
                "{}: COPY {source}: not in the workspace",
                path.display()
            );
        }
    }
    Ok(())
}

#[test]
fn prometheus_should_read_deploy_prometheus_yml_and_scrape_the_admin_endpoint() -> Result<()> {
    let compose = compose()?;
    let prometheus = service(&compose, "prometheus")?;
    let config = workspace().join("deploy/prometheus/prometheus.yml");
    assert_eq!(
        mounted_at(prometheus, &config)?,
        flag(prometheus, "--config.file")?,
        "Prometheus does not read the mounted deploy/prometheus/prometheus.yml"
    );
    let scrape = yaml(&config)?;
    let targets: Vec<&str> = scrape["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|j| j["job_name"].as_str() == Some("kubernel"))
        .flat_map(|j| j["static_configs"].as_sequence().into_iter().flatten())
        .flat_map(|s| s["targets"].as_sequence().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let all_in_one: toml::Table =
        toml::from_str(&read(&workspace().join("config/all-in-one.toml"))?)?;
    let admin = all_in_one["kernel"]["admin_addr"]
        .as_str()
        .ok_or_else(|| anyhow!("config/all-in-one.toml: no kernel.admin_addr"))?;
    assert!(
        targets.contains(&admin),
        "prometheus.yml's kubernel targets {targets:?} miss the all-in-one admin endpoint {admin}"
    );
    for name in ["kubernel", "prometheus", "grafana"] {
        assert_eq!(
            service(&compose, name)?["network_mode"].as_str(),
            Some("host"),
            "service {name} must share the host's loopback, where the admin endpoint and the API serve"
        );
    }

    match Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check config {}:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("promtool is not installed: prometheus.yml not checked by it"),
    }
    Ok(())
}

#[test]
fn grafana_should_provision_the_datasource_and_every_dashboard() -> Result<()> {
    let compose = compose()?;
    let grafana = service(&compose, "grafana")?;
    let provisioning = compose_dir().join("grafana/provisioning");
    assert_eq!(
        mounted_at(grafana, &provisioning)?,
        "/etc/grafana/provisioning",
        "the provisioning directory is not where Grafana reads it"
    );

    let dashboards_dir = workspace().join("dashboards");
    let mounted_dashboards = mounted_at(grafana, &dashboards_dir)?;
    let providers = yaml(&provisioning.join("dashboards/kubernel.yaml"))?;
    let paths: Vec<&str> = providers["providers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p["options"]["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [mounted_dashboards.as_str()],
        "the dashboard provider must read where dashboards/ is mounted"
    );
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .ok_or_else(|| anyhow!("grafana: no home dashboard"))?;
    let home_file = home
        .strip_prefix(&format!("{mounted_dashboards}/"))
        .ok_or_else(|| anyhow!("home dashboard {home} is not in {mounted_dashboards}"))?;
    assert!(
        dashboards_dir.join(home_file).exists(),
        "home dashboard {home_file} is not in dashboards/"
    );

    let datasources = yaml(&provisioning.join("datasources/prometheus.yaml"))?;
    let [datasource] = datasources["datasources"]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_default()
    else {
        bail!("datasources/prometheus.yaml: expected one data source");
    };
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    assert_eq!(
        datasource["isDefault"].as_bool(),
        Some(true),
        "the dashboards' datasource variable picks the default"
    );
    let listen = flag(service(&compose, "prometheus")?, "--web.listen-address")?;
    assert_eq!(
        datasource["url"].as_str(),
        Some(format!("http://{listen}").as_str()),
        "the data source URL is not where Prometheus listens"
    );
    Ok(())
}

#[test]
fn systemd_units_should_run_their_configs_with_state_in_var_lib_kubernel() -> Result<()> {
    for (unit, config, components) in [
        (
            "kubernel-control-plane.service",
            "control-plane.toml",
            &[
                "libkubernel_apiserver.so",
                "libkubernel_scheduler.so",
                "libkubernel_controller_manager.so",
            ][..],
        ),
        (
            "kubernel-worker.service",
            "worker.toml",
            &["libkubernel_kubelet.so", "libkubernel_proxy.so"][..],
        ),
    ] {
        let path = workspace().join("deploy/systemd").join(unit);
        let text = read(&path)?;
        let keys: Vec<(&str, &str)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        let has = |k: &str, v: &str| keys.iter().any(|&(a, b)| a == k && b == v);
        assert!(
            has("Restart", "on-failure"),
            "{unit}: no Restart=on-failure"
        );
        assert!(
            has("StateDirectory", "kubernel"),
            "{unit}: state is not in /var/lib/kubernel"
        );
        assert!(
            has("NoNewPrivileges", "yes") || unit.contains("worker"),
            "{unit}: NoNewPrivileges"
        );
        assert!(
            has("ProtectKernelModules", "yes"),
            "{unit}: ProtectKernelModules"
        );
        let exec = keys
            .iter()
            .find(|(k, _)| *k == "ExecStart")
            .map(|(_, v)| *v)
            .ok_or_else(|| anyhow!("{unit}: no ExecStart"))?;
        assert!(
            exec.contains("--data-dir /var/lib/kubernel")
                && exec.contains(&format!("--config /etc/kubernel/{config}")),
            "{unit}: ExecStart {exec:?} does not run /etc/kubernel/{config} on /var/lib/kubernel"
        );
        assert!(
            text.contains(&format!("config/{config} /etc/kubernel/{config}")),
            "{unit}: its install steps do not install config/{config}"
        );
        let libs = plugin_libraries(&[config])?;
        let wanted: BTreeSet<String> = components.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            libs, wanted,
            "config/{config} loads other components than {unit} says"
        );
    }
    Ok(())
}
