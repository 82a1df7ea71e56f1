//! kubectl apply (twice, changed), scale, get -w and delete with each propagation policy on Deployments.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use kubernel_e2e::Cluster;

fn deployment(replicas: u32, image: &str, env: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: {image}
        env:
        - name: MODE
          value: {env}
        ports:
        - containerPort: 8080
"#
    )
}

#[test]
fn kubectl_apply_twice_and_scale_should_update_the_deployment() -> Result<()> {
    let c = Cluster::start("")?;
    let out = c.ok_stdin(&["apply", "-f", "-"], &deployment(2, "app:1", "blue"))?;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let out = c.ok_stdin(&["apply", "-f", "-"], &deployment(2, "app:2", "green"))?;
    assert_eq!(out.trim(), "deployment.apps/web configured");
    let out = c.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value} {.metadata.generation} {.spec.strategy.type}"])?;
    assert_eq!(out, "app:2 green 2 RollingUpdate");
    let out = c.ok_stdin(&["apply", "-f", "-"], &deployment(2, "app:2", "green"))?;
    assert_eq!(out.trim(), "deployment.apps/web unchanged");

    let out = c.ok(&["scale", "deployment", "web", "--replicas=5"])?;
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?,
        "5"
    );
    let out = c.ok(&["get", "deployments"])?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert!(out.contains("0/5"), "{out}");

    let (status, body) = c.get("/apis/apps/v1/namespaces/default/deployments/web/scale")?;
    assert_eq!(status, 200);
    let scale: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(5))
    );
    assert_eq!(scale["status"]["selector"], "app=web");
    Ok(())
}

#[test]
fn kubectl_delete_should_honour_each_propagation_policy() -> Result<()> {
    let c = Cluster::start("")?;
    for cascade in ["background", "foreground", "orphan"] {
        c.ok_stdin(&["apply", "-f", "-"], &deployment(1, "app:1", "x"))?;
        let out = c.ok(&[
            "delete",
            "deployment",
            "web",
            &format!("--cascade={cascade}"),
            "--timeout=20s",
        ])?;
        assert_eq!(out.trim(), "deployment.apps \"web\" deleted", "{cascade}");
        let (status, _, _) = c.kubectl(&["get", "deployment", "web"])?;
        assert!(!status.success(), "{cascade}: gone");
    }
    Ok(())
}

#[test]
fn kubectl_get_watch_should_stream_changes() -> Result<()> {
    let c = Cluster::start("")?;
    // Manifests, not `kubectl create configmap`: typed generators send protobuf bodies.
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: \"1\"\n")
    };
    c.ok_stdin(&["create", "-f", "-"], &cm("first"))?;
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["get", "configmaps", "-w", "--request-timeout=10s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    c.ok_stdin(&["create", "-f", "-"], &cm("second"))?;
    c.ok(&["delete", "configmap", "first"])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while watch.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = watch.kill();
    let mut out = String::new();
    if let Some(mut stdout) = watch.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    assert!(
        out.lines().next().unwrap_or("").starts_with("NAME"),
        "{out}"
    );
    assert!(out.contains("first"), "{out}");
    assert!(
        out.contains("second"),
        "the watch saw the new configmap: {out}"
    );
    Ok(())
}
