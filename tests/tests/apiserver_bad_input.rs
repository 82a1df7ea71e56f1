//! Bad input to the API gets a clear 4xx `Status` and never takes the apiserver down.

use anyhow::Result;
use kubernel_e2e::Cluster;
use serde_json::Value;

fn status_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// (method, path, content type, body, expected code, expected reason).
type Case<'a> = (&'a str, String, &'a str, Vec<u8>, u16, &'a str);

#[test]
fn malformed_requests_should_get_4xx_statuses() -> Result<()> {
    let c = Cluster::start("")?;
    let pods = "/api/v1/namespaces/default/pods";
    let long_name = "a".repeat(254);
    let cases: Vec<Case> = vec![
        ("POST", pods.into(), "application/json", b"{not json".to_vec(), 400, "BadRequest"),
        ("POST", pods.into(), "application/yaml", b"kind: [unclosed".to_vec(), 400, "BadRequest"),
        ("POST", pods.into(), "application/json", br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("POST", pods.into(), "application/json", format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{long_name}"}},"spec":{{"containers":[{{"name":"c","image":"i"}}]}}}}"#).into_bytes(), 422, "Invalid"),
        ("POST", pods.into(), "application/json", br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":"eighty"}]}]}}"#.to_vec(), 400, "BadRequest"),
        ("POST", pods.into(), "text/html", b"<html>".to_vec(), 415, "UnsupportedMediaType"),
        ("POST", pods.into(), "application/json", vec![b' '; 4 * 1024 * 1024], 413, "RequestEntityTooLarge"),
        ("POST", pods.into(), "application/json", (0..2048u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(), 400, "BadRequest"),
        ("GET", format!("{pods}?labelSelector=a%20b%3Dc"), "", vec![], 400, "BadRequest"),
        ("GET", format!("{pods}?fieldSelector=spec.nope%3Dx"), "", vec![], 400, "BadRequest"),
        ("GET", format!("{pods}?continue=bm90IGEgdG9rZW4"), "", vec![], 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/widgets".into(), "", vec![], 404, "NotFound"),
        ("PATCH", format!("{pods}/none"), "application/xml", b"<x/>".to_vec(), 415, "UnsupportedMediaType"),
        ("PUT", "/api/v1/namespaces/default/pods".into(), "application/json", b"{}".to_vec(), 405, "MethodNotAllowed"),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let (status, text) = c.send(
            method,
            &path,
            if ct.is_empty() {
                "application/json"
            } else {
                ct
            },
            &body,
        )?;
        let s = status_of(&text);
        assert_eq!(status, code, "{method} {path} ({ct}): {text}");
        assert_eq!(s["kind"], "Status", "{method} {path}: {text}");
        assert_eq!(s["reason"], reason, "{method} {path}: {text}");
        assert_eq!(s["code"], code, "{method} {path}: {text}");
        assert!(
            s["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    // Still serving after all of it.
    assert_eq!(c.get("/api/v1/namespaces/default/pods")?.0, 200);
    Ok(())
}

#[test]
fn stale_update_should_conflict_and_old_watch_should_expire() -> Result<()> {
    let c = Cluster::start("history_revisions = 5\n")?;
    let cm = |name: &str, v: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"v":"{v}"}}}}"#
        )
    };
    let (status, body) = c.send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        cm("a", "1").as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    let created = status_of(&body);
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut update = created.clone();
    update["data"]["v"] = "2".into();
    let (status, _) = c.send(
        "PUT",
        "/api/v1/namespaces/default/configmaps/a",
        "application/json",
        update.to_string().as_bytes(),
    )?;
    assert_eq!(status, 200);
    update["data"]["v"] = "3".into();
    let (status, body) = c.send(
        "PUT",
        "/api/v1/namespaces/default/configmaps/a",
        "application/json",
        update.to_string().as_bytes(),
    )?;
    assert_eq!(status, 409, "stale resourceVersion {rv}: {body}");
    assert!(body.contains("the object has been modified"), "{body}");

    for i in 0..10 {
        c.send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            cm(&format!("f{i}"), "x").as_bytes(),
        )?;
    }
    let (status, body) = c.get(&format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    ))?;
    assert_eq!(status, 200);
    let first: Value =
        serde_json::from_str(body.lines().next().unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(first["type"], "ERROR", "{body}");
    assert_eq!(first["object"]["code"], 410, "{body}");
    assert_eq!(first["object"]["reason"], "Expired", "{body}");
    Ok(())
}

#[test]
fn acknowledged_writes_should_survive_kill_9() -> Result<()> {
    let c = Cluster::start("")?;
    let mut acked = Vec::new();
    for i in 0..50 {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}"}},"data":{{"i":"{i}"}}}}"#
        );
        let (status, _) = c.send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            body.as_bytes(),
        )?;
        if status == 201 {
            acked.push(format!("cm-{i}"));
        }
    }
    assert_eq!(acked.len(), 50);
    let restarted = c.kill_and_restart()?;
    let (status, body) = restarted.get("/api/v1/namespaces/default/configmaps")?;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body)?;
    let names: Vec<&str> = list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for name in &acked {
        assert!(names.contains(&name.as_str()), "{name} lost after kill -9");
    }
    Ok(())
}

#[test]
fn eviction_should_honour_the_disruption_budget() -> Result<()> {
    let c = Cluster::start("")?;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"db"}},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
    assert_eq!(
        c.send(
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            pod.as_bytes()
        )?
        .0,
        201
    );
    let (_, body) = c.get("/api/v1/namespaces/default/pods/p")?;
    let mut running: Value = serde_json::from_str(&body)?;
    running["status"]["phase"] = "Running".into();
    let (status, body) = c.send(
        "PUT",
        "/api/v1/namespaces/default/pods/p/status",
        "application/json",
        running.to_string().as_bytes(),
    )?;
    assert_eq!(status, 200, "{body}");
    let pdb = r#"{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"db"},"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"db"}}}}"#;
    assert_eq!(
        c.send(
            "POST",
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            "application/json",
            pdb.as_bytes()
        )?
        .0,
        201
    );

    let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p","namespace":"default"}}"#;
    let (status, body) = c.send(
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        "application/json",
        eviction.as_bytes(),
    )?;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{body}"
    );

    let (_, body) = c.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/db")?;
    let mut budget: Value = serde_json::from_str(&body)?;
    budget["status"] = serde_json::json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1});
    let (status, body) = c.send(
        "PUT",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/db/status",
        "application/json",
        budget.to_string().as_bytes(),
    )?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.send(
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        "application/json",
        eviction.as_bytes(),
    )?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(c.get("/api/v1/namespaces/default/pods/p")?.0, 404);
    let (_, body) = c.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/db")?;
    assert!(
        body.contains("\"disruptionsAllowed\":0"),
        "the eviction used the allowed disruption: {body}"
    );
    Ok(())
}

#[test]
fn deeply_nested_yaml_should_be_refused_while_the_api_keeps_answering() -> Result<()> {
    let c = Cluster::start("")?;
    let pods = "/api/v1/namespaces/default/pods";
    // Each about 2.5 MB, under the 3 MiB body limit: parsed naively, any of them
    // keeps a core busy for minutes.
    let attacks: Vec<(&str, String, &str, String)> = vec![
        (
            "POST",
            pods.into(),
            "application/yaml",
            "[".repeat(2_500_000),
        ),
        (
            "POST",
            pods.into(),
            "application/yaml",
            format!(
                "apiVersion: v1\nkind: Pod\nspec: {}",
                "{a: ".repeat(600_000)
            ),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/deep?fieldManager=e2e".into(),
            "application/apply-patch+yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata: {}",
                "{\"\": [".repeat(400_000)
            ),
        ),
    ];
    let (answers, health) = std::thread::scope(|s| {
        let sent: Vec<_> = attacks
            .iter()
            .map(|(method, path, ct, body)| s.spawn(|| c.send(method, path, ct, body.as_bytes())))
            .collect();
        // Meanwhile the API keeps answering.
        let mut health = Vec::new();
        while health.len() < 5 || sent.iter().any(|t| !t.is_finished()) {
            health.push((c.get("/readyz"), c.get(pods)));
            if health.len() >= 200 {
                break;
            }
        }
        let answers: Vec<_> = sent.into_iter().map(|t| t.join()).collect();
        (answers, health)
    });
    for (ready, list) in health {
        assert_eq!(ready?, (200, "ok".to_string()));
        assert_eq!(list?.0, 200);
    }
    for ((method, path, ct, _), answer) in attacks.iter().zip(answers) {
        let (status, text) =
            answer.map_err(|_| anyhow::anyhow!("{method} {path}: sender panicked"))??;
        let s = status_of(&text);
        assert_eq!(status, 400, "{method} {path} ({ct}): {text}");
        assert_eq!(s["reason"], "BadRequest", "{text}");
        let message = s["message"].as_str().unwrap_or("");
        assert!(
            message.contains("yaml: collections nest deeper than 100 levels at line"),
            "{method} {path} ({ct}): {message}"
        );
    }

    // Aliases that expand exponentially (billion laughs) are refused too.
    let mut laughs = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (prev, next) in ('a'..='h').zip('b'..='i') {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        laughs.push_str(&format!("{next}: &{next} [{refs}]\n"));
    }
    let (status, text) = c.send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        laughs.as_bytes(),
    )?;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("yaml: aliases expand the document to more than"),
        "{text}"
    );

    // An ordinary YAML body still creates.
    let (status, text) = c.send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\ndata:\n  nested: '[[[{{{'\n",
    )?;
    assert_eq!(status, 201, "{text}");
    Ok(())
}
