//! Plugins in the apiserver's process reach the API over the kernel bus, through the same handler chain as HTTP: requests, and watches whose events come as bus messages.

use std::time::Duration;

use anyhow::{anyhow, Result};
use kubernel_api::rest::{ApiRequest, ApiResponse, ApiWatch, ApiWatchStop};
use kubernel_api::Message;
use kubernel_e2e::{apiserver_lib, eventually, kubernel, plugin_entry, Cluster};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn request(method: &str, path: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        content_type: if body.is_empty() {
            String::new()
        } else {
            "application/json".into()
        },
        accept: String::new(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn api_requests_over_the_bus_should_share_state_with_http() -> Result<()> {
    let c = Cluster::start("")?;
    let cm =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-bus"},"data":{"k":"v"}}"#;
    let created = c.kernel.ask(
        "@apiserver",
        &request("POST", "/api/v1/namespaces/default/configmaps", cm),
    )?;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert!(created.content_type.starts_with("application/json"));

    // The same object over HTTP, and kubectl sees it.
    let (status, body) = c.get("/api/v1/namespaces/default/configmaps/from-bus")?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        c.ok(&["get", "configmap", "from-bus", "-o", "jsonpath={.data.k}"])?,
        "v"
    );

    let list = c.kernel.ask(
        "apiserver",
        &request(
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=none%3Dhere",
            "",
        ),
    )?;
    assert_eq!(list.status, 200);
    assert!(String::from_utf8_lossy(&list.body).contains("\"items\":[]"));

    // Errors are the same Status objects.
    let dup = c.kernel.ask(
        "apiserver",
        &request("POST", "/api/v1/namespaces/default/configmaps", cm),
    )?;
    assert_eq!(dup.status, 409);
    assert!(String::from_utf8_lossy(&dup.body).contains("AlreadyExists"));
    let watch = c.kernel.ask(
        "apiserver",
        &request(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true",
            "",
        ),
    )?;
    assert_eq!(watch.status, 400, "an api.Request does not watch");
    assert!(String::from_utf8_lossy(&watch.body).contains("api.Watch"));
    Ok(())
}

/// The record the `api_watcher` test plugin keeps of one watch (its `test.WatchLog`).
#[derive(Debug, Serialize, Deserialize)]
struct WatchLog {
    id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct WatchRecord {
    lines: Vec<String>,
    messages: u64,
    ended: Option<String>,
    after_end: u64,
}

impl Message for WatchLog {
    const KIND: &'static str = "test.WatchLog";
    type Reply = WatchRecord;
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn configmap(name: &str, value: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bus"}}}},"data":{{"k":"{value}"}}}}"#
    )
}

/// Asks the watcher plugin to watch `path` over the bus as watch `id`.
fn watch(c: &Cluster, id: &str, path: &str, accept: &str) -> Result<ApiResponse> {
    c.kernel.ask(
        "watcher",
        &ApiWatch {
            id: id.into(),
            path: path.into(),
            accept: accept.into(),
        },
    )
}

fn record(c: &Cluster, id: &str) -> Result<WatchRecord> {
    c.kernel.ask("watcher", &WatchLog { id: id.into() })
}

/// `(type, name)` of each watch line of a record (the object's name, or a Table row's).
fn events(record: &WatchRecord) -> Result<Vec<(String, String)>> {
    record
        .lines
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line).map_err(|e| anyhow!("{line}: {e}"))?;
            let object = if v["object"]["kind"] == "Table" {
                &v["object"]["rows"][0]["object"]
            } else {
                &v["object"]
            };
            Ok((
                v["type"].as_str().unwrap_or("").to_owned(),
                object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
        .collect()
}

#[test]
fn a_plugin_should_watch_over_the_bus_until_it_stops_or_the_watch_times_out() -> Result<()> {
    let c = Cluster::start(&plugin_entry("watcher", "api_watcher"))?;
    let (status, body) = c.send(
        "POST",
        CMS,
        "application/json",
        configmap("a", "1").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body)?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_owned();

    // A JSON watch from a resourceVersion, and a Table watch (kubectl get -w's) from now.
    let started = watch(
        &c,
        "json",
        &format!("{CMS}?resourceVersion={rv}&timeoutSeconds=60"),
        "",
    )?;
    assert_eq!(
        started.status,
        200,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    assert!(started.content_type.starts_with("application/json"));
    let started = watch(
        &c,
        "table",
        &format!("{CMS}?watch=1&labelSelector=app%3Dbus&resourceVersion={rv}&timeoutSeconds=60"),
        TABLE,
    )?;
    assert_eq!(
        started.status,
        200,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    assert!(
        started.content_type.contains("as=Table"),
        "{}",
        started.content_type
    );

    // Changes over HTTP and over the bus reach both watchers, in order.
    let (status, body) = c.send(
        "POST",
        CMS,
        "application/json",
        configmap("b", "1").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    let patched = c.kernel.ask(
        "apiserver",
        &ApiRequest {
            method: "PATCH".into(),
            path: format!("{CMS}/a"),
            content_type: "application/merge-patch+json".into(),
            accept: String::new(),
            body: br#"{"data":{"k":"2"}}"#.to_vec(),
        },
    )?;
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    let (status, body) = c.send("DELETE", &format!("{CMS}/b"), "application/json", b"")?;
    assert_eq!(status, 200, "{body}");
    let expected = pairs(&[("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]);
    eventually(
        Duration::from_secs(10),
        "both bus watches see the three changes",
        || {
            Ok(events(&record(&c, "json")?)? == expected
                && events(&record(&c, "table")?)?.len() == 3)
        },
    )?;
    let table = record(&c, "table")?;
    let first: Value = serde_json::from_str(&table.lines[0])?;
    assert_eq!(first["object"]["kind"], "Table", "{first}");
    assert!(first["object"]["columnDefinitions"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(events(&table)?, expected);

    // The same id twice is refused; so are bad watches, with the HTTP Status.
    let again = watch(&c, "json", CMS, "")?;
    assert_eq!(
        again.status,
        400,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    let bad = watch(&c, "bad", &format!("{CMS}?resourceVersion=abc"), "")?;
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
    let missing = watch(&c, "missing", "/api/v1/namespaces/default/nothings", "")?;
    assert_eq!(
        missing.status,
        404,
        "{}",
        String::from_utf8_lossy(&missing.body)
    );
    let status: Value = serde_json::from_slice(&missing.body)?;
    assert_eq!(status["kind"], "Status");

    // A stop ends the watch with one api.WatchEnded; later changes do not reach it.
    assert!(c
        .kernel
        .ask("watcher", &ApiWatchStop { id: "json".into() })?);
    eventually(Duration::from_secs(10), "the stopped watch ends", || {
        Ok(record(&c, "json")?.ended.as_deref() == Some("stopped"))
    })?;
    assert!(!c
        .kernel
        .ask("watcher", &ApiWatchStop { id: "json".into() })?);
    let (status, body) = c.send(
        "POST",
        CMS,
        "application/json",
        configmap("c", "1").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    eventually(Duration::from_secs(10), "the table watch sees c", || {
        Ok(events(&record(&c, "table")?)?.contains(&("ADDED".to_owned(), "c".to_owned())))
    })?;
    let stopped = record(&c, "json")?;
    assert_eq!((events(&stopped)?, stopped.after_end), (expected, 0));

    // timeoutSeconds ends a watch as over HTTP; its id can then be reused.
    let started = watch(&c, "short", &format!("{CMS}?timeoutSeconds=1"), "")?;
    assert_eq!(
        started.status,
        200,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    eventually(Duration::from_secs(10), "the watch times out", || {
        Ok(record(&c, "short")?.ended.as_deref() == Some("closed"))
    })?;
    let initial = events(&record(&c, "short")?)?;
    assert_eq!(
        initial,
        pairs(&[("ADDED", "a"), ("ADDED", "c")]),
        "without a resourceVersion it starts with the current objects"
    );
    let again = watch(&c, "short", &format!("{CMS}?timeoutSeconds=1"), "")?;
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );

    Ok(())
}

#[test]
fn a_hot_swap_of_the_apiserver_should_end_its_bus_watches() -> Result<()> {
    let c = Cluster::start(&plugin_entry("watcher", "api_watcher"))?;
    // The swap closes open bus watches with an api.WatchEnded; the watcher re-watches.
    let started = watch(&c, "swap", &format!("{CMS}?timeoutSeconds=60"), "")?;
    assert_eq!(started.status, 200);
    let data = c.kernel.data_dir().display().to_string();
    let lib = apiserver_lib().display().to_string();
    let (status, out, err) = kubernel(&["--data-dir", &data, "swap", "apiserver", &lib], &[])?;
    assert!(status.success(), "swap: {out} {err}");
    eventually(
        Duration::from_secs(10),
        "the swap closes the bus watch",
        || {
            let swapped = record(&c, "swap")?;
            match swapped.ended.as_deref() {
                Some("closed") => Ok(true),
                _ => Err(anyhow!("not closed: {swapped:?}")),
            }
        },
    )?;
    let rewatch = watch(&c, "swap", &format!("{CMS}?timeoutSeconds=60"), "")?;
    assert_eq!(
        rewatch.status,
        200,
        "{}",
        String::from_utf8_lossy(&rewatch.body)
    );
    let (status, body) = c.send(
        "POST",
        CMS,
        "application/json",
        configmap("after", "1").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    eventually(
        Duration::from_secs(10),
        "the new watch sees a change",
        || Ok(events(&record(&c, "swap")?)?.contains(&("ADDED".to_owned(), "after".to_owned()))),
    )?;
    Ok(())
}
