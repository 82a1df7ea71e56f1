//! The apiserver compacts etcd's history every `etcd_compaction_interval`; a watch from a compacted revision gets 410 Gone.

use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{eventually, Cluster, Etcd};
use serde_json::Value;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn a_watch_from_a_compacted_revision_should_get_410_gone() -> Result<()> {
    let etcd = Etcd::start()?;
    let c = Cluster::start_on_etcd(&etcd.endpoint, "etcd_compaction_interval = \"1s\"\n")?;
    c.ok(&["create", "configmap", "old", "--from-literal=k=v"])?;
    let rv = c.ok(&[
        "get",
        "configmap",
        "old",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])?;
    c.ok(&["label", "configmap", "old", "changed=yes"])?;
    let from_old = format!("{CONFIGMAPS}?watch=true&resourceVersion={rv}&timeoutSeconds=1");
    eventually(
        Duration::from_secs(30),
        "a 410 for a watch from the first revision",
        || {
            let (status, body) = c.get(&from_old)?;
            let first: Value = serde_json::from_str(body.lines().next().unwrap_or("{}"))?;
            Ok(status == 200 && first["type"] == "ERROR" && first["object"]["code"] == 410)
        },
    )?;
    let (_, list) = c.get(CONFIGMAPS)?;
    let list: Value = serde_json::from_str(&list)?;
    let now = list["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let (status, body) = c.get(&format!(
        "{CONFIGMAPS}?watch=true&resourceVersion={now}&timeoutSeconds=1"
    ))?;
    assert_eq!(status, 200);
    assert!(
        !body.contains("\"ERROR\""),
        "a watch from a list's revision works: {body}"
    );
    Ok(())
}
