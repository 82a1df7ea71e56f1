//! Helpers of the proxy tests: HTTP servers that answer their name, a plain HTTP
//! client, counting which server answered, and the Services and EndpointSlices of the
//! bad-input cases.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kubernel_e2e::Cluster;
use serde_json::{json, Value};

/// Starts an HTTP server on `ip:port` answering `name` to every request.
pub fn backend(ip: &str, port: u16, name: &'static str) -> Result<()> {
    let listener = TcpListener::bind((ip, port)).with_context(|| format!("binding {ip}:{port}"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    Ok(())
}

/// GET / through `addr`: the body (the answering backend's name).
pub fn get(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_string()),
        None => bail!("no HTTP answer through {addr}: {text:?}"),
    }
}

/// `n` requests through `addr`: how many each backend answered.
pub fn spread(addr: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(get(addr)?).or_default() += 1;
    }
    Ok(seen)
}

/// Waits up to `within` (the proxy's time to program the Service) until a connection
/// to `addr` is refused, as a Service port without endpoints must be; returns how long
/// the refused attempt took, for the caller to check it was not a hang.
pub fn refused(addr: SocketAddr, within: Duration) -> Result<Duration> {
    let deadline = Instant::now() + within;
    loop {
        let started = Instant::now();
        let last = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Ok(started.elapsed())
            }
            Err(e) => e.to_string(),
            Ok(_) => "accepted".to_string(),
        };
        if Instant::now() >= deadline {
            bail!("{addr}: not refused within {within:?}; last attempt: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates a NodePort Service `name` with one port `http` (80 -> `target_port`)
/// selecting `app: <selects>`; the created object.
pub fn node_port_service(
    c: &Cluster,
    name: &str,
    target_port: Value,
    selects: &str,
) -> Result<Value> {
    let svc = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
        "spec": {
            "type": "NodePort",
            "selector": { "app": selects },
            "ports": [{ "name": "http", "port": 80, "targetPort": target_port }]
        }
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
    Ok(serde_json::from_str(&body)?)
}

/// The EndpointSlice `<service>-1` with `endpoints` (all ready) and `ports`, as the
/// EndpointSlice controller writes it: for a Service selecting no pod, no endpoints;
/// for pods that define no port of the Service's `targetPort` name, no ports.
pub fn post_slice(c: &Cluster, service: &str, endpoints: &[&str], ports: Value) -> Result<()> {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|ip| json!({ "addresses": [ip], "conditions": { "ready": true } }))
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-1"),
            "labels": { "kubernetes.io/service-name": service }
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints
    });
    let (code, body) = c.send(
        "POST",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        "application/json",
        slice.to_string().as_bytes(),
    )?;
    if code != 201 {
        bail!("create EndpointSlice of {service}: {code} {body}");
    }
    Ok(())
}

/// The NodePort of a created Service's first port.
pub fn node_port_of(created: &Value) -> Result<u16> {
    let port = created["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap_or(0);
    Ok(u16::try_from(port)?)
}
