//! The audit log through the real kubectl: events of creates and denials with
//! upstream's fields, the `Audit-Id` header, requests over the bus, and a policy that
//! leaves a user out and logs request bodies.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use kubernel_api::rest::ApiRequest;
use kubernel_e2e::{kubectl_as, run_refused, Cluster};
use serde_json::Value;

/// The events in the log once `want` of them match `pred` (the writer is asynchronous).
fn events_until(log: &Path, want: usize, pred: impl Fn(&Value) -> bool) -> Result<Vec<Value>> {
    let mut events = Vec::new();
    for _ in 0..250 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        events = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()?;
        if events.iter().filter(|e| pred(e)).count() >= want {
            return Ok(events);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "fewer than {want} matching events in {}:\n{events:#?}",
        log.display()
    )
}

fn config(log: &Path, policy: Option<&Path>) -> String {
    let mut c = format!("audit_log_path = \"{}\"\n", log.display());
    if let Some(p) = policy {
        c.push_str(&format!("audit_policy_file = \"{}\"\n", p.display()));
    }
    c
}

fn is(e: &Value, verb: &str, user: &str, resource: &str) -> bool {
    e["verb"] == verb && e["user"]["username"] == user && e["objectRef"]["resource"] == resource
}

#[test]
fn audit_log_should_record_creates_and_denials() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.log");
    let c = Cluster::start(&config(&log, None))?;
    c.ok(&["create", "configmap", "c1", "--from-literal=a=b"])?;
    let alice = c.issue_kubeconfig(dir.path(), "alice", &[])?;
    let (ok, _, err) = kubectl_as(&alice, &["get", "pods"], "")?;
    assert!(!ok && err.contains("forbidden"), "{err}");

    let events = events_until(&log, 2, |e| {
        is(e, "create", "kubernetes-admin", "configmaps") || is(e, "list", "alice", "pods")
    })?;
    let create = events
        .iter()
        .find(|e| is(e, "create", "kubernetes-admin", "configmaps"))
        .expect("create event");
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["level"], "Metadata");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["objectRef"]["namespace"], "default");
    assert_eq!(create["objectRef"]["name"], "c1");
    assert_eq!(create["objectRef"]["apiVersion"], "v1");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert!(create["user"]["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g == "system:masters")));
    assert_eq!(create["sourceIPs"][0], "127.0.0.1");
    assert!(create["userAgent"]
        .as_str()
        .is_some_and(|a| a.starts_with("kubectl")));
    assert!(create.get("requestObject").is_none(), "{create}");
    assert!(create["requestURI"]
        .as_str()
        .is_some_and(|u| u.starts_with("/api/v1/namespaces/default/configmaps")));
    assert_eq!(create["auditID"].as_str().map(str::len), Some(36));
    assert!(create["requestReceivedTimestamp"].is_string());
    assert!(create["stageTimestamp"].is_string());

    let denied = events
        .iter()
        .find(|e| is(e, "list", "alice", "pods"))
        .expect("denied event");
    assert_eq!(denied["objectRef"]["namespace"], "default");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(denied["responseStatus"]["reason"], "Forbidden");
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );

    // The Audit-Id header names the event of its request.
    let resp = ureq::get(&format!(
        "{}/api/v1/namespaces/default/configmaps/c1",
        c.api
    ))
    .call()?;
    let id = resp
        .headers()
        .get("audit-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 36, "Audit-Id header: {id:?}");
    let events = events_until(&log, 1, |e| e["auditID"] == id.as_str())?;
    let get = events
        .iter()
        .find(|e| e["auditID"] == id.as_str())
        .expect("event of the Audit-Id");
    assert_eq!(get["verb"], "get");
    assert_eq!(get["user"]["username"], "system:unsecured");
    assert_eq!(get["objectRef"]["name"], "c1");
    assert_eq!(get["responseStatus"]["code"], 200);

    // A request over the bus is audited as the identity it runs as.
    let over_bus = c.kernel.ask(
        "@apiserver",
        &ApiRequest {
            method: "GET".into(),
            path: "/api/v1/namespaces/default/configmaps/c1".into(),
            content_type: String::new(),
            accept: String::new(),
            body: Vec::new(),
        },
    )?;
    assert_eq!(over_bus.status, 200);
    let from_bus = |e: &Value| {
        e["verb"] == "get"
            && e["objectRef"]["name"] == "c1"
            && e["user"]["username"]
                .as_str()
                .is_some_and(|u| u.starts_with("system:") && u != "system:unsecured")
    };
    let events = events_until(&log, 1, from_bus)?;
    let bus = events.iter().find(|e| from_bus(e)).expect("bus event");
    assert_eq!(bus["responseStatus"]["code"], 200);
    assert!(bus.get("sourceIPs").is_none(), "{bus}");

    let (_, metrics) = c.kernel.get("/metrics")?;
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_audit_event_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(counted >= 3.0, "apiserver_audit_event_total {counted}");
    Ok(())
}

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    users: ["alice"]
  - level: Request
    resources:
      - group: ""
        resources: ["configmaps"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["secrets"]
  - level: Metadata
"#;

#[test]
fn audit_policy_should_leave_out_users_and_log_bodies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.log");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let c = Cluster::start(&config(&log, Some(&policy)))?;
    let alice = c.issue_kubeconfig(dir.path(), "alice", &[])?;
    let (ok, _, _) = kubectl_as(&alice, &["get", "pods"], "")?;
    assert!(!ok);
    let (ok, _, _) = kubectl_as(&alice, &["create", "configmap", "x"], "")?;
    assert!(!ok);
    // kubectl sends this one as protobuf: logged as JSON.
    c.ok(&["create", "configmap", "c2", "--from-literal=k=v"])?;
    c.ok(&["get", "pods"])?;
    c.ok(&["create", "secret", "generic", "s1", "--from-literal=p=q"])?;

    let events = events_until(&log, 2, |e| {
        is(e, "create", "kubernetes-admin", "configmaps")
            || is(e, "list", "kubernetes-admin", "pods")
    })?;
    assert!(
        !events.iter().any(|e| e["user"]["username"] == "alice"),
        "alice is left out: {events:#?}"
    );
    let create = events
        .iter()
        .find(|e| is(e, "create", "kubernetes-admin", "configmaps"))
        .expect("create event");
    assert_eq!(create["level"], "Request");
    assert_eq!(create["requestObject"]["data"]["k"], "v", "{create}");
    assert_eq!(create["requestObject"]["metadata"]["name"], "c2");
    let list = events
        .iter()
        .find(|e| is(e, "list", "kubernetes-admin", "pods"))
        .expect("list event");
    assert_eq!(list["level"], "Metadata");
    assert!(list.get("requestObject").is_none());
    assert!(list.get("responseObject").is_none());
    let events = events_until(&log, 1, |e| is(e, "create", "kubernetes-admin", "secrets"))?;
    let secret = events
        .iter()
        .find(|e| is(e, "create", "kubernetes-admin", "secrets"))
        .expect("secret event");
    assert_eq!(secret["level"], "RequestResponse");
    assert_eq!(secret["requestObject"]["metadata"]["name"], "s1");
    assert_eq!(secret["responseObject"]["kind"], "Secret", "{secret}");
    assert!(secret["responseObject"]["metadata"]["uid"].is_string());
    Ok(())
}

#[test]
fn a_bad_audit_policy_should_be_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n",
    )?;
    let config = format!(
        "{}\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nsecure_port = 0\n{}",
        kubernel_e2e::kernel_section(),
        kubernel_e2e::apiserver_lib().display(),
        config(&dir.path().join("audit.log"), Some(&policy))
    );
    let (code, err) = run_refused(&config, &[])?;
    assert_ne!(code, Some(0));
    if !(err.contains("audit_policy_file") && err.contains(&policy.display().to_string())) {
        bail!("unclear refusal: {err}");
    }
    Ok(())
}
