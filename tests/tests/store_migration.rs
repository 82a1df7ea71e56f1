//! A lab outgrows its embedded store: `kubernel store export` writes its objects as
//! JSON lines, `kubernel store import` writes them into a cluster on etcd, and every
//! object comes back equal (uid, creation time, owner references, status) except its
//! resourceVersion; a bad file imports nothing and names the bad line.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kubernel_e2e::{kubernel, Cluster, Etcd};
use serde_json::Value;

/// `kubernel store <args>` against the kernel running `c`'s apiserver.
fn store(c: &Cluster, args: &[&str]) -> Result<(bool, String)> {
    let data_dir = c.kernel.data_dir();
    let data_dir = data_dir.to_string_lossy();
    let mut full = vec!["--data-dir", data_dir.as_ref(), "store"];
    full.extend_from_slice(args);
    let (status, _, err) = kubernel(&full, &[])?;
    Ok((status.success(), err))
}

/// The exported objects by `kind/namespace/name`, without their resourceVersion.
fn objects(file: &std::path::Path) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(file)?.lines() {
        let mut o: Value = serde_json::from_str(line)?;
        if let Some(meta) = o["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let id = format!(
            "{}/{}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        );
        out.insert(id, o);
    }
    Ok(out)
}

#[test]
fn export_then_import_into_etcd_should_keep_every_object() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let source = Cluster::start("")?;
    source.ok(&["create", "namespace", "team"])?;
    source.ok(&["create", "deployment", "web", "--image=nginx", "-n", "team"])?;
    source.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=b",
        "-n",
        "team",
    ])?;
    source.ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=t=s",
        "-n",
        "team",
    ])?;
    source.ok(&[
        "create",
        "service",
        "nodeport",
        "web",
        "--tcp=80:8080",
        "-n",
        "team",
    ])?;
    let owner_uid = source.ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.uid}",
    ])?;
    source.ok_stdin(
        &["create", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"owned","namespace":"team",
            "ownerReferences":[{{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"{owner_uid}"}}]}},
            "spec":{{"containers":[{{"name":"c","image":"nginx"}}]}}}}"#
        ),
    )?;
    let (code, body) = source.send(
        "PATCH",
        "/api/v1/namespaces/team/pods/owned/status",
        "application/merge-patch+json",
        br#"{"status":{"phase":"Running","podIP":"10.128.0.7"}}"#,
    )?;
    assert_eq!(code, 200, "{body}");

    let exported = dir.path().join("cluster.jsonl");
    let (ok, err) = store(&source, &["export", "-o", &exported.to_string_lossy()])?;
    assert!(ok, "{err}");
    assert!(err.contains("exported"), "{err}");
    let before = objects(&exported)?;
    for id in [
        "Namespace//team",
        "Deployment/team/web",
        "ConfigMap/team/settings",
        "Secret/team/token",
        "Service/team/web",
        "Pod/team/owned",
    ] {
        assert!(before.contains_key(id), "{id} exported");
    }

    let etcd = Etcd::start()?;
    let target = Cluster::start_on_etcd(&etcd.endpoint, "")?;
    // A bad file first: nothing of it is written.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"early\",\"namespace\":\"default\"}}\n{not json\n",
    )?;
    let (ok, err) = store(&target, &["import", &bad.to_string_lossy()])?;
    assert!(!ok);
    assert!(err.contains("line 2: not JSON"), "{err}");
    assert!(err.contains("nothing imported"), "{err}");
    let (code, _) = target.get("/api/v1/namespaces/default/configmaps/early")?;
    assert_eq!(code, 404, "a refused file writes nothing");

    let (ok, err) = store(&target, &["import", &exported.to_string_lossy()])?;
    assert!(ok, "{err}");
    assert!(err.contains("imported"), "{err}");

    let again = dir.path().join("again.jsonl");
    let (ok, err) = store(&target, &["export", "-o", &again.to_string_lossy()])?;
    assert!(ok, "{err}");
    let after = objects(&again)?;
    for (id, object) in &before {
        let Some(copy) = after.get(id) else {
            bail!("{id} missing after the import");
        };
        // The clusters' own objects (namespaces default and kube-system, the
        // `kubernetes` Service, ...) existed on both sides and were left alone.
        let system =
            object["metadata"]["namespace"] != "team" && object["metadata"]["name"] != "team";
        if !system {
            assert_eq!(copy, object, "{id} equal after the round trip");
        }
    }

    // The imported objects work: kubectl reads them, and the allocator knows the
    // imported Service's addresses, so a new Service gets other ones.
    let ip = target.ok(&[
        "get",
        "service",
        "web",
        "-n",
        "team",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?;
    assert_eq!(ip, before["Service/team/web"]["spec"]["clusterIP"]);
    target.ok(&[
        "create",
        "service",
        "nodeport",
        "other",
        "--tcp=80:8080",
        "-n",
        "team",
    ])?;
    let other = target.ok(&[
        "get",
        "service",
        "other",
        "-n",
        "team",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ])?;
    let imported_port = before["Service/team/web"]["spec"]["ports"][0]["nodePort"].to_string();
    assert!(
        !other.starts_with(&format!("{ip} ")),
        "new service {other} vs imported {ip}"
    );
    assert!(
        !other.ends_with(&format!(" {imported_port}")),
        "new service {other} vs imported node port {imported_port}"
    );

    // Importing the same file again changes nothing.
    let (ok, err) = store(&target, &["import", &exported.to_string_lossy()])?;
    assert!(ok, "{err}");
    assert!(err.contains("imported 0 objects"), "{err}");
    Ok(())
}
