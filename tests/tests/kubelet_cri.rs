//! The kubelet's `cri` runtime against a real containerd the test starts itself (config,
//! root, state and socket in a temp dir) with images built locally from busybox-static
//! and imported with `ctr`: a pod runs and `kubectl logs` (and `-f`) shows its output,
//! a crashing container restarts with backoff, an exec liveness probe restarts a
//! container, a missing image backs off in ImagePullBackOff, deletion removes the sandbox and
//! containers from containerd; containerd killed and restarted makes the node NotReady
//! then Ready with the pod still running, and a restarted kubelet re-adopts it; an
//! unreachable endpoint at start leaves the kernel up and the node NotReady, naming the
//! endpoint; with the bridge network (in a network namespace of the test's own)
//! containerd's CNI gives the pod an address from the node's podCIDR, which the kubelet
//! sends it.

mod cri_support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cri_support::{Containerd, BUSYBOX_IMAGE};
use kubernel_e2e::{component_entry, eventually, Cluster};
use serde_json::{json, Value};

/// A cluster with a CRI kubelet named `node` on `endpoint`, its pod logs in `log_dir`.
fn start(node: &str, endpoint: &str, log_dir: &std::path::Path) -> Result<Cluster> {
    start_on(node, endpoint, log_dir, "host")
}

/// [`start`] with pod network `network`.
fn start_on(
    node: &str,
    endpoint: &str,
    log_dir: &std::path::Path,
    network: &str,
) -> Result<Cluster> {
    Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!(
            "runtime = \"cri\"\nruntime_endpoint = \"{endpoint}\"\npod_log_dir = \"{}\"\nnetwork = \"{network}\"\nnode_name = \"{node}\"\nport = 0\nlease_renew_interval = \"1s\"\nnode_status_update_frequency = \"1s\"\ncrash_loop_backoff = \"300ms\"\ncrash_loop_backoff_max = \"3s\"\n",
            log_dir.display()
        ),
    ))
}

/// The CRI tests need root and containerd; they say why they skip otherwise.
fn runnable() -> bool {
    match cri_support::missing() {
        None => true,
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// The node's Ready condition: (status, message).
fn ready(cluster: &Cluster, node: &str) -> Result<(String, String)> {
    let n = cluster
        .get_json(&format!("/api/v1/nodes/{node}"))?
        .ok_or_else(|| anyhow!("node {node} not registered"))?;
    let c = n["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    Ok((
        c["status"].as_str().unwrap_or("").to_string(),
        c["message"].as_str().unwrap_or("").to_string(),
    ))
}

/// A pod on `node` running busybox `sh -c script` (plus `extra` container fields).
fn busybox_pod(node: &str, name: &str, script: &str, extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "command": ["sh", "-c", script],
                "env": [{"name": "GREETING", "value": "hi"}],
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

/// The sum of the samples of metric `name` whose labels contain `label`.
fn metric(cluster: &Cluster, name: &str, label: &str) -> Result<f64> {
    let (_, body) = cluster.kernel.get("/metrics")?;
    Ok(body
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn restarts(p: &Value) -> i64 {
    p["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn cri_pods_run_log_restart_back_off_and_are_removed() -> Result<()> {
    if !runnable() {
        return Ok(());
    }
    let containerd = Containerd::start()?;
    let node = "cri-node";
    let cluster = start(node, &containerd.endpoint(), &containerd.log_dir())?;
    eventually(Duration::from_secs(30), "node Ready", || {
        Ok(ready(&cluster, node)?.0 == "True")
    })?;
    let n = cluster
        .get_json(&format!("/api/v1/nodes/{node}"))?
        .unwrap_or_default();
    let version = n["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap_or("");
    assert!(version.starts_with("containerd://1."), "{version}");

    // A pod from the locally built image: Running, its output in kubectl logs.
    let created = Instant::now();
    cluster.create_object(&busybox_pod(
        node,
        "hi",
        "echo $GREETING; sleep 3600",
        json!({}),
    ))?;
    let p = cluster.wait_pod("hi", "hi Running", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    })?;
    println!("hi Running {:?} after create", created.elapsed());
    let status = &p["status"]["containerStatuses"][0];
    let id = status["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("containerd://"))
        .with_context(|| format!("containerID: {status}"))?
        .to_string();
    assert!(containerd.containers()?.contains(&id), "{id} in containerd");
    eventually(Duration::from_secs(20), "hi in kubectl logs", || {
        Ok(cluster.ok(&["logs", "hi"])? == "hi\n")
    })?;
    let stamped = cluster.ok(&["logs", "hi", "--timestamps"])?;
    assert!(stamped.ends_with("Z hi\n"), "{stamped:?}");
    let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
    let log_dir = containerd.log_dir().join(format!("default_hi_{uid}"));
    assert!(log_dir.join("main/0.log").exists(), "{}", log_dir.display());

    // kubectl logs -f: new lines of a running container, and all of a finished one.
    cluster.create_object(&busybox_pod(
        node,
        "ticker",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done",
        json!({}),
    ))?;
    let mut done = busybox_pod(node, "done", "echo one; echo two", json!({}));
    done["spec"]["restartPolicy"] = json!("Never");
    cluster.create_object(&done)?;
    cluster.wait_pod("ticker", "ticker Running", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    })?;
    let mut follow = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["logs", "-f", "ticker", "--tail", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = follow.stdout.take().context("kubectl logs -f: no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let followed = rx.recv_timeout(Duration::from_secs(10));
    let _ = follow.kill();
    let _ = follow.wait();
    let followed = followed.context("kubectl logs -f showed no new line")?;
    assert!(followed.starts_with("tick "), "{followed:?}");
    cluster.wait_pod("done", "done Succeeded", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    assert_eq!(cluster.ok(&["logs", "-f", "done"])?, "one\ntwo\n");

    // A crashing container restarts with backoff; its previous log stays readable.
    cluster.create_object(&busybox_pod(node, "crash", "echo boom; exit 3", json!({})))?;
    let p = cluster.wait_pod(
        "crash",
        "crash restarted twice",
        Duration::from_secs(60),
        |p| restarts(p) >= 2,
    )?;
    let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "{p}");
    assert_eq!(cluster.ok(&["logs", "crash", "--previous"])?, "boom\n");
    let events = cluster.events_of("crash")?;
    assert!(
        events.contains("Back-off restarting failed container"),
        "{events}"
    );

    // An exec liveness probe (ExecSync in the container) restarts the container.
    cluster.create_object(&busybox_pod(
        node,
        "liveness",
        "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600",
        json!({"livenessProbe": {
            "exec": {"command": ["cat", "/tmp/healthy"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        }}),
    ))?;
    cluster.wait_pod(
        "liveness",
        "liveness restarted by its probe",
        Duration::from_secs(60),
        |p| restarts(p) >= 1,
    )?;
    let events = cluster.events_of("liveness")?;
    assert!(events.contains("failed liveness probe"), "{events}");

    // A missing image: ErrImagePull, then ImagePullBackOff.
    let mut missing = busybox_pod(node, "missing", "true", json!({}));
    missing["spec"]["containers"][0]["image"] = json!("kubernel.local/missing:v1");
    cluster.create_object(&missing)?;
    cluster.wait_pod(
        "missing",
        "missing in ImagePullBackOff",
        Duration::from_secs(90),
        |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff",
    )?;
    let events = cluster.events_of("missing")?;
    assert!(
        events.contains("Failed to pull image \"kubernel.local/missing:v1\""),
        "{events}"
    );

    for (name, label) in [
        (
            "kubelet_runtime_operations_total",
            "operation_type=\"create_container\"",
        ),
        (
            "kubelet_runtime_operations_duration_seconds_count",
            "operation_type=\"exec_sync\"",
        ),
        (
            "kubelet_runtime_operations_errors_total",
            "operation_type=\"pull_image\"",
        ),
        ("kubelet_image_pull_duration_seconds_count", ""),
        ("kubelet_pleg_relist_duration_seconds_count", ""),
        ("kubelet_pleg_relist_interval_seconds_count", ""),
    ] {
        assert!(metric(&cluster, name, label)? > 0.0, "{name}{{{label}}}");
    }

    // Deletion stops and removes every sandbox and container.
    cluster.ok(&["delete", "pods", "--all", "--wait=true", "--timeout=60s"])?;
    eventually(Duration::from_secs(30), "containerd empty", || {
        Ok(containerd.containers()?.is_empty())
    })
    .with_context(|| format!("left in containerd: {:?}", containerd.containers()))?;
    assert!(!log_dir.exists(), "{} removed", log_dir.display());
    drop(cluster);
    Ok(())
}

#[test]
fn containerd_killed_and_restarted_makes_the_node_not_ready_then_ready() -> Result<()> {
    if !runnable() {
        return Ok(());
    }
    let mut containerd = Containerd::start()?;
    let node = "cri-restart";
    let cluster = start(node, &containerd.endpoint(), &containerd.log_dir())?;
    cluster.create_object(&busybox_pod(
        node,
        "web",
        "echo up; sleep 3600",
        json!({"livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}),
    ))?;
    let before = cluster.wait_pod("web", "web Running", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    })?;
    let id = before["status"]["containerStatuses"][0]["containerID"].clone();

    containerd.kill();
    eventually(Duration::from_secs(20), "node NotReady", || {
        let (status, message) = ready(&cluster, node)?;
        Ok(status == "False" && message.contains(&containerd.endpoint()))
    })?;
    let (_, message) = ready(&cluster, node)?;
    assert!(message.contains("unreachable"), "{message}");

    containerd.restart()?;
    eventually(Duration::from_secs(20), "node Ready again", || {
        Ok(ready(&cluster, node)?.0 == "True")
    })
    .with_context(|| containerd.logs())?;
    // The container ran on under its shim: the same instance, not restarted (a failing
    // exec while the runtime was down is no finding).
    std::thread::sleep(Duration::from_secs(3));
    let after = cluster.pod("web")?;
    assert_eq!(after["status"]["phase"], "Running", "{after}");
    assert_eq!(
        after["status"]["containerStatuses"][0]["containerID"], id,
        "{after}"
    );
    assert_eq!(restarts(&after), 0, "{after}");
    assert_eq!(cluster.ok(&["logs", "web"])?, "up\n");

    // A restarted kubelet finds the pod's sandbox and container in containerd again.
    let cluster = cluster.kill_and_restart()?;
    eventually(
        Duration::from_secs(30),
        "node Ready after the restart",
        || Ok(ready(&cluster, node)?.0 == "True"),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let adopted = cluster.pod("web")?;
    assert_eq!(
        adopted["status"]["containerStatuses"][0]["containerID"], id,
        "{adopted}"
    );
    assert_eq!(restarts(&adopted), 0, "{adopted}");
    eventually(Duration::from_secs(20), "logs after the restart", || {
        Ok(cluster.ok(&["logs", "web"])? == "up\n")
    })?;

    cluster.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"])?;
    eventually(Duration::from_secs(30), "containerd empty", || {
        Ok(containerd.containers()?.is_empty())
    })?;
    drop(cluster);
    Ok(())
}

#[test]
fn unreachable_runtime_endpoint_keeps_the_kernel_up_and_the_node_not_ready() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let endpoint = format!("unix://{}/containerd.sock", dir.path().display());
    let node = "cri-unreachable";
    let cluster = start(node, &endpoint, &dir.path().join("logs"))?;
    eventually(Duration::from_secs(30), "node registered NotReady", || {
        let (status, message) = ready(&cluster, node)?;
        Ok(status == "False" && message.contains(&endpoint))
    })?;
    let (_, message) = ready(&cluster, node)?;
    assert!(message.contains("unreachable"), "{message}");
    // The rest of the kernel keeps serving.
    let (code, _) = cluster.kernel.get("/healthz")?;
    assert_eq!(code, 200);
    cluster.ok(&["get", "nodes"])?;
    let logs = cluster.kernel.logs();
    assert!(
        logs.contains("container runtime is down") && logs.contains(&endpoint),
        "{logs}"
    );
    // Still retrying: the runtime's Version is asked again and again.
    let tries = metric(
        &cluster,
        "kubelet_runtime_operations_errors_total",
        "operation_type=\"version\"",
    )?;
    eventually(Duration::from_secs(10), "more Version attempts", || {
        Ok(metric(
            &cluster,
            "kubelet_runtime_operations_errors_total",
            "operation_type=\"version\"",
        )? > tries)
    })?;
    Ok(())
}

/// Set in the environment of the bridge test's second run, in its network namespace.
const IN_NETNS: &str = "KUBERNEL_TEST_IN_NETNS";

/// Runs test `name` of this binary again in a network namespace of its own
/// (`unshare --net`: the mounts stay the host's, so runc finds the cgroups, which
/// `ip netns exec`'s fresh /sys would hide); the namespace goes with the run.
fn in_new_netns(name: &str) -> Result<()> {
    let out = std::process::Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe()?)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .output()
        .context("running unshare")?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("1 passed") {
        bail!("inside the network namespace:\n{text}");
    }
    Ok(())
}

/// containerd's CNI config template of the bridge test: the standard bridge and
/// host-local plugins over the pod CIDR the kubelet sends (`@DIR@`: the CNI directory).
const CNI_TEMPLATE: &str = r#"{
  "cniVersion": "0.4.0",
  "name": "kubernel-cri",
  "plugins": [{
    "type": "bridge",
    "bridge": "kncri0",
    "isGateway": true,
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": "@DIR@/ipam"
    }
  }]
}"#;

#[test]
fn cri_bridge_pod_gets_an_address_from_the_node_pod_cidr() -> Result<()> {
    let name = "cri_bridge_pod_gets_an_address_from_the_node_pod_cidr";
    if !runnable() {
        return Ok(());
    }
    let bin = std::path::Path::new("/usr/lib/cni");
    if !bin.join("bridge").exists() {
        eprintln!("skipped: no CNI plugins in /usr/lib/cni (Debian's containernetworking-plugins)");
        return Ok(());
    }
    if std::env::var_os(IN_NETNS).is_none() {
        return in_new_netns(name);
    }
    let lo = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    if !lo.success() {
        bail!("ip link set lo up: {lo}");
    }
    let containerd = Containerd::start_with_cni(Some((CNI_TEMPLATE, bin)))?;
    let node = "cri-bridge";
    let cluster = start_on(
        node,
        &containerd.endpoint(),
        &containerd.log_dir(),
        "bridge",
    )?;
    eventually(Duration::from_secs(30), "node registered", || {
        Ok(cluster
            .get_json(&format!("/api/v1/nodes/{node}"))?
            .is_some())
    })?;
    // Until containerd has a CNI config the node is NotReady (its network is not).
    let (status, message) = ready(&cluster, node)?;
    assert!(
        status == "False" && message.contains("NetworkReady"),
        "{status} {message}"
    );
    let cidr = "10.244.9.0/24";
    cluster.ok(&[
        "patch",
        "node",
        node,
        "--type=merge",
        "-p",
        &json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}).to_string(),
    ])?;
    eventually(
        Duration::from_secs(30),
        "node Ready with its pod network",
        || Ok(ready(&cluster, node)?.0 == "True"),
    )?;
    cluster.create_object(&busybox_pod(
        node,
        "bridged",
        "echo bridged; sleep 3600",
        json!({}),
    ))?;
    let p = cluster
        .wait_pod("bridged", "bridged Running", Duration::from_secs(60), |p| {
            p["status"]["phase"] == "Running"
        })
        .with_context(|| {
            format!(
                "events: {}
containerd: {}",
                cluster.events_of("bridged").unwrap_or_default(),
                containerd.logs()
            )
        })?;
    let ip = p["status"]["podIP"].as_str().unwrap_or_default();
    assert!(
        ip.starts_with("10.244.9.") && ip != "10.244.9.1",
        "podIP {ip} from {cidr}"
    );
    // The pod answers on its own address from the node (the gateway is the bridge).
    let ping = std::process::Command::new("/bin/busybox")
        .args(["ping", "-c", "1", "-W", "2", ip])
        .output()?;
    assert!(ping.status.success(), "ping {ip}: {ping:?}");
    cluster.ok(&["delete", "pod", "bridged", "--wait=true", "--timeout=60s"])?;
    eventually(Duration::from_secs(30), "containerd empty", || {
        Ok(containerd.containers()?.is_empty())
    })?;
    drop(cluster);
    Ok(())
}
