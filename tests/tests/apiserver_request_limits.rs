//! Request limits as kube-apiserver answers them: 413 for a body over
//! `max_request_body_bytes`, 431 (or a closed connection) for headers over
//! `max_header_bytes`, 504 `Timeout` for a list that takes longer than its timeout
//! (`request_timeout` or `?timeout=`),
//! and 429 with `Retry-After` past `max_requests_inflight` (the max-in-flight
//! filter); under API Priority and Fairness, requests past their level's seats wait.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use anyhow::{bail, Result};
use kubernel_api::rest::ApiRequest;
use kubernel_e2e::Cluster;
use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Creates `n` config maps of about 8 KiB each: a list of them takes some milliseconds.
fn create_config_maps(c: &Cluster, n: usize) -> Result<()> {
    let filler = "x".repeat(8 * 1024);
    for i in 0..n {
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": format!("cm-{i}") },
            "data": { "filler": filler },
        });
        let (status, text) = c.send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            body.to_string().as_bytes(),
        )?;
        if status != 201 {
            bail!("create cm-{i}: {status} {text}");
        }
    }
    Ok(())
}

#[test]
fn a_body_over_the_limit_should_get_413() -> Result<()> {
    let c = Cluster::start("")?;
    let (status, body) = c.send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &vec![b' '; 3 * 1024 * 1024 + 1],
    )?;
    assert_eq!(status, 413, "{body}");
    let s: Value = serde_json::from_str(&body)?;
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], "RequestEntityTooLarge");
    assert_eq!(s["message"], "Request entity too large: limit is 3145728");
    assert_eq!(c.get("/version")?.0, 200);
    Ok(())
}

/// Sends a GET with one header of `size` bytes over a raw connection: the status
/// line, or none when the server closed or reset the connection first.
fn get_with_header(api: &str, size: usize) -> Result<Option<String>> {
    let addr = api.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = format!(
        "GET /version HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(size)
    );
    let mut writer = tcp.try_clone()?;
    let sender = std::thread::spawn(move || {
        // The server may stop reading once over its limit.
        let _ = writer.write_all(request.as_bytes());
    });
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&reply);
    Ok(text.lines().next().map(str::to_string))
}

#[test]
fn headers_over_the_limit_should_be_refused_and_the_server_keep_serving() -> Result<()> {
    let c = Cluster::start("max_header_bytes = 65536\n")?;
    let ok = get_with_header(&c.api, 16 * 1024)?;
    assert_eq!(ok.as_deref(), Some("HTTP/1.1 200 OK"));
    // Just over the limit the server has read nearly all of it: the 431 arrives.
    let refused = get_with_header(&c.api, 70 * 1024)?;
    assert!(
        refused
            .as_deref()
            .is_some_and(|l| l.starts_with("HTTP/1.1 431")),
        "{refused:?}"
    );
    // Far over it, the connection may be reset before the client reads the 431.
    if let Some(line) = get_with_header(&c.api, 4 * 1024 * 1024)? {
        assert!(line.starts_with("HTTP/1.1 431"), "{line}");
    }
    assert_eq!(c.get("/version")?.0, 200);

    // The default is Go's 1 MiB: a 600 KiB header (over hyper's own default) passes.
    let c = Cluster::start("")?;
    assert_eq!(
        get_with_header(&c.api, 600 * 1024)?.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    if let Some(line) = get_with_header(&c.api, 2 * 1024 * 1024)? {
        assert!(line.starts_with("HTTP/1.1 431"), "{line}");
    }
    assert_eq!(c.get("/version")?.0, 200);
    Ok(())
}

/// Checks a 504 body is upstream's request-timeout `Status`.
fn assert_timeout_status(body: &str) -> Result<()> {
    let s: Value = serde_json::from_str(body)?;
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["code"], 504);
    assert_eq!(s["reason"], "Timeout");
    assert_eq!(
        s["message"], "Timeout: request did not complete within the allotted timeout",
        "{body}"
    );
    Ok(())
}

#[test]
fn a_list_past_its_timeout_should_get_504() -> Result<()> {
    // A list at a revision the apiserver has not reached waits up to 3 s for it (then
    // answers its own 504 `Too large resource version`): a real slow request.
    let waiting = "/api/v1/namespaces/default/configmaps?resourceVersion=999999999";
    let c = Cluster::start("request_timeout = \"300ms\"\n")?;
    let (status, body) = c.get(waiting)?;
    assert_eq!(status, 504, "{body}");
    assert_timeout_status(&body)?;
    // Requests that finish in time are not affected.
    let (status, body) = c.get("/api/v1/namespaces/default/configmaps")?;
    assert_eq!(status, 200, "{body}");
    // Watches are long-running: not cut at the request timeout.
    let (status, body) =
        c.get("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")?;
    assert_eq!(status, 200, "{body}");
    drop(c);

    // With the default 60 s, a shorter `?timeout=` on the request wins.
    let c = Cluster::start("")?;
    let (status, body) = c.get(&format!("{waiting}&timeout=200ms"))?;
    assert_eq!(status, 504, "{body}");
    assert_timeout_status(&body)?;
    Ok(())
}

#[test]
fn requests_past_the_inflight_limit_should_get_429() -> Result<()> {
    let c = Cluster::start("max_requests_inflight = 1\nenable_priority_and_fairness = false\n")?;
    create_config_maps(&c, 200)?;
    let url = format!("{}/api/v1/namespaces/default/configmaps", c.api);
    let mut refused = None;
    for _ in 0..10 {
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || -> Result<(u16, Option<String>, String)> {
                    let mut resp = agent().get(&url).call()?;
                    let retry = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = resp.body_mut().read_to_string()?;
                    Ok((resp.status().as_u16(), retry, body))
                })
            })
            .collect();
        for t in threads {
            let Ok(result) = t.join() else {
                bail!("a client thread panicked");
            };
            let (status, retry, body) = result?;
            match status {
                200 => {}
                429 => refused = Some((retry, body)),
                other => bail!("unexpected {other}: {body}"),
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let Some((retry, body)) = refused else {
        bail!("60 concurrent lists with max_requests_inflight = 1 and no 429");
    };
    assert_eq!(retry.as_deref(), Some("1"));
    let s: Value = serde_json::from_str(&body)?;
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], "TooManyRequests");
    assert_eq!(s["message"], "Too many requests, please try again later.");
    assert_eq!(s["details"]["retryAfterSeconds"], 1);
    // The limit frees again.
    assert_eq!(
        c.get("/api/v1/namespaces/default/configmaps?limit=1")?.0,
        200
    );
    Ok(())
}

#[test]
fn requests_past_their_priority_levels_seats_should_wait_not_fail() -> Result<()> {
    // 2 seats in all: global-default gets ceil(2 * 20 / 245) = 1.
    let c = Cluster::start("max_requests_inflight = 1\nmax_mutating_requests_inflight = 1\n")?;
    create_config_maps(&c, 200)?;
    let global = [
        "flow_schema=\"global-default\"",
        "priority_level=\"global-default\"",
    ];
    assert_eq!(
        c.kernel
            .sample("apiserver_flowcontrol_nominal_limit_seats", &global[1..])?,
        Some(1.0)
    );
    // A plugin's bus identity (`system:kubernel:...`) is an ordinary user: global-default.
    let list = ApiRequest {
        method: "GET".into(),
        path: "/api/v1/namespaces/default/configmaps".into(),
        content_type: String::new(),
        accept: String::new(),
        body: Vec::new(),
    };
    let mut waited_for = global.to_vec();
    waited_for.push("execute=\"true\"");
    let waited = || -> Result<f64> {
        Ok(c.kernel
            .sample(
                "apiserver_flowcontrol_request_wait_duration_seconds_sum",
                &waited_for,
            )?
            .unwrap_or(0.0))
    };
    // Six lists of 1.6 MiB at once on one seat: some wait for it. On a crowded
    // machine the six threads may happen not to overlap, so the burst is
    // repeated (at most 5 times) until one did.
    for burst in 1..=5 {
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| -> Result<Vec<u16>> {
                        (0..5)
                            .map(|_| Ok(c.kernel.ask("@apiserver", &list)?.status))
                            .collect()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?)
                .collect::<Result<Vec<Vec<u16>>>>()
        })?
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(
            statuses,
            vec![200; 30],
            "every list is served, none refused"
        );
        let dispatched = c
            .kernel
            .sample("apiserver_flowcontrol_dispatched_requests_total", &global)?
            .unwrap_or(0.0);
        assert!(
            dispatched >= 30.0 * f64::from(burst),
            "dispatched {dispatched}"
        );
        if waited()? > 0.0 {
            break;
        }
    }
    assert!(waited()? > 0.0, "no request waited for a seat");
    // The admin's own requests (system:masters) are exempt.
    let exempt = c.kernel.sample(
        "apiserver_flowcontrol_dispatched_requests_total",
        &["flow_schema=\"exempt\""],
    )?;
    assert!(exempt.unwrap_or(0.0) >= 200.0, "exempt {exempt:?}");
    Ok(())
}
