//! The proxy's userspace mode, unprivileged, on NodePorts of 127.0.0.10 (a loopback
//! address of its own: other clusters on the machine serve NodePorts on 127.0.0.1): a
//! Service whose EndpointSlice lists three HTTP servers of this test (on 127.0.0.2-4)
//! spreads 300 requests evenly with `rr`, keeps one client on one server with `sh`,
//! stops sending to an endpoint that turns unready, reaches a new endpoint within a
//! second, and a Service without endpoints, one selecting no pod and one whose
//! targetPort names a port no pod defines refuse connections at once instead of hanging.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

mod proxy_support;

use anyhow::{bail, Context, Result};
use kubernel_e2e::{component_entry, eventually, free_port, Cluster};
use proxy_support::{backend, get, node_port_of, node_port_service, post_slice, refused, spread};
use serde_json::{json, Value};

fn slice(port: u16, endpoints: &[(&str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| json!({ "addresses": [ip], "conditions": { "ready": ready } }))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": { "name": "web-1", "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": port, "protocol": "TCP" }],
        "endpoints": endpoints
    })
}

fn service(c: &Cluster, name: &str) -> Result<u16> {
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name },
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
    let created: Value = serde_json::from_str(&body)?;
    let port = created["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap_or(0);
    Ok(u16::try_from(port)?)
}

/// Where NodePorts listen.
const NODE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 10));

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

#[test]
fn userspace_proxy_should_balance_node_port_traffic_over_ready_endpoints() -> Result<()> {
    let port = free_port()?;
    for (ip, name) in [("127.0.0.2", "a"), ("127.0.0.3", "b"), ("127.0.0.4", "c")] {
        backend(ip, port, name)?;
    }
    let healthz = free_port()?;
    let c = Cluster::start(&component_entry(
        "proxy",
        "proxy",
        &format!(
            "node_port_addresses = [\"127.0.0.10\"]\ncluster_ips = \"false\"\nhealthz_bind_address = \"127.0.0.1:{healthz}\"\n"
        ),
    ))?;
    let node_port = service(&c, "web")?;
    let web = SocketAddr::new(NODE, node_port);
    let body = slice(
        port,
        &[
            ("127.0.0.2", true),
            ("127.0.0.3", true),
            ("127.0.0.4", true),
        ],
    );
    let (code, text) = c.send(
        "POST",
        SLICES,
        "application/json",
        body.to_string().as_bytes(),
    )?;
    assert_eq!(code, 201, "{text}");
    eventually(Duration::from_secs(10), "the NodePort answers", || {
        Ok(get(web).is_ok())
    })?;

    // rr: 300 requests, 100 each.
    let seen = spread(web, 300)?;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| (99..=101).contains(&n)), "{seen:?}");

    // An endpoint turning unready gets no more traffic.
    let unready = slice(
        port,
        &[
            ("127.0.0.2", true),
            ("127.0.0.3", true),
            ("127.0.0.4", false),
        ],
    );
    let (code, text) = c.send(
        "PUT",
        &format!("{SLICES}/web-1"),
        "application/json",
        unready.to_string().as_bytes(),
    )?;
    assert_eq!(code, 200, "{text}");
    eventually(Duration::from_secs(1), "c out of rotation", || {
        Ok(!spread(web, 6)?.contains_key("c"))
    })?;
    assert!(!spread(web, 30)?.contains_key("c"));

    // A new ready endpoint receives traffic within a second.
    backend("127.0.0.5", port, "d")?;
    let more = slice(
        port,
        &[
            ("127.0.0.2", true),
            ("127.0.0.3", true),
            ("127.0.0.4", false),
            ("127.0.0.5", true),
        ],
    );
    let changed = Instant::now();
    let (code, text) = c.send(
        "PUT",
        &format!("{SLICES}/web-1"),
        "application/json",
        more.to_string().as_bytes(),
    )?;
    assert_eq!(code, 200, "{text}");
    eventually(Duration::from_secs(1), "d in rotation", || {
        Ok(spread(web, 3)?.contains_key("d"))
    })?;
    println!(
        "new endpoint served {} ms after the slice update",
        changed.elapsed().as_millis()
    );

    // Bad input, refused at once rather than hanging: a Service without endpoints, one
    // selecting no pod (an empty slice), one whose targetPort names a port no pod
    // defines (its pods' slice has no port of that name).
    let empty = service(&c, "empty")?;
    let nothing = node_port_of(&node_port_service(&c, "nothing", json!(8080), "none")?)?;
    post_slice(&c, "nothing", &[], json!([]))?;
    let unnamed = node_port_of(&node_port_service(&c, "unnamed", json!("metrics"), "web")?)?;
    post_slice(&c, "unnamed", &["127.0.0.2", "127.0.0.3"], json!([]))?;
    for (what, port) in [
        ("no endpoints", empty),
        ("selects nothing", nothing),
        ("unknown port name", unnamed),
    ] {
        let took = refused(SocketAddr::new(NODE, port), Duration::from_secs(2))
            .with_context(|| what.to_string())?;
        assert!(took < Duration::from_millis(500), "{what}: {took:?}");
    }

    // /healthz and the metrics.
    let health = ureq::get(&format!("http://127.0.0.1:{healthz}/healthz"))
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(health, 200);
    let (_, metrics) = c.kernel.get("/metrics")?;
    let endpoint = format!("endpoint=\"127.0.0.2:{port}\"");
    let counted = metrics.lines().any(|l| {
        l.starts_with("kubernel_proxy_connections_total{")
            && l.contains(&endpoint)
            && l.contains("service=\"default/web:http\"")
    });
    assert!(counted, "connections to a counted in:\n{metrics}");
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_count"));
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_endpoint_changes_total"));

    // sh: one client address stays on one endpoint.
    let (code, text) = c.kernel.send_json(
        "PUT",
        "/plugins/proxy/config",
        &json!({
            "scheduler": "sh",
            "node_port_addresses": ["127.0.0.10"],
            "cluster_ips": "false",
            "healthz_bind_address": format!("127.0.0.1:{healthz}"),
        }),
    )?;
    assert!(code < 300, "reconfigure: {code} {text}");
    eventually(Duration::from_secs(10), "sh in force", || {
        Ok(get(web).is_ok() && spread(web, 20)?.len() == 1)
    })?;
    let sticky = spread(web, 300)?;
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    Ok(())
}
