//! etcd stopped and restarted under a running apiserver: requests answer 503 quickly, `/readyz` fails, and everything, open watches included, recovers by itself.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kubernel_e2e::{eventually, stream_lines, Cluster, Etcd};
use serde_json::Value;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#)
}

/// Waits (at most 20 s) for a watch line of `kind` about the object `name`.
fn wait_event(lines: &Receiver<String>, kind: &str, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let line: Value = serde_json::from_str(&lines.recv_timeout(left)?)?;
        if line["type"] == kind && line["object"]["metadata"]["name"] == name {
            return Ok(());
        }
    }
    bail!("no {kind} event for {name} within 20 s")
}

#[test]
fn apiserver_should_answer_503_while_etcd_is_down_and_recover_with_its_watches() -> Result<()> {
    let mut etcd = Etcd::start()?;
    let c = Cluster::start_on_etcd(&etcd.endpoint, "etcd_request_timeout = \"2s\"\n")?;
    let (status, body) = c.send(
        "POST",
        CONFIGMAPS,
        "application/json",
        configmap("before").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body)?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("");
    let watch = stream_lines(&format!(
        "{}{CONFIGMAPS}?watch=true&resourceVersion={rv}&timeoutSeconds=120",
        c.api
    ))?;

    etcd.stop()?;
    let one = format!("{CONFIGMAPS}/before");
    eventually(Duration::from_secs(20), "reads to answer 503", || {
        Ok(c.get(&one)?.0 == 503)
    })?;
    let (status, body) = c.get(&one)?;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("etcd http://127.0.0.1:"),
        "the Status names etcd: {body}"
    );
    let (status, body) = c.send(
        "POST",
        CONFIGMAPS,
        "application/json",
        configmap("during").as_bytes(),
    )?;
    assert_eq!(
        status, 503,
        "a write fails within the request timeout: {body}"
    );
    let (status, body) = c.kernel.get("/readyz")?;
    assert_ne!(status, 200, "/readyz reports the etcd check: {body}");

    etcd.restart()?;
    eventually(
        Duration::from_secs(30),
        "reads and /readyz to recover",
        || Ok(c.get(&one)?.0 == 200 && c.kernel.get("/readyz")?.0 == 200),
    )?;
    let (status, body) = c.send(
        "POST",
        CONFIGMAPS,
        "application/json",
        configmap("after").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    wait_event(&watch, "ADDED", "after")
}

#[test]
fn apiserver_should_answer_503_within_the_request_timeout_while_etcd_hangs() -> Result<()> {
    let etcd = Etcd::start()?;
    let c = Cluster::start_on_etcd(&etcd.endpoint, "etcd_request_timeout = \"2s\"\n")?;
    let (_, list) = c.get(CONFIGMAPS)?;
    let list: Value = serde_json::from_str(&list)?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let watch = stream_lines(&format!(
        "{}{CONFIGMAPS}?watch=true&resourceVersion={rv}&timeoutSeconds=120",
        c.api
    ))?;

    etcd.pause();
    // The harness' HTTP client gives up after 30 s: a hung request fails the test.
    let (status, body) = c.send(
        "POST",
        CONFIGMAPS,
        "application/json",
        configmap("hung").as_bytes(),
    )?;
    assert_eq!(status, 503, "a write fails at the request timeout: {body}");
    eventually(Duration::from_secs(20), "reads and /readyz to fail", || {
        Ok(c.get(CONFIGMAPS)?.0 == 503 && c.kernel.get("/readyz")?.0 != 200)
    })?;

    etcd.resume();
    eventually(
        Duration::from_secs(30),
        "reads and /readyz to recover",
        || Ok(c.get(CONFIGMAPS)?.0 == 200 && c.kernel.get("/readyz")?.0 == 200),
    )?;
    let (status, body) = c.send(
        "POST",
        CONFIGMAPS,
        "application/json",
        configmap("thawed").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    wait_event(&watch, "ADDED", "thawed")
}
