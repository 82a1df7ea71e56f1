//! The kubelet's `process` runtime with the real binary, apiserver and kubectl: pods whose
//! containers are host processes reach Running and Ready and serve on their ports, their
//! logs reach `kubectl logs` (and `-f`) through the apiserver's `pods/log` proxy,
//! crashing containers back off, probes restart and un-ready them, deletion stops the
//! processes within the grace period, a restarted kubelet re-adopts its processes, and
//! bad input (missing command, closed probe port, missing hostPath) shows in the status.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use kubernel_e2e::{component_entry, component_lib, eventually, free_port, kubernel, Cluster};
use serde_json::{json, Value};

/// A unique marker put into every test pod's environment, so the test finds (and, if it
/// fails, kills) exactly its own processes.
struct Marker(String);

impl Marker {
    fn new(test: &str) -> Marker {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Marker(format!("{test}-{}-{nanos}", std::process::id()))
    }

    /// Live (not zombie) processes carrying the marker: (pid, process group).
    fn processes(&self) -> Vec<(u32, u32)> {
        let needle = format!("KUBERNEL_E2E_MARK={}", self.0);
        let mut found = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in dir.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if !environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.first() == Some(&"Z") {
                continue;
            }
            let pgid = fields.get(2).and_then(|g| g.parse().ok()).unwrap_or(0);
            found.push((pid, pgid));
        }
        found
    }

    /// The distinct process groups of the marked processes (one per container: a
    /// command may be a wrapper script with children, e.g. a pyenv shim).
    fn groups(&self) -> Vec<u32> {
        let mut g: Vec<u32> = self.processes().iter().map(|(_, pgid)| *pgid).collect();
        g.sort_unstable();
        g.dedup();
        g
    }

    /// `pid pgid command line` of each marked process, for failure messages.
    fn describe(&self) -> String {
        self.processes()
            .iter()
            .map(|(pid, pgid)| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                format!("{pid} {pgid} {cmd}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn env(&self) -> Value {
        json!({"name": "KUBERNEL_E2E_MARK", "value": self.0})
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        // A failed test must not leave its processes behind.
        for (pid, _) in self.processes() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// True when the tests run as root (mount namespaces, tmpfs and cgroups need it); the
/// tests that need root say so and stop early otherwise.
fn root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().nth(1))
        == Some("0");
    if !root {
        eprintln!("skipped: the process kubelet needs root for mounts, tmpfs and cgroups");
    }
    root
}

fn start(test: &str) -> Result<(Cluster, u16)> {
    start_with(test, "")
}

/// A cluster with a process kubelet named `test` and `extra` kubelet config lines.
fn start_with(test: &str, extra: &str) -> Result<(Cluster, u16)> {
    let port = free_port()?;
    let cluster = Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!(
            "runtime = \"process\"\nnode_name = \"{test}\"\nport = {port}\nlease_renew_interval = \"1s\"\nnode_status_update_frequency = \"1s\"\ncrash_loop_backoff = \"300ms\"\ncrash_loop_backoff_max = \"3s\"\n{extra}"
        ),
    ))?;
    Ok((cluster, port))
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn http_server_pod(marker: &Marker, name: &str, port: u16, extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "",
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "web",
                "image": "python:3.12",
                "command": ["python3", "-u", "-m", "http.server", port.to_string(), "--bind", "127.0.0.1"],
                "env": [marker.env()],
                "ports": [{"name": "http", "containerPort": port}],
            }],
        },
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            p["spec"]["containers"][0][k] = v;
        }
    }
    p
}

#[test]
fn http_server_pod_runs_serves_logs_and_stops_within_its_grace_period() -> Result<()> {
    let marker = Marker::new("web");
    let (mut cluster, _) = start("node-web")?;
    let nodes = cluster.ok(&["get", "nodes", "-o", "json"])?;
    let nodes: Value = serde_json::from_str(&nodes)?;
    let node = &nodes["items"][0];
    assert_eq!(node["metadata"]["name"], "node-web");
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-web"
    );
    for key in ["cpu", "memory", "ephemeral-storage", "pods"] {
        assert!(
            node["status"]["capacity"][key].is_string(),
            "capacity {key}: {node}"
        );
    }
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert!(!node["status"]["nodeInfo"]["kernelVersion"]
        .as_str()
        .unwrap_or("")
        .is_empty());
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{node}");
    let (code, _) =
        cluster.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-web")?;
    assert_eq!(code, 200, "the node Lease exists");

    let port = free_port()?;
    let mut manifest = http_server_pod(
        &marker,
        "web",
        port,
        json!({"readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1}}),
    );
    manifest["spec"]["nodeName"] = json!("node-web");
    cluster.create_object(&manifest)?;
    let created = Instant::now();
    let p = cluster.wait_pod(
        "web",
        "web Running and Ready",
        Duration::from_secs(30),
        |p| p["status"]["phase"] == "Running" && condition(p, "Ready") == "True",
    )?;
    println!("web Running and Ready {:?} after create", created.elapsed());
    assert_eq!(p["status"]["podIP"], "127.0.0.1");
    let status = &p["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true);
    assert_eq!(status["started"], true);
    assert!(
        status["containerID"]
            .as_str()
            .unwrap_or("")
            .starts_with("process://"),
        "{status}"
    );
    assert!(
        status["state"]["running"]["startedAt"].is_string(),
        "{status}"
    );
    let answer = http_get(port, "/")?;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");

    // kubectl logs: the server's request lines, through the apiserver's pods/log proxy.
    eventually(
        Duration::from_secs(10),
        "the request in kubectl logs",
        || Ok(cluster.ok(&["logs", "web"])?.contains("GET / HTTP/1.0")),
    )?;
    let recent = cluster.ok(&["logs", "web", "--since", "1h"])?;
    assert!(recent.contains("GET / HTTP/1.0"), "--since 1h: {recent}");
    let tail = cluster.ok(&["logs", "web", "--tail", "1"])?;
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let stamped = cluster.ok(&["logs", "web", "--timestamps", "--tail", "1"])?;
    assert!(
        stamped.starts_with("20") && stamped.contains("Z "),
        "a timestamp before the line: {stamped}"
    );
    let (status, _, err) = cluster.kubectl(&["logs", "web", "-c", "nope"])?;
    assert!(!status.success());
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );

    // kubectl logs -f: a new request shows up while following.
    let mut follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["logs", "-f", "web", "--tail", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = follow.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    http_get(port, "/followed-request")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen = line.contains("/followed-request");
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(seen, "kubectl logs -f did not show the new request");

    let events = cluster.events_of("web")?;
    for reason in ["Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "{reason} missing: {events}");
    }
    assert!(
        events.contains("not pulled by the process runtime"),
        "{events}"
    );

    // Deletion: SIGTERM, the process ends within the grace period, no process is left.
    assert_eq!(
        marker.groups().len(),
        1,
        "one server: {}",
        marker.describe()
    );
    let deleting = Instant::now();
    cluster.ok(&["delete", "pod", "web", "--wait=false"])?;
    eventually(Duration::from_secs(15), "the pod to be gone", || {
        Ok(cluster
            .get_json("/api/v1/namespaces/default/pods/web")?
            .is_none())
    })?;
    eventually(Duration::from_secs(5), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    assert!(
        deleting.elapsed() < Duration::from_secs(10),
        "within the grace period"
    );
    let events = cluster.events_of("web")?;
    assert!(events.contains("Killing"), "{events}");

    // Stopping the kubelet (kernel) kills its pods' processes.
    let mut second = http_server_pod(&marker, "web2", free_port()?, json!({}));
    second["spec"]["nodeName"] = json!("node-web");
    cluster.create_object(&second)?;
    cluster.wait_pod("web2", "web2 Running", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    })?;
    assert_eq!(marker.groups().len(), 1, "{}", marker.describe());
    cluster.kernel.terminate(Duration::from_secs(20))?;
    eventually(
        Duration::from_secs(5),
        "no process after the kubelet stopped",
        || Ok(marker.processes().is_empty()),
    )?;
    Ok(())
}

#[test]
fn crashing_container_backs_off_and_keeps_its_previous_log() -> Result<()> {
    let marker = Marker::new("crash");
    let (mut cluster, _) = start("node-crash")?;
    cluster.create_object(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "crash"},
        "spec": {"nodeName": "node-crash", "containers": [{
            "name": "c", "image": "busybox",
            "command": ["sh", "-c", "echo run $$; exit 3"],
            "env": [marker.env()],
        }]},
    }))?;
    let p = cluster.wait_pod("crash", "restartCount 3", Duration::from_secs(40), |p| {
        let s = &p["status"]["containerStatuses"][0];
        s["restartCount"].as_i64().unwrap_or(0) >= 3
    })?;
    let s = &p["status"]["containerStatuses"][0];
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 3, "{s}");
    assert_eq!(s["lastState"]["terminated"]["reason"], "Error", "{s}");
    assert_eq!(p["status"]["phase"], "Running");
    let p = cluster.wait_pod("crash", "CrashLoopBackOff", Duration::from_secs(20), |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })?;
    let message = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.starts_with("back-off "), "{message}");
    assert!(
        message.contains("restarting failed container=c pod=crash_default("),
        "{message}"
    );
    let events = cluster.events_of("crash")?;
    assert!(events.contains("BackOff"), "{events}");
    let previous = cluster.ok(&["logs", "crash", "--previous"])?;
    assert!(previous.starts_with("run "), "{previous}");
    cluster.kernel.terminate(Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn probes_restart_on_liveness_failure_and_flip_readiness() -> Result<()> {
    let marker = Marker::new("probes");
    let dir = tempfile::tempdir()?;
    let ready_file = dir.path().join("ready");
    let dead_file = dir.path().join("dead");
    let (mut cluster, _) = start("node-probes")?;
    cluster.create_object(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probed"},
            "spec": {"nodeName": "node-probes", "terminationGracePeriodSeconds": 2, "containers": [{
                "name": "c", "image": "busybox",
                "command": ["sleep", "3600"],
                "env": [marker.env()],
                "readinessProbe": {"exec": {"command": ["test", "-f", ready_file]}, "periodSeconds": 1, "failureThreshold": 1},
                "livenessProbe": {"exec": {"command": ["test", "!", "-f", dead_file]}, "periodSeconds": 1, "failureThreshold": 2},
                "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
            }]},
        }),
    )?;
    let p = cluster.wait_pod(
        "probed",
        "Running, not Ready",
        Duration::from_secs(30),
        |p| p["status"]["phase"] == "Running",
    )?;
    assert_eq!(condition(&p, "Ready"), "False", "{}", p["status"]);
    cluster.wait_pod(
        "probed",
        "started (startup probe)",
        Duration::from_secs(15),
        |p| p["status"]["containerStatuses"][0]["started"] == true,
    )?;
    std::fs::write(&ready_file, "")?;
    cluster.wait_pod("probed", "Ready", Duration::from_secs(15), |p| {
        condition(p, "Ready") == "True"
    })?;
    std::fs::remove_file(&ready_file)?;
    cluster.wait_pod("probed", "not Ready again", Duration::from_secs(15), |p| {
        condition(p, "Ready") == "False"
    })?;
    let before = marker.groups();
    assert_eq!(before.len(), 1);
    std::fs::write(&dead_file, "")?;
    cluster.wait_pod(
        "probed",
        "a liveness restart",
        Duration::from_secs(20),
        |p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        },
    )?;
    std::fs::remove_file(&dead_file)?;
    let events = cluster.events_of("probed")?;
    assert!(events.contains("Unhealthy"), "{events}");
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(
        events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
    eventually(
        Duration::from_secs(10),
        "the old process gone, one new",
        || {
            let now = marker.groups();
            Ok(now.len() == 1 && !before.contains(&now[0]))
        },
    )?;
    let metrics = cluster.kernel.get("/metrics")?.1;
    let failed_liveness = metrics.lines().any(|l| {
        l.starts_with("prober_probe_total{")
            && l.contains("probe_type=\"Liveness\"")
            && l.contains("result=\"failed\"")
    });
    assert!(
        failed_liveness,
        "prober_probe_total missing: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("prober") || l.starts_with("kubelet_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    cluster.kernel.terminate(Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn restarted_kubelet_readopts_its_processes_without_duplicates() -> Result<()> {
    let marker = Marker::new("readopt");
    let dir = tempfile::tempdir()?;
    let hook_file = dir.path().join("prestop-ran");
    let (cluster, _) = start("node-readopt")?;
    cluster.create_object(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sleeper"},
            "spec": {"nodeName": "node-readopt", "containers": [{
                "name": "c", "image": "busybox",
                "command": ["sleep", "3600"],
                "env": [marker.env()],
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", format!("echo $KUBERNEL_E2E_MARK > {}", hook_file.display())]}}},
            }]},
        }),
    )?;
    let before = cluster.wait_pod("sleeper", "Running", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    })?;
    let groups = marker.groups();
    assert_eq!(groups.len(), 1, "{}", marker.describe());
    let mut cluster = cluster.kill_and_restart()?;
    // The new kubelet resyncs; give it a few periods to (wrongly) start a second copy.
    std::thread::sleep(Duration::from_secs(3));
    let p = cluster.wait_pod("sleeper", "Running", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    })?;
    assert_eq!(
        marker.groups(),
        groups,
        "the same single process: {}",
        marker.describe()
    );
    let s = &p["status"]["containerStatuses"][0];
    assert_eq!(s["restartCount"], 0, "{s}");
    assert_eq!(
        s["containerID"], before["status"]["containerStatuses"][0]["containerID"],
        "the same container"
    );
    let metrics = cluster.kernel.get("/metrics")?.1;
    assert!(
        metrics.contains("kubelet_restarted_pods_total"),
        "re-adoption counted"
    );
    // A hot swap of the kubelet hands the processes over to the new instance.
    let data = cluster.kernel.data_dir().display().to_string();
    let lib = component_lib("kubelet").display().to_string();
    let (status, out, err) = kubernel(&["--data-dir", &data, "swap", "kubelet", &lib], &[])?;
    assert!(status.success(), "{err}{out}");
    std::thread::sleep(Duration::from_secs(2));
    let p = cluster.wait_pod("sleeper", "Running", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    })?;
    assert_eq!(
        marker.groups(),
        groups,
        "the same process after the swap: {}",
        marker.describe()
    );
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    cluster.ok(&["delete", "pod", "sleeper", "--wait=false"])?;
    eventually(Duration::from_secs(15), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    let hook = std::fs::read_to_string(&hook_file).context("the preStop hook ran")?;
    assert_eq!(
        hook.trim(),
        marker.0,
        "the hook saw the container's environment"
    );
    cluster.kernel.terminate(Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn volumes_and_env_reach_the_process() -> Result<()> {
    if !root() {
        return Ok(());
    }
    let marker = Marker::new("volumes");
    let dir = tempfile::tempdir()?;
    let mount = dir.path().join("etc-config");
    let host = dir.path().join("host-created");
    let (mut cluster, _) = start("node-volumes")?;
    cluster.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello from a configMap",
        "--from-literal=mode=fast",
    ])?;
    cluster.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ])?;
    let script = format!(
        "cat {m}/greeting; echo; echo MODE=$MODE PASS=$PASS POD=$POD_NAME NODE=$NODE; cat {m}/../labels/labels; echo; ls {h} >/dev/null && echo hostPath-ok; echo ram-is-$(stat -f -c %T {r}); sleep 3600",
        m = mount.display(),
        h = host.display(),
        r = dir.path().join("ram").display()
    );
    cluster.create_object(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "vols", "labels": {"app": "vols"}},
            "spec": {
                "nodeName": "node-volumes",
                "volumes": [
                    {"name": "conf", "configMap": {"name": "settings"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "host", "hostPath": {"path": host, "type": "DirectoryOrCreate"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                ],
                "containers": [{
                    "name": "c", "image": "busybox",
                    "command": ["sh", "-c", script],
                    "env": [
                        marker.env(),
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    ],
                    "volumeMounts": [
                        {"name": "conf", "mountPath": mount},
                        {"name": "info", "mountPath": dir.path().join("labels")},
                        {"name": "host", "mountPath": host},
                        {"name": "scratch", "mountPath": dir.path().join("scratch")},
                        {"name": "ram", "mountPath": dir.path().join("ram")},
                    ],
                }],
            },
        }),
    )?;
    cluster.wait_pod("vols", "Running", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    })?;
    let mut logs = String::new();
    let seen = eventually(
        Duration::from_secs(10),
        "the volume contents in the log",
        || {
            logs = cluster.ok(&["logs", "vols"])?;
            Ok(logs.contains("hostPath-ok"))
        },
    );
    seen.with_context(|| format!("logs: {logs}"))?;
    assert!(logs.contains("hello from a configMap"), "{logs}");
    assert!(
        logs.contains("MODE=fast PASS=s3cret POD=vols NODE=node-volumes"),
        "{logs}"
    );
    assert!(logs.contains("app=\"vols\""), "{logs}");
    assert!(host.is_dir(), "DirectoryOrCreate created the host path");
    assert!(
        logs.contains("ram-is-tmpfs"),
        "medium Memory is a tmpfs: {logs}"
    );
    // The configMap is mounted only inside the container's mount namespace.
    assert!(!mount.join("greeting").exists(), "not visible on the host");

    // A hostPath of type Directory that does not exist: FailedMount, ContainerCreating.
    cluster.create_object(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nohost"},
            "spec": {
                "nodeName": "node-volumes",
                "volumes": [{"name": "h", "hostPath": {"path": dir.path().join("missing"), "type": "Directory"}}],
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"], "env": [marker.env()],
                    "volumeMounts": [{"name": "h", "mountPath": "/data"}]}],
            },
        }),
    )?;
    let p = cluster.wait_pod(
        "nohost",
        "ContainerCreating",
        Duration::from_secs(20),
        |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
        },
    )?;
    assert_eq!(p["status"]["phase"], "Pending");
    eventually(Duration::from_secs(10), "a FailedMount event", || {
        let events = cluster.events_of("nohost")?;
        Ok(events.contains("FailedMount") && events.contains("is not a directory"))
    })?;
    // Deleting the pod unmounts its tmpfs and removes its directory.
    let data = cluster.kernel.data_dir();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&*data.to_string_lossy()))
            .count()
    };
    assert_eq!(mounted(), 1, "the pod's tmpfs is mounted");
    cluster.ok(&["delete", "pod", "vols", "nohost", "--wait=false"])?;
    eventually(Duration::from_secs(15), "the pods gone", || {
        Ok(cluster
            .get_json("/api/v1/namespaces/default/pods/vols")?
            .is_none()
            && cluster
                .get_json("/api/v1/namespaces/default/pods/nohost")?
                .is_none())
    })?;
    assert_eq!(mounted(), 0, "the tmpfs was unmounted");
    cluster.kernel.terminate(Duration::from_secs(20))?;
    eventually(Duration::from_secs(5), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    Ok(())
}

#[test]
fn bad_commands_and_closed_probe_ports_are_reported_not_crashed_on() -> Result<()> {
    let marker = Marker::new("bad");
    let (mut cluster, _) = start("node-bad")?;
    cluster.create_object(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nocmd"},
        "spec": {"nodeName": "node-bad", "restartPolicy": "Never", "containers": [{
            "name": "c", "image": "busybox", "command": ["no-such-command-anywhere", "--serve"],
            "env": [marker.env()],
        }]},
    }))?;
    let p = cluster.wait_pod("nocmd", "Failed", Duration::from_secs(20), |p| {
        p["status"]["phase"] == "Failed"
    })?;
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "StartError", "{t}");
    assert_eq!(t["exitCode"], 128, "{t}");
    assert!(
        t["message"]
            .as_str()
            .unwrap_or("")
            .contains("executable file not found in $PATH"),
        "{t}"
    );
    let closed = free_port()?;
    cluster.create_object(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "closedport"},
            "spec": {"nodeName": "node-bad", "containers": [{
                "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                "env": [marker.env()],
                "readinessProbe": {"tcpSocket": {"port": closed}, "periodSeconds": 1, "failureThreshold": 1},
            }]},
        }),
    )?;
    cluster.wait_pod("closedport", "Running", Duration::from_secs(20), |p| {
        p["status"]["phase"] == "Running"
    })?;
    eventually(
        Duration::from_secs(10),
        "an Unhealthy event for the closed port",
        || {
            let events = cluster.events_of("closedport")?;
            Ok(events.contains("Readiness probe failed") && events.contains("connection refused"))
        },
    )?;
    let p = cluster.pod("closedport")?;
    assert_eq!(condition(&p, "Ready"), "False");
    // Logs of a pod no node runs: the apiserver says so, it does not hang.
    cluster.create_object(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "unbound"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]},
    }))?;
    let (code, body) = cluster.get("/api/v1/namespaces/default/pods/unbound/log")?;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("pod unbound does not have a host assigned"),
        "{body}"
    );
    // The kubelet is still serving: a good pod still runs.
    let (code, body) = cluster.get("/readyz")?;
    assert_eq!(code, 200, "{body}");
    cluster.kernel.terminate(Duration::from_secs(20))?;
    eventually(Duration::from_secs(5), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    Ok(())
}

#[test]
fn memory_and_cpu_limits_apply_and_oom_kills_are_reported() -> Result<()> {
    if !root() {
        return Ok(());
    }
    let marker = Marker::new("limits");
    let (mut cluster, _) = start("node-limits")?;
    cluster.create_object(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hog"},
        "spec": {"nodeName": "node-limits", "restartPolicy": "Never", "containers": [{
            "name": "c", "image": "python:3.12",
            "command": ["python3", "-c", "x = bytearray(512 * 1024 * 1024); print(len(x))"],
            "env": [marker.env()],
            "resources": {"limits": {"memory": "64Mi"}},
        }]},
    }))?;
    let p = cluster.wait_pod("hog", "Failed", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Failed"
    })?;
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");

    cluster.create_object(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "capped"},
        "spec": {"nodeName": "node-limits", "containers": [{
            "name": "c", "image": "busybox", "command": ["sleep", "3600"],
            "env": [marker.env()],
            "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}},
        }]},
    }))?;
    cluster.wait_pod("capped", "Running", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    })?;
    // The container's wrapper shell joins its cgroups just before it execs the command.
    let mut found = (String::new(), String::new(), String::new());
    let joined = eventually(
        Duration::from_secs(10),
        "the process in its cgroups",
        || {
            let (pid, _) = *marker
                .processes()
                .first()
                .ok_or_else(|| anyhow!("no capped process"))?;
            let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
            let path_of = |controller: &str| {
                cgroups.lines().find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                    list.split(',')
                        .any(|c| c == controller)
                        .then(|| path.to_string())
                })
            };
            let cpu = path_of("cpu").ok_or_else(|| anyhow!("no cpu cgroup: {cgroups}"))?;
            let memory = path_of("memory").ok_or_else(|| anyhow!("no memory cgroup: {cgroups}"))?;
            let quota =
                std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{cpu}/cpu.cfs_quota_us"))?;
            let limit = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"
            ))?;
            found = (cpu, quota.trim().to_string(), limit.trim().to_string());
            Ok(found.1 == "25000" && found.2 == (32u64 << 20).to_string())
        },
    );
    joined.with_context(|| format!("cpu cgroup, quota, memory limit: {found:?}"))?;
    let cpu = found.0;
    cluster.ok(&["delete", "pod", "capped", "--wait=false"])?;
    eventually(Duration::from_secs(15), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    eventually(Duration::from_secs(5), "the cgroups removed", || {
        Ok(!std::path::Path::new(&format!("/sys/fs/cgroup/cpu{cpu}")).exists())
    })?;
    cluster.kernel.terminate(Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn init_containers_run_in_order_and_finished_pods_complete() -> Result<()> {
    let marker = Marker::new("init");
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    let (mut cluster, _) = start("node-init")?;
    let step = |n: &str| {
        json!({
            "name": format!("init-{n}"), "image": "busybox",
            "command": ["sh", "-c", format!("sleep 0.3; echo {n} >> {}/order", work.display())],
            "env": [marker.env()],
            "volumeMounts": [{"name": "work", "mountPath": work}],
        })
    };
    cluster.create_object(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "inits"},
        "spec": {
            "nodeName": "node-init",
            "restartPolicy": "Never",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [step("one"), step("two")],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", format!("cat {}/order", work.display())],
                "env": [marker.env()],
                "volumeMounts": [{"name": "work", "mountPath": work}],
            }],
        },
    }))?;
    let mut saw_initializing = false;
    let p = cluster.wait_pod("inits", "Succeeded", Duration::from_secs(30), |p| {
        saw_initializing |=
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing";
        p["status"]["phase"] == "Succeeded"
    })?;
    assert!(saw_initializing, "main waited in PodInitializing");
    assert_eq!(condition(&p, "Initialized"), "True");
    assert_eq!(condition(&p, "Ready"), "False");
    for i in 0..2 {
        let t = &p["status"]["initContainerStatuses"][i]["state"]["terminated"];
        assert_eq!(t["reason"], "Completed", "{t}");
    }
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("Completed"), Some(0)),
        "{t}"
    );
    let logs = cluster.ok(&["logs", "inits"])?;
    assert_eq!(logs, "one\ntwo\n", "init containers ran in order");
    // Following an exited container returns at once with its whole log.
    assert_eq!(cluster.ok(&["logs", "-f", "inits"])?, "one\ntwo\n");
    let init_logs = cluster.ok(&["logs", "inits", "-c", "init-two"])?;
    assert_eq!(init_logs, "");

    // OnFailure: a failing container restarts, one that exits 0 completes the pod.
    cluster.create_object(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "retry"},
            "spec": {
                "nodeName": "node-init",
                "restartPolicy": "OnFailure",
                "volumes": [{"name": "work", "emptyDir": {}}],
                "containers": [{
                    "name": "c", "image": "busybox",
                    "command": ["sh", "-c", format!("if [ -f {w}/tried ]; then echo done; else touch {w}/tried; exit 1; fi", w = work.display())],
                    "env": [marker.env()],
                    "volumeMounts": [{"name": "work", "mountPath": work}],
                }],
            },
        }),
    )?;
    let p = cluster.wait_pod("retry", "Succeeded", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    let s = &p["status"]["containerStatuses"][0];
    assert_eq!(s["restartCount"], 1, "{s}");
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 1, "{s}");
    cluster.kernel.terminate(Duration::from_secs(20))?;
    eventually(Duration::from_secs(5), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    Ok(())
}

#[test]
fn container_logs_rotate_and_keep_the_newest_lines() -> Result<()> {
    let marker = Marker::new("rotate");
    let (mut cluster, _) = start_with(
        "node-rotate",
        "container_log_max_size = \"1Ki\"\ncontainer_log_max_files = 3",
    )?;
    // 300 numbered lines of 16 bytes (4.8 KiB), written over about 1.5 s.
    let script = "i=0; while [ $i -lt 300 ]; do printf 'line-%010d\\n' $i; i=$((i+1)); [ $((i % 20)) -eq 0 ] && sleep 0.1; done; sleep 3600";
    cluster.create_object(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "chatty"},
        "spec": {"nodeName": "node-rotate", "containers": [{
            "name": "c", "image": "busybox", "command": ["sh", "-c", script],
            "env": [marker.env()],
        }]},
    }))?;
    let mut logs = String::new();
    let done = eventually(Duration::from_secs(30), "the last line", || {
        logs = cluster.ok(&["logs", "chatty"])?;
        Ok(logs.contains("line-0000000299"))
    });
    done.with_context(|| format!("logs: {logs}"))?;
    assert!(
        !logs.contains("line-0000000000\n"),
        "the oldest lines were rotated away"
    );
    let numbers: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("line-")?.parse().ok())
        .collect();
    // In order (copy-and-truncate may drop the lines written in between, as upstream's).
    assert!(
        numbers.windows(2).all(|w| w[1] > w[0]),
        "the kept lines are in order: {numbers:?}"
    );
    assert!(
        numbers.len() * 16 <= 4 * 1024,
        "at most three files of about 1 KiB"
    );
    let metrics = cluster.kernel.get("/metrics")?.1;
    let counted = |name: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(
        counted("kubernel_kubelet_container_log_rotations_total") >= 2.0,
        "rotations counted"
    );
    assert!(
        counted("kubelet_http_requests_total{") >= 1.0,
        "kubelet API requests counted"
    );
    cluster.kernel.terminate(Duration::from_secs(20))?;
    eventually(Duration::from_secs(5), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    Ok(())
}

#[test]
fn deployment_pods_are_scheduled_onto_the_process_node_and_scaled() -> Result<()> {
    let marker = Marker::new("deploy");
    let port = free_port()?;
    let mut cluster = Cluster::start(&format!(
        "{}{}{}",
        component_entry(
            "kubelet",
            "kubelet",
            &format!("runtime = \"process\"\nnode_name = \"node-deploy\"\nport = {port}\nlease_renew_interval = \"1s\""),
        ),
        component_entry("scheduler", "scheduler", ""),
        component_entry("controller-manager", "controller-manager", "controllers = [\"*\"]"),
    ))?;
    cluster.create_object(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sleepers"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "sleepers"}},
            "template": {
                "metadata": {"labels": {"app": "sleepers"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                    "env": [marker.env()],
                }]},
            },
        },
    }))?;
    eventually(Duration::from_secs(60), "3 available replicas", || {
        let out = cluster.ok(&[
            "get",
            "deployment",
            "sleepers",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ])?;
        Ok(out == "3")
    })?;
    let nodes = cluster.ok(&[
        "get",
        "pods",
        "-l",
        "app=sleepers",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ])?;
    assert_eq!(
        nodes, "node-deploy node-deploy node-deploy",
        "scheduled onto the process node"
    );
    assert_eq!(marker.groups().len(), 3, "{}", marker.describe());
    cluster.ok(&["scale", "deployment", "sleepers", "--replicas=1"])?;
    eventually(Duration::from_secs(30), "one process left", || {
        Ok(marker.groups().len() == 1)
    })?;
    cluster.ok(&["delete", "deployment", "sleepers"])?;
    eventually(Duration::from_secs(30), "no process left", || {
        Ok(marker.processes().is_empty())
    })?;
    cluster.kernel.terminate(Duration::from_secs(20))?;
    Ok(())
}
