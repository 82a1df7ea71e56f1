//! A paginated list is a snapshot: every page shows the collection as of the first page, until that revision is compacted (410 with an inconsistent continue token); `resourceVersionMatch=Exact` lists at a past revision.

use anyhow::{anyhow, Context, Result};
use kubernel_e2e::{Cluster, Etcd};
use serde_json::Value;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str, value: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"k":"{value}"}}}}"#
    )
}

/// Creates configmap `name` with `data.k = value`.
fn create(c: &Cluster, name: &str, value: &str) -> Result<()> {
    let (status, body) = c.send(
        "POST",
        CMS,
        "application/json",
        configmap(name, value).as_bytes(),
    )?;
    anyhow::ensure!(status == 201, "create {name}: {status} {body}");
    Ok(())
}

/// GETs `path` and parses the JSON body, failing unless the status is `expected`.
fn get_json(c: &Cluster, path: &str, expected: u16) -> Result<Value> {
    let (status, body) = c.get(path)?;
    anyhow::ensure!(status == expected, "GET {path}: {status} {body}");
    serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
}

/// `(name, data.k)` of each item of a list.
fn items(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    (
                        item["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                        item["data"]["k"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn str_field<'a>(value: &'a Value, pointer: &str) -> Result<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no {pointer} in {value}"))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn later_pages_should_show_the_collection_as_of_the_first_page() -> Result<()> {
    let c = Cluster::start("")?;
    for name in ["b", "c", "d", "e", "f"] {
        create(&c, name, "1")?;
    }
    let first = get_json(&c, &format!("{CMS}?limit=2"), 200)?;
    assert_eq!(items(&first), pairs(&[("b", "1"), ("c", "1")]));
    let snapshot = str_field(&first, "/metadata/resourceVersion")?.to_owned();
    assert_eq!(first["metadata"]["remainingItemCount"], 3, "{first}");
    let token = str_field(&first, "/metadata/continue")?.to_owned();

    // Changes after the first page: none of them may show in the later pages.
    create(&c, "a", "1")?;
    create(&c, "dd", "1")?;
    let (status, body) = c.send("DELETE", &format!("{CMS}/d"), "application/json", b"")?;
    assert_eq!(status, 200, "delete d: {body}");
    let (status, body) = c.send(
        "PATCH",
        &format!("{CMS}/e"),
        "application/merge-patch+json",
        br#"{"data":{"k":"2"}}"#,
    )?;
    assert_eq!(status, 200, "patch e: {body}");

    let second = get_json(&c, &format!("{CMS}?limit=2&continue={token}"), 200)?;
    assert_eq!(items(&second), pairs(&[("d", "1"), ("e", "1")]));
    assert_eq!(str_field(&second, "/metadata/resourceVersion")?, snapshot);
    let token = str_field(&second, "/metadata/continue")?.to_owned();
    let third = get_json(&c, &format!("{CMS}?limit=2&continue={token}"), 200)?;
    assert_eq!(items(&third), pairs(&[("f", "1")]));
    assert_eq!(str_field(&third, "/metadata/resourceVersion")?, snapshot);
    assert!(third["metadata"].get("continue").is_none(), "{third}");

    // A new list sees the changes.
    let now = get_json(&c, CMS, 200)?;
    assert_eq!(
        items(&now),
        pairs(&[
            ("a", "1"),
            ("b", "1"),
            ("c", "1"),
            ("dd", "1"),
            ("e", "2"),
            ("f", "1")
        ])
    );
    assert_ne!(str_field(&now, "/metadata/resourceVersion")?, snapshot);

    // kubectl's own chunked list (--chunk-size) reads through the same tokens.
    let out = c.ok(&["get", "configmaps", "--chunk-size=2", "-o", "name"])?;
    assert_eq!(
        out.lines().filter(|l| l.starts_with("configmap/")).count(),
        6,
        "{out}"
    );
    Ok(())
}

#[test]
fn a_continue_token_at_a_compacted_revision_should_answer_410_with_an_inconsistent_token(
) -> Result<()> {
    let c = Cluster::start("history_revisions = 3\n")?;
    for name in ["a", "b", "c", "d"] {
        create(&c, name, "1")?;
    }
    let first = get_json(&c, &format!("{CMS}?limit=2"), 200)?;
    let token = str_field(&first, "/metadata/continue")?.to_owned();
    for i in 0..5 {
        create(&c, &format!("z{i}"), "1")?;
    }
    let expired = get_json(&c, &format!("{CMS}?limit=2&continue={token}"), 410)?;
    assert_eq!(expired["kind"], "Status", "{expired}");
    assert_eq!(expired["reason"], "Expired", "{expired}");
    assert_eq!(expired["code"], 410, "{expired}");
    assert_eq!(
        str_field(&expired, "/message")?,
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
    );
    // The inconsistent token continues after the first page, at the current revision.
    let inconsistent = str_field(&expired, "/metadata/continue")?.to_owned();
    let rest = get_json(&c, &format!("{CMS}?continue={inconsistent}"), 200)?;
    let names: Vec<String> = items(&rest).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["c", "d", "z0", "z1", "z2", "z3", "z4"]);
    let current = get_json(&c, CMS, 200)?;
    assert_eq!(
        str_field(&rest, "/metadata/resourceVersion")?,
        str_field(&current, "/metadata/resourceVersion")?
    );

    let (status, body) = c.get(&format!("{CMS}?limit=2&continue=not-a-token"))?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("continue key is not valid"), "{body}");
    Ok(())
}

#[test]
fn a_list_should_continue_on_another_apiserver_of_the_same_etcd() -> Result<()> {
    let etcd = Etcd::start()?;
    let a = Cluster::start_on_etcd(&etcd.endpoint, "")?;
    let b = Cluster::start_on_etcd(&etcd.endpoint, "")?;
    for name in ["p", "q", "r", "s"] {
        create(&a, name, "1")?;
    }
    // B's watch cache may be a moment behind A's: it waits for the token's revision.
    let first = get_json(&a, &format!("{CMS}?limit=2"), 200)?;
    let snapshot = str_field(&first, "/metadata/resourceVersion")?.to_owned();
    let token = str_field(&first, "/metadata/continue")?.to_owned();
    create(&a, "qq", "1")?;
    let second = get_json(&b, &format!("{CMS}?limit=2&continue={token}"), 200)?;
    assert_eq!(items(&second), pairs(&[("r", "1"), ("s", "1")]));
    assert_eq!(str_field(&second, "/metadata/resourceVersion")?, snapshot);
    Ok(())
}

#[test]
fn a_list_should_honour_resource_version_and_resource_version_match() -> Result<()> {
    let c = Cluster::start("history_revisions = 20\n")?;
    create(&c, "a", "1")?;
    create(&c, "b", "1")?;
    let then = get_json(&c, CMS, 200)?;
    let rv = str_field(&then, "/metadata/resourceVersion")?.to_owned();
    let (status, body) = c.send("DELETE", &format!("{CMS}/a"), "application/json", b"")?;
    assert_eq!(status, 200, "{body}");
    create(&c, "c", "1")?;

    // Exact: the collection as it was, paginated at that revision too.
    let exact = get_json(
        &c,
        &format!("{CMS}?resourceVersion={rv}&resourceVersionMatch=Exact"),
        200,
    )?;
    assert_eq!(items(&exact), pairs(&[("a", "1"), ("b", "1")]));
    assert_eq!(str_field(&exact, "/metadata/resourceVersion")?, rv);
    let first = get_json(
        &c,
        &format!("{CMS}?resourceVersion={rv}&resourceVersionMatch=Exact&limit=1"),
        200,
    )?;
    let token = str_field(&first, "/metadata/continue")?.to_owned();
    let second = get_json(&c, &format!("{CMS}?limit=1&continue={token}"), 200)?;
    assert_eq!(items(&second), pairs(&[("b", "1")]));
    // NotOlderThan (the default) and "0": the current state.
    let now = get_json(&c, &format!("{CMS}?resourceVersion={rv}"), 200)?;
    assert_eq!(items(&now), pairs(&[("b", "1"), ("c", "1")]));
    let any = get_json(&c, &format!("{CMS}?resourceVersion=0"), 200)?;
    assert_eq!(items(&any), pairs(&[("b", "1"), ("c", "1")]));

    // Upstream's checks and answers.
    let invalid = get_json(&c, &format!("{CMS}?resourceVersionMatch=Exact"), 422)?;
    assert_eq!(
        str_field(&invalid, "/message")?,
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
    );
    let invalid = get_json(
        &c,
        &format!("{CMS}?resourceVersion=0&resourceVersionMatch=Exact"),
        422,
    )?;
    assert!(
        str_field(&invalid, "/message")?
            .contains("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""),
        "{invalid}"
    );
    let invalid = get_json(
        &c,
        &format!("{CMS}?resourceVersion={rv}&resourceVersionMatch=Newest"),
        422,
    )?;
    assert!(
        str_field(&invalid, "/message")?.contains("Unsupported value: \"Newest\""),
        "{invalid}"
    );
    let bad = get_json(
        &c,
        &format!("{CMS}?resourceVersion={rv}&limit=1&continue={token}"),
        400,
    )?;
    assert_eq!(
        str_field(&bad, "/message")?,
        "specifying resource version is not allowed when using continue"
    );
    get_json(&c, &format!("{CMS}?resourceVersion=abc"), 400)?;

    // A revision the store has not reached: 504 after a short wait, as upstream.
    let ahead = get_json(&c, &format!("{CMS}?resourceVersion=999999"), 504)?;
    assert_eq!(ahead["reason"], "Timeout", "{ahead}");
    assert!(
        str_field(&ahead, "/message")?.starts_with("Too large resource version: 999999"),
        "{ahead}"
    );

    // A revision compacted away: 410.
    for i in 0..25 {
        create(&c, &format!("z{i}"), "1")?;
    }
    let gone = get_json(
        &c,
        &format!("{CMS}?resourceVersion={rv}&resourceVersionMatch=Exact"),
        410,
    )?;
    assert_eq!(
        str_field(&gone, "/message")?,
        "The resourceVersion for the provided list is too old."
    );
    assert_eq!(gone["reason"], "Expired");
    Ok(())
}
