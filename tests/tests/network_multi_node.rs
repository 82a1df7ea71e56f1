//! Two nodes (root): the test runs itself again inside a network namespace it creates
//! and builds a lab there with `deploy/lab/lab.sh` (a control plane and two workers,
//! each a kubernel process in its own namespace joined to the one control plane). Each
//! node gets its own pod CIDR and a route to the other's through its InternalIP; a pod
//! on one node reaches a pod on the other by its IP; a Service's ClusterIP (from either
//! node, and from a pod) and NodePort spread the requests over the pods of both nodes;
//! pods reach an address outside the cluster (masqueraded); a node that goes takes its
//! route with it.

use std::collections::BTreeSet;
use std::time::Duration;

mod network_support;

use anyhow::{ensure, Result};
use kubernel_e2e::eventually;
use network_support::{in_cidr, in_new_netns, inside, server_pod_spec, service, Lab};
use serde_json::json;

/// A server pod `name` (label app=web) on lab node `node`.
fn server(lab: &Lab, flags: &std::path::Path, name: &str, node: &str) -> Result<()> {
    let mut spec = server_pod_spec(flags);
    spec["nodeName"] = json!(lab.node(node));
    lab.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": spec,
    }))
}

/// A pod on lab node `node` that GETs `url` `n` times and prints the answers.
fn client(lab: &Lab, name: &str, node: &str, url: &str, n: usize) -> Result<()> {
    let script = format!(
        "import ssl, urllib.request\nctx = ssl._create_unverified_context()\nfor _ in range({n}):\n    print(urllib.request.urlopen('{url}', timeout=3, context=ctx).read().decode())\n"
    );
    lab.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": lab.node(node),
            "restartPolicy": "Never",
            "containers": [{"name": "client", "image": "python:3", "command": ["python3", "-c", script]}],
        }
    }))
}

/// The output of the client pod `name` once it succeeded.
fn client_output(lab: &Lab, name: &str) -> Result<Vec<String>> {
    eventually(
        Duration::from_secs(30),
        &format!("{name} Succeeded"),
        || {
            let phase = lab.kubectl(&["get", "pod", name, "-o", "jsonpath={.status.phase}"])?;
            ensure!(
                phase != "Failed",
                "{name} failed: {}",
                lab.kubectl(&["logs", name])?
            );
            Ok(phase == "Succeeded")
        },
    )?;
    Ok(lab
        .kubectl(&["logs", name])?
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn pods_and_services_should_reach_across_nodes() -> Result<()> {
    if !inside() {
        return in_new_netns("pods_and_services_should_reach_across_nodes");
    }
    let lab = Lab::up(2, "rr")?;
    let flags = tempfile::tempdir()?;
    let (cidr1, cidr2) = (lab.pod_cidr("w1")?, lab.pod_cidr("w2")?);
    ensure!(cidr1 != cidr2, "both nodes got pod CIDR {cidr1}");

    // Each node routes the other's pod CIDR through the other's InternalIP.
    let routes1 = lab.script(&["exec", "w1", "ip", "route"])?;
    let routes2 = lab.script(&["exec", "w2", "ip", "route"])?;
    ensure!(
        routes1.contains(&format!("{cidr2} via 10.250.0.12")),
        "w1 routes:\n{routes1}"
    );
    ensure!(
        routes2.contains(&format!("{cidr1} via 10.250.0.11")),
        "w2 routes:\n{routes2}"
    );

    server(&lab, flags.path(), "a", "w1")?;
    server(&lab, flags.path(), "b", "w2")?;
    let pods = lab.ready_pods("web", 2)?;
    let (ip_a, ip_b) = (pods["a"].0.clone(), pods["b"].0.clone());
    ensure!(in_cidr(&ip_a, &cidr1), "a: {ip_a} not in {cidr1}");
    ensure!(in_cidr(&ip_b, &cidr2), "b: {ip_b} not in {cidr2}");

    // Pod to pod across nodes, both ways.
    client(&lab, "from-w2", "w2", &format!("http://{ip_a}:8080/"), 3)?;
    client(&lab, "from-w1", "w1", &format!("http://{ip_b}:8080/"), 3)?;
    ensure!(client_output(&lab, "from-w2")? == ["a", "a", "a"]);
    ensure!(client_output(&lab, "from-w1")? == ["b", "b", "b"]);

    // Out of the cluster: the control plane's address (its apiserver relay) has no
    // route to the pods, so the answer comes back only to the masqueraded node address.
    // (HTTPS; /version is open to anonymous clients, the pod does not check the CA.)
    client(&lab, "outside", "w1", "https://10.250.0.10:6443/version", 1)?;
    let version = client_output(&lab, "outside")?.join("\n");
    ensure!(
        version.contains("\"major\""),
        "GET /version from a pod: {version}"
    );

    // Inside the pod's namespace: exec probes (a server on the pod's loopback only is
    // Ready) and the downward API's status.podIP.
    let loopback_server = "import http.server\nhttp.server.HTTPServer(('127.0.0.1', 8080), http.server.SimpleHTTPRequestHandler).serve_forever()\n";
    let probe =
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:8080/', timeout=1)\n";
    lab.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "local", "labels": {"app": "local"}},
        "spec": {
            "nodeName": lab.node("w1"),
            "containers": [{
                "name": "server", "image": "python:3",
                "command": ["sh", "-c", format!("echo POD_IP=$POD_IP; exec python3 -c \"{loopback_server}\"")],
                "workingDir": "/tmp",
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "readinessProbe": {"exec": {"command": ["python3", "-c", probe]}, "periodSeconds": 1},
            }],
        }
    }))?;
    let local = lab.ready_pods("local", 1)?;
    let logs = lab.kubectl(&["logs", "local"])?;
    ensure!(
        logs.contains(&format!("POD_IP={}", local["local"].0)),
        "status.podIP in the environment: {logs:?}, pod {local:?}"
    );

    // Service traffic across nodes: both pods answer from either node, off-node
    // through the NodePort, and from a pod through the ClusterIP.
    let (cluster_ip, node_port) = service(&lab, "web", "web")?;
    let both: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    let cluster_url = format!("http://{cluster_ip}/");
    for node in ["w1", "w2"] {
        eventually(
            Duration::from_secs(30),
            &format!("the ClusterIP from {node} to reach both pods"),
            || {
                let seen = lab.spread(node, &cluster_url, 20)?;
                Ok(seen.keys().cloned().collect::<BTreeSet<_>>() == both)
            },
        )?;
        let seen = lab.spread(node, &cluster_url, 200)?;
        ensure!(
            seen.len() == 2 && seen.values().all(|n| n.abs_diff(100) <= 1),
            "ClusterIP from {node}: {seen:?}"
        );
    }
    for (node, ip) in [("w1", "10.250.0.11"), ("w2", "10.250.0.12")] {
        let seen = lab.spread("cp", &format!("http://{ip}:{node_port}/"), 200)?;
        ensure!(
            seen.len() == 2 && seen.values().all(|n| n.abs_diff(100) <= 1),
            "NodePort of {node} from the control plane: {seen:?}"
        );
    }
    client(&lab, "via-service", "w2", &cluster_url, 20)?;
    let answers: BTreeSet<String> = client_output(&lab, "via-service")?.into_iter().collect();
    ensure!(
        answers == both,
        "a pod on w2 through the ClusterIP: {answers:?}"
    );

    // Every pod gone: nothing left on either node.
    lab.kubectl(&["delete", "pod", "--all", "--wait=true"])?;
    eventually(
        Duration::from_secs(30),
        "every pod namespace and IP released",
        || {
            Ok(["w1", "w2"]
                .iter()
                .all(|n| lab.pod_netns(n).is_empty() && lab.allocated_ips(n).is_empty()))
        },
    )?;

    // A node that goes takes its route with it.
    lab.script(&["stop", "w2"])?;
    lab.kubectl(&["delete", "node", &lab.node("w2")])?;
    eventually(
        Duration::from_secs(30),
        "w1's route to w2's pods removed",
        || {
            Ok(!lab
                .script(&["exec", "w1", "ip", "route"])?
                .contains(&format!("{cidr2} via")))
        },
    )?;
    Ok(())
}
