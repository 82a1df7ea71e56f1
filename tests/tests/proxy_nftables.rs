//! The proxy's nftables mode (root): the test runs itself again inside a network
//! namespace it creates (a bridge `kn0` with the node address 10.200.0.1 and the
//! endpoints' addresses, a route for the service range), so nothing touches the
//! host's network. There: ClusterIP and NodePort traffic is spread evenly over three
//! HTTP servers with `rr`, stays on one with `sh`, leaves an endpoint that turns
//! unready, and a Service without endpoints, one selecting no pod and one whose
//! targetPort names a port no pod defines refuse connections at once.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

mod proxy_support;

use anyhow::{bail, Context, Result};
use kubernel_e2e::netns::{in_new_netns, inside};
use kubernel_e2e::{component_entry, eventually, free_port, Cluster};
use proxy_support::{backend, get, node_port_of, node_port_service, post_slice, refused, spread};
use serde_json::{json, Value};

const NODE_IP: &str = "10.200.0.1";

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The namespace's network: loopback, a bridge with the node and endpoint addresses.
fn network() -> Result<()> {
    run("ip", &["link", "set", "lo", "up"])?;
    run("ip", &["link", "add", "kn0", "type", "bridge"])?;
    run("ip", &["link", "set", "kn0", "up"])?;
    run(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/24"), "dev", "kn0"],
    )?;
    for i in 2..=4 {
        run(
            "ip",
            &["addr", "add", &format!("10.200.0.{i}/32"), "dev", "kn0"],
        )?;
    }
    run("ip", &["route", "add", "10.96.0.0/12", "dev", "kn0"])?;
    Ok(())
}

fn slice(endpoints: &[(&str, bool)]) -> String {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| json!({ "addresses": [ip], "conditions": { "ready": ready } }))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "web-1", "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
        "endpoints": endpoints
    })
    .to_string()
}

/// Creates a NodePort Service; its ClusterIP and NodePort.
fn service(c: &Cluster, name: &str) -> Result<(String, u16)> {
    let svc = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
        "spec": { "type": "NodePort", "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
    });
    let (code, body) = c.send(
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        svc.to_string().as_bytes(),
    )?;
    if code != 201 {
        bail!("create service {name}: {code} {body}");
    }
    let v: Value = serde_json::from_str(&body)?;
    let ip = v["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let port = u16::try_from(v["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0))?;
    Ok((ip, port))
}

/// `nft list table ip kubernel`.
fn nft_rules() -> Result<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", "kubernel"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

#[test]
fn nftables_proxy_should_balance_cluster_ip_and_node_port_traffic() -> Result<()> {
    if !inside() {
        return in_new_netns("nftables_proxy_should_balance_cluster_ip_and_node_port_traffic");
    }
    network()?;
    for (ip, name) in [
        ("10.200.0.2", "a"),
        ("10.200.0.3", "b"),
        ("10.200.0.4", "c"),
    ] {
        backend(ip, 8080, name)?;
    }
    let healthz = free_port()?;
    let config = |scheduler: &str| {
        format!("mode = \"nftables\"\nscheduler = \"{scheduler}\"\nhealthz_bind_address = \"127.0.0.1:{healthz}\"\n")
    };
    let c = Cluster::start(&component_entry("proxy", "proxy", &config("rr")))?;
    let (ip, node_port) = service(&c, "web")?;
    let cluster = SocketAddr::new(ip.parse()?, 80);
    let node = SocketAddr::new(NODE_IP.parse()?, node_port);
    let body = slice(&[
        ("10.200.0.2", true),
        ("10.200.0.3", true),
        ("10.200.0.4", true),
    ]);
    let (code, text) = c.send("POST", SLICES, "application/json", body.as_bytes())?;
    assert_eq!(code, 201, "{text}");
    eventually(Duration::from_secs(10), "the ClusterIP answers", || {
        Ok(get(cluster).is_ok())
    })?;

    for addr in [cluster, node] {
        let seen = spread(addr, 300)?;
        assert_eq!(seen.len(), 3, "{addr}: {seen:?}");
        assert!(
            seen.values().all(|&n| (99..=101).contains(&n)),
            "{addr}: {seen:?}"
        );
    }

    let unready = slice(&[
        ("10.200.0.2", true),
        ("10.200.0.3", true),
        ("10.200.0.4", false),
    ]);
    let changed = Instant::now();
    let (code, text) = c.send(
        "PUT",
        &format!("{SLICES}/web-1"),
        "application/json",
        unready.as_bytes(),
    )?;
    assert_eq!(code, 200, "{text}");
    eventually(Duration::from_secs(1), "c out of rotation", || {
        Ok(!spread(cluster, 6)?.contains_key("c"))
    })?;
    println!(
        "measured: endpoint removed {} ms after the slice update",
        changed.elapsed().as_millis()
    );
    assert!(!spread(node, 30)?.contains_key("c"));

    // Bad input, refused at once rather than hanging (at the ClusterIP and the
    // NodePort): a Service without endpoints, one selecting no pod (an empty slice),
    // one whose targetPort names a port no pod defines (its pods' slice has no port of
    // that name).
    let (empty_ip, empty_port) = service(&c, "empty")?;
    let nothing = node_port_service(&c, "nothing", json!(8080), "none")?;
    post_slice(&c, "nothing", &[], json!([]))?;
    let unnamed = node_port_service(&c, "unnamed", json!("metrics"), "web")?;
    post_slice(&c, "unnamed", &["10.200.0.2", "10.200.0.3"], json!([]))?;
    let mut cases = vec![("no endpoints", empty_ip, empty_port)];
    for (what, created) in [
        ("selects nothing", &nothing),
        ("unknown port name", &unnamed),
    ] {
        let ip = created["spec"]["clusterIP"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        cases.push((what, ip, node_port_of(created)?));
    }
    for (what, ip, node_port) in cases {
        for addr in [
            SocketAddr::new(ip.parse()?, 80),
            SocketAddr::new(NODE_IP.parse()?, node_port),
        ] {
            let took = refused(addr, Duration::from_secs(5)).with_context(|| what.to_string())?;
            assert!(took < Duration::from_secs(1), "{what} {addr}: {took:?}");
        }
    }

    let rules = nft_rules()?;
    assert!(rules.contains("numgen inc mod 2"), "{rules}");

    // kube-proxy's sync metrics count the syncs and the changes they applied.
    let (_, metrics) = c.kernel.get("/metrics")?;
    for series in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_service_changes_total",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
    ] {
        let value = metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{series} ")) || l.starts_with(&format!("{series}{{"))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        assert!(value > 0.0, "{series} = {value}");
    }

    // sh: one client address, one endpoint.
    let (code, text) = c.kernel.send_json(
        "PUT",
        "/plugins/proxy/config",
        &json!({ "mode": "nftables", "scheduler": "sh", "healthz_bind_address": format!("127.0.0.1:{healthz}") }),
    )?;
    assert!(code < 300, "reconfigure: {code} {text}");
    eventually(Duration::from_secs(10), "sh in force", || {
        Ok(nft_rules()?.contains("jhash ip saddr") && get(cluster).is_ok())
    })?;
    let sticky = spread(cluster, 100)?;
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    Ok(())
}
