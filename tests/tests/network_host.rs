//! Host networking (`network = "host"`, the default; no root needed): pods share the
//! node's network, so their podIP is the node's address and a pod asking for a port
//! another pod of the node holds is rejected with a clear Failed status (reason
//! `NodePorts`, upstream's message naming the port and the holder); once the holder
//! is gone the port is free again.

use std::time::Duration;

use anyhow::{ensure, Result};
use kubernel_e2e::{component_entry, eventually, free_port, Cluster};
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
    let (kubelet_port, port) = (free_port()?, free_port()?);
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
