//! Bridge pod networking on one worker (root): the test runs itself again inside a
//! network namespace it creates and builds a lab there with `deploy/lab/lab.sh` (a
//! control plane and one worker, each a kubernel process in its own namespace). Three
//! HTTP server pods get their own namespaces and addresses from the node's pod CIDR;
//! 300 requests to the ClusterIP and to the NodePort are spread evenly over them
//! (`rr`); pods added by a scale-up receive traffic soon after they are Ready (the delay
//! is printed); a pod turning unready stops receiving traffic; a deleted pod's address
//! and namespace are released; after a kubelet restart (switched to `sh`) the running
//! pods keep their addresses, requests from one client stick to one pod, and once the
//! Deployment is gone nothing of its pods is left.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

mod network_support;

use anyhow::{bail, ensure, Result};
use kubernel_e2e::eventually;
use network_support::{in_cidr, in_new_netns, inside, server_pod_spec, service, Lab};
use serde_json::json;

fn deployment(lab: &Lab, flags: &std::path::Path, replicas: u32) -> Result<()> {
    lab.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": server_pod_spec(flags),
            }
        }
    }))
}

/// Checks that each of `pods` got 100 ± 1 of 300 requests.
fn even(what: &str, seen: &BTreeMap<String, usize>, pods: &BTreeSet<String>) -> Result<()> {
    let names: BTreeSet<String> = seen.keys().cloned().collect();
    ensure!(
        &names == pods,
        "{what}: answered by {seen:?}, pods {pods:?}"
    );
    ensure!(
        seen.values().all(|n| n.abs_diff(100) <= 1),
        "{what}: not 100 ± 1 each: {seen:?}"
    );
    Ok(())
}

#[test]
fn pods_should_get_their_own_network_and_service_traffic() -> Result<()> {
    if !inside() {
        return in_new_netns("pods_should_get_their_own_network_and_service_traffic");
    }
    let lab = Lab::up(1, "rr")?;
    let flags = tempfile::tempdir()?;
    let cidr = lab.pod_cidr("w1")?;
    deployment(&lab, flags.path(), 3)?;
    let pods = lab.ready_pods("web", 3)?;

    // Own addresses from the node's pod CIDR, one namespace and one IPAM record each.
    let ips: BTreeSet<String> = pods.values().map(|p| p.0.clone()).collect();
    ensure!(ips.len() == 3, "pod IPs not distinct: {pods:?}");
    for ip in &ips {
        ensure!(
            in_cidr(ip, &cidr),
            "pod IP {ip} outside the node's pod CIDR {cidr}"
        );
    }
    ensure!(lab.pod_netns("w1").len() == 3, "{:?}", lab.pod_netns("w1"));
    ensure!(
        lab.allocated_ips("w1") == ips.iter().cloned().collect::<Vec<_>>(),
        "IPAM holds {:?}, pods have {ips:?}",
        lab.allocated_ips("w1")
    );

    let (cluster_ip, node_port) = service(&lab, "web", "web")?;
    let names: BTreeSet<String> = pods.keys().cloned().collect();
    let cluster_url = format!("http://{cluster_ip}/");
    let node_port_url = format!("http://10.250.0.11:{node_port}/");
    eventually(
        Duration::from_secs(30),
        "the ClusterIP to answer from every pod",
        || {
            let seen = lab.spread("w1", &cluster_url, 12)?;
            Ok(seen.keys().cloned().collect::<BTreeSet<_>>() == names)
        },
    )?;
    even("ClusterIP", &lab.spread("w1", &cluster_url, 300)?, &names)?;
    // From off the node: the control plane's namespace.
    even("NodePort", &lab.spread("cp", &node_port_url, 300)?, &names)?;

    // Scale to 5: the new pods receive traffic soon after they are Ready. A watch
    // says when each becomes Ready, a client in the node sends requests back to back.
    let ready_watch = lab.stream(&[
        "kubectl",
        "get",
        "pods",
        "-l",
        "app=web",
        "-w",
        "-o",
        r#"jsonpath={.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}"#,
    ])?;
    let stop = flags.path().join("stop-requests");
    let traffic = lab.request_stream("w1", &cluster_url, &stop)?;
    lab.kubectl(&["scale", "deployment", "web", "--replicas=5"])?;
    let mut ready_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut seen_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut requests = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(ready_at.len() == 2 && ready_at.keys().all(|n| seen_at.contains_key(n))) {
        ensure!(
            Instant::now() < deadline,
            "new pods Ready {ready_at:?}, answering {seen_at:?} after 60 s"
        );
        while let Ok((at, line)) = ready_watch.lines.try_recv() {
            if let Some((name, "True")) = line.split_once(' ') {
                if !names.contains(name) {
                    ready_at.entry(name.to_string()).or_insert(at);
                }
            }
        }
        while let Ok((at, body)) = traffic.lines.try_recv() {
            requests += 1;
            if !names.contains(&body) && !body.starts_with('!') {
                seen_at.entry(body).or_insert(at);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(&stop, "")?;
    drop((ready_watch, traffic));
    for (name, ready) in &ready_at {
        let delay = seen_at[name].saturating_duration_since(*ready);
        let before = ready.saturating_duration_since(seen_at[name]);
        println!(
            "measured: new pod {name} received traffic {} ms after its Ready reached a watch{} ({requests} requests sent back to back meanwhile)",
            delay.as_millis(),
            if before.is_zero() { String::new() } else { format!(" (it answered {} ms before)", before.as_millis()) }
        );
        ensure!(delay < Duration::from_secs(10), "{name}: {delay:?}");
    }
    let pods = lab.ready_pods("web", 5)?;

    // A pod turning unready stops receiving traffic.
    let unready = pods.keys().next().cloned().unwrap_or_default();
    std::fs::write(flags.path().join(&unready), "")?;
    eventually(
        Duration::from_secs(30),
        "the unready pod to get no traffic",
        || {
            let ready = lab.pods("web")?.get(&unready).is_some_and(|p| p.2);
            Ok(!ready && !lab.spread("w1", &cluster_url, 50)?.contains_key(&unready))
        },
    )?;
    let seen = lab.spread("w1", &cluster_url, 100)?;
    ensure!(
        !seen.contains_key(&unready) && seen.len() == 4,
        "{unready} unready: {seen:?}"
    );
    std::fs::remove_file(flags.path().join(&unready))?;

    // A deleted pod's address and namespace are released.
    let (victim, (victim_ip, _, _)) = pods.iter().nth(1).map_or_else(
        || bail!("no second pod"),
        |(n, p)| Ok((n.clone(), p.clone())),
    )?;
    lab.kubectl(&["delete", "pod", &victim, "--wait=true"])?;
    eventually(
        Duration::from_secs(30),
        "the deleted pod's IP released",
        || {
            Ok(!lab.allocated_ips("w1").contains(&victim_ip)
                && lab.pod_netns("w1").iter().all(|n| !n.contains(&victim)))
        },
    )?;
    let pods = lab.ready_pods("web", 5)?;
    let ips: Vec<String> = {
        let mut v: Vec<String> = pods.values().map(|p| p.0.clone()).collect();
        v.sort();
        v
    };
    ensure!(lab.pod_netns("w1").len() == 5, "{:?}", lab.pod_netns("w1"));
    ensure!(
        lab.allocated_ips("w1") == ips,
        "{:?} vs {ips:?}",
        lab.allocated_ips("w1")
    );

    // Kubelet restart, now with `sh`: the pods keep their addresses, nothing leaks.
    let config = lab.dir().join("w1/kubernel.toml");
    let text =
        std::fs::read_to_string(&config)?.replace("scheduler = \"rr\"", "scheduler = \"sh\"");
    std::fs::write(&config, text)?;
    lab.script(&["restart", "w1"])?;
    eventually(
        Duration::from_secs(60),
        "the pods Ready again with their IPs",
        || {
            let now = lab.pods("web")?;
            let mut v: Vec<String> = now.values().map(|p| p.0.clone()).collect();
            v.sort();
            Ok(now.len() == 5 && now.values().all(|p| p.2) && v == ips)
        },
    )?;
    ensure!(lab.pod_netns("w1").len() == 5, "{:?}", lab.pod_netns("w1"));
    ensure!(
        lab.allocated_ips("w1") == ips,
        "{:?} vs {ips:?}",
        lab.allocated_ips("w1")
    );
    eventually(Duration::from_secs(30), "sh to stick to one pod", || {
        let seen = lab.spread("w1", &cluster_url, 300)?;
        Ok(seen.len() == 1 && seen.values().all(|n| *n == 300))
    })?;

    lab.kubectl(&["delete", "deployment", "web"])?;
    eventually(
        Duration::from_secs(60),
        "every pod namespace and IP released",
        || {
            Ok(lab.pods("web")?.is_empty()
                && lab.pod_netns("w1").is_empty()
                && lab.allocated_ips("w1").is_empty())
        },
    )?;
    Ok(())
}

/// Pod `name` as JSON.
fn get(c: &kubernel_e2e::Cluster, name: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &c.ok(&["get", "pod", name, "-o", "json"])?,
    )?)
}

/// Runs `ip args` inside the test's namespace.
fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_node_without_pod_cidr_should_hold_its_pods_and_leftovers_should_go() -> Result<()> {
    use kubernel_e2e::{component_entry, free_port, Cluster};
    if !inside() {
        return in_new_netns(
            "a_node_without_pod_cidr_should_hold_its_pods_and_leftovers_should_go",
        );
    }
    ip(&["link", "set", "lo", "up"])?;
    let node = format!("nocidr{}", std::process::id());
    let cni = tempfile::tempdir()?;
    // Left by pods that are gone: this node's namespace and IP record, and another
    // node's IP record (not this kubelet's to remove).
    let leftover = format!("kn_{node}_gone_1");
    ip(&["netns", "add", &leftover])?;
    let records = cni.path().join("kubernel");
    std::fs::create_dir_all(&records)?;
    std::fs::write(records.join("10.77.0.9"), format!("{leftover}\r\neth0"))?;
    std::fs::write(records.join("10.77.0.10"), "kn_other_x_1\r\neth0")?;

    let port = free_port()?;
    let c = Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        &format!(
            "runtime = \"process\"\nnode_name = \"{node}\"\nport = {port}\nnetwork = \"bridge\"\ncni_data_dir = \"{}\"\n",
            cni.path().display()
        ),
    ))?;
    eventually(Duration::from_secs(20), "the leftovers removed", || {
        Ok(!std::path::Path::new("/run/netns").join(&leftover).exists()
            && !records.join("10.77.0.9").exists())
    })?;
    ensure!(
        records.join("10.77.0.10").exists(),
        "another node's record was removed"
    );

    // No podCIDR yet: the pod waits, with a NetworkNotReady Event.
    let pod = |name: &str, host_network: bool| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "hostNetwork": host_network,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}],
            }
        })
        .to_string()
    };
    c.ok_stdin(&["apply", "-f", "-"], &pod("waits", false))?;
    c.ok_stdin(&["apply", "-f", "-"], &pod("host", true))?;

    eventually(Duration::from_secs(20), "the NetworkNotReady Event", || {
        let events = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=waits",
        ])?;
        Ok(events.contains("NetworkNotReady") && events.contains("has no spec.podCIDR"))
    })?;
    ensure!(get(&c, "waits")?["status"]["phase"] != "Running");
    // A hostNetwork pod does not wait: it shares the node's network.
    eventually(
        Duration::from_secs(20),
        "the hostNetwork pod Running",
        || {
            let p = get(&c, "host")?;
            Ok(p["status"]["phase"] == "Running" && p["status"]["podIP"] == "127.0.0.1")
        },
    )?;

    // The podCIDR assigned: the pod runs with an address from it.
    c.ok(&[
        "patch",
        "node",
        &node,
        "-p",
        r#"{"spec":{"podCIDR":"10.77.0.0/24","podCIDRs":["10.77.0.0/24"]}}"#,
    ])?;
    let mut pod_ip = String::new();
    eventually(
        Duration::from_secs(20),
        "the pod Running with a pod IP",
        || {
            let p = get(&c, "waits")?;
            pod_ip = p["status"]["podIP"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Ok(p["status"]["phase"] == "Running")
        },
    )?;
    ensure!(
        in_cidr(&pod_ip, "10.77.0.0/24") && pod_ip != "10.77.0.1",
        "{pod_ip}"
    );
    let netns = |prefix: &str| -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    };
    let prefix = format!("kn_{node}_");
    ensure!(netns(&prefix).len() == 1, "{:?}", netns(&prefix));

    // Killed and restarted (SIGKILL): the pod keeps its namespace and address.
    let c = c.kill_and_restart()?;
    eventually(Duration::from_secs(30), "the pod re-adopted", || {
        let p = get(&c, "waits")?;
        Ok(p["status"]["phase"] == "Running" && p["status"]["podIP"] == pod_ip.as_str())
    })?;
    ensure!(netns(&prefix).len() == 1, "{:?}", netns(&prefix));
    ensure!(
        records.join(&pod_ip).exists(),
        "the IP record of {pod_ip} is gone"
    );

    // Deleted: its address and namespace are released.
    c.ok(&["delete", "pod", "waits", "host"])?;
    eventually(
        Duration::from_secs(30),
        "the namespace and IP released",
        || Ok(netns(&prefix).is_empty() && !records.join(&pod_ip).exists()),
    )?;
    Ok(())
}
