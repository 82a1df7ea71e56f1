//! A watch streams the changes after its revision, bookmarks when asked, and ends at its timeout.

use anyhow::Result;
use kubernel_e2e::Cluster;
use serde_json::Value;

fn configmap(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"k":"v"}}}}"#
    )
}

#[test]
fn watch_should_stream_changes_and_bookmarks_until_its_timeout() -> Result<()> {
    let c = Cluster::start("")?;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (status, body) = c.send("POST", cms, "application/json", configmap("a").as_bytes())?;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body)?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();

    let (watched, writes) = std::thread::scope(|s| {
        let watch = s.spawn(|| {
            c.get(&format!(
                "{cms}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3"
            ))
        });
        let writes = vec![
            c.send("POST", cms, "application/json", configmap("b").as_bytes()),
            c.send("POST", cms, "application/json", configmap("c").as_bytes()),
            c.send("DELETE", &format!("{cms}/a"), "application/json", b""),
        ];
        (watch.join(), writes)
    });
    for w in writes {
        assert!(matches!(w?.0, 200 | 201));
    }
    let (status, body) = watched.map_err(|_| anyhow::anyhow!("watch thread panicked"))??;
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let changes: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["type"] != "BOOKMARK")
        .map(|l| {
            (
                l["type"].as_str().unwrap_or("").to_string(),
                l["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("ADDED".to_string(), "b".to_string()),
            ("ADDED".to_string(), "c".to_string()),
            ("DELETED".to_string(), "a".to_string())
        ],
        "{body}"
    );
    let bookmark = lines.iter().find(|l| l["type"] == "BOOKMARK");
    assert!(
        bookmark.is_some_and(|b| b["object"]["kind"] == "ConfigMap"
            && b["object"]["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|v| !v.is_empty())),
        "a bookmark within the 3 s watch (interval 1 s): {body}"
    );
    Ok(())
}
