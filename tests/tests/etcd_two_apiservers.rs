//! Two apiservers on one etcd: what is written through one is read and watched through the other, with one resourceVersion sequence.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kubernel_e2e::{stream_lines, Cluster, Etcd};
use serde_json::Value;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn a_write_through_one_apiserver_should_reach_watches_on_the_other() -> Result<()> {
    let etcd = Etcd::start()?;
    let a = Cluster::start_on_etcd(&etcd.endpoint, "")?;
    let b = Cluster::start_on_etcd(&etcd.endpoint, "")?;
    let (status, body) = b.get(CONFIGMAPS)?;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body)?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let watch = stream_lines(&format!(
        "{}{CONFIGMAPS}?watch=true&resourceVersion={rv}&timeoutSeconds=60",
        b.api
    ))?;

    a.ok(&["create", "configmap", "shared", "--from-literal=k=v"])?;
    let written = a.ok(&[
        "get",
        "configmap",
        "shared",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])?;

    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            bail!("B's watch saw no ADDED shared within 20 s");
        };
        let line: Value = serde_json::from_str(&watch.recv_timeout(left)?)?;
        if line["type"] == "ADDED" && line["object"]["metadata"]["name"] == "shared" {
            break line;
        }
    };
    assert_eq!(
        seen["object"]["metadata"]["resourceVersion"],
        written.as_str()
    );
    assert_eq!(seen["object"]["data"]["k"], "v");
    let read = b.ok(&[
        "get",
        "configmap",
        "shared",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])?;
    assert_eq!(read, written, "B reads the object at the revision A wrote");

    b.ok(&["label", "configmap", "shared", "via=b"])?;
    let stale = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"shared","resourceVersion":"{written}"}}}}"#
    );
    let (status, body) = a.send(
        "PUT",
        &format!("{CONFIGMAPS}/shared"),
        "application/json",
        stale.as_bytes(),
    )?;
    assert_eq!(
        status, 409,
        "A refuses an update at the revision B replaced: {body}"
    );
    Ok(())
}
