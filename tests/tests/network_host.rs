//! Host networking (`network = "host"`, the default; no root needed): pods share the
//! node's network, so their podIP is the node's address and a pod asking for a port
//! another pod of the node holds is rejected with a clear Failed status (reason
//! `NodePorts`, upstream's message naming the port and the holder); once the holder
//! is gone the port is free again.

use std::time::Duration;

use anyhow::{ensure, Result};
use kubernel_e2e::{component_entry, eventually, free_ports, Cluster};
use serde_json::{json, Value};

fn server(name: &str, port: u16) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "host-net",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web", "image": "python:3",
                "command": ["python3", "-m", "http.server", port.to_string(), "--bind", "127.0.0.1"],
                "ports": [{"containerPort": port}],
            }],
        }
    })
    .to_string()
}

fn pod(c: &Cluster, name: &str) -> Result<Value> {
    Ok(serde_json::from_str(
        &c.ok(&["get", "pod", name, "-o", "json"])?,
    )?)
}

#[test]
fn pods_sharing_the_node_network_should_not_share_a_port() -> Result<()> {
    let ports = free_ports(2)?;
    let (kubelet_port, port) = (ports[0], ports[1]);
    let c = Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!("runtime = \"process\"\nnode_name = \"host-net\"\nport = {kubelet_port}\nnetwork = \"host\"\n"),
    ))?;
    c.ok_stdin(&["apply", "-f", "-"], &server("first", port))?;
    eventually(Duration::from_secs(30), "first Running", || {
        Ok(pod(&c, "first")?["status"]["phase"] == "Running")
    })?;
    ensure!(pod(&c, "first")?["status"]["podIP"] == "127.0.0.1");

    c.ok_stdin(&["apply", "-f", "-"], &server("second", port))?;
    eventually(Duration::from_secs(30), "second Failed", || {
        Ok(pod(&c, "second")?["status"]["phase"] == "Failed")
    })?;
    let status = pod(&c, "second")?["status"].clone();
    ensure!(status["reason"] == "NodePorts", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    ensure!(
        message.starts_with("Pod was rejected: Predicate NodePorts failed")
            && message.contains(&format!("{port}/TCP"))
            && message.contains("default/first"),
        "{message}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=second",
    ])?;
    ensure!(events.contains("NodePorts"), "{events}");

    // The holder gone, the port is free again.
    c.ok(&["delete", "pod", "first", "--wait=false"])?;
    c.ok(&["delete", "pod", "second"])?;
    eventually(Duration::from_secs(30), "first gone", || {
        Ok(c.kubectl(&["get", "pod", "first"])?.0.code() != Some(0))
    })?;
    c.ok_stdin(&["apply", "-f", "-"], &server("second", port))?;
    eventually(Duration::from_secs(30), "the new second Running", || {
        Ok(pod(&c, "second")?["status"]["phase"] == "Running")
    })?;
    Ok(())
}

#[test]
fn bridge_networking_without_root_should_be_refused_by_name() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
    let config = dir.path().join("kubernel.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[plugin]]\nname = \"kubelet\"\npath = \"{}\"\n[plugin.config]\nruntime = \"process\"\nnetwork = \"bridge\"\nport = 0\n[plugin.config.client]\nserver = \"http://127.0.0.1:1\"\n",
            kubernel_e2e::kernel_section(),
            kubernel_e2e::component_lib("kubelet").display()
        ),
    )?;
    // As root, the kernel runs as nobody.
    let root = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(kubernel_e2e::kubernel_bin());
        c
    } else {
        std::process::Command::new(kubernel_e2e::kubernel_bin())
    };
    let out = cmd
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if root && err.contains("Permission denied") && !err.contains("key network") {
        eprintln!(
            "skipped: nobody cannot run {} here: {err}",
            kubernel_e2e::kubernel_bin().display()
        );
        return Ok(());
    }
    ensure!(!out.status.success(), "started: {err}");
    ensure!(
        err.contains("key network") && err.contains("\"bridge\" needs root"),
        "{err}"
    );
    Ok(())
}
