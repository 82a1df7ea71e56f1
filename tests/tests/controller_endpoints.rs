//! A user exposes pods with a Service: the controller-manager keeps its Endpoints
//! and EndpointSlice equal to the ready and not-ready pods it selects, follows pod
//! readiness and deletion, removes both with the Service or its selector, and
//! leaves the user's Endpoints of a selector-less Service alone.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster, wait_for, FakeKubelet};
use kubernel_e2e::Cluster;
use serde_json::Value;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: other
spec:
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: manual
spec:
  ports:
  - port: 80
---
apiVersion: v1
kind: Endpoints
metadata:
  name: manual
subsets:
- addresses:
  - ip: 192.0.2.10
  ports:
  - port: 80
"#;

fn pod(name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: web
spec:
  containers:
  - name: web
    image: {image}
    ports:
    - name: http
      containerPort: 8080
"#
    )
}

fn json(c: &Cluster, args: &[&str]) -> Result<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    Ok(serde_json::from_str(&c.ok(&full)?)?)
}

/// `(ready addresses, not-ready addresses, ports)` of the Endpoints `web`.
fn endpoints(c: &Cluster) -> Result<(usize, usize, Vec<i64>)> {
    endpoints_of(c, "web")
}

/// `(ready addresses, not-ready addresses, ports)` of the Endpoints `service`.
fn endpoints_of(c: &Cluster, service: &str) -> Result<(usize, usize, Vec<i64>)> {
    let ep = json(c, &["endpoints", service])?;
    let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
    let count = |field: &str| {
        subsets
            .iter()
            .map(|s| s[field].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    let ports = subsets
        .iter()
        .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    Ok((count("addresses"), count("notReadyAddresses"), ports))
}

/// The managed EndpointSlices of `web`.
fn slices(c: &Cluster) -> Result<Vec<Value>> {
    slices_of(c, "web")
}

/// The managed EndpointSlices of `service`.
fn slices_of(c: &Cluster, service: &str) -> Result<Vec<Value>> {
    let selector = format!(
        "kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
    );
    let list = json(c, &["endpointslices", "-l", &selector])?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// The `conditions.ready` of every endpoint of `web`'s slices, sorted (false first).
fn slice_readiness(c: &Cluster) -> Result<Vec<bool>> {
    let mut ready: Vec<bool> = slices(c)?
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| e["conditions"]["ready"].as_bool().unwrap_or(false))
        .collect();
    ready.sort();
    Ok(ready)
}

#[test]
fn service_endpoints_should_follow_pod_readiness_and_deletion() -> Result<()> {
    let c = cluster()?;
    let _kubelet = FakeKubelet::start(&c, &["node-a", "node-b"], None)?;
    c.ok_stdin(&["apply", "-f", "-"], SERVICE)?;
    for (name, image) in [
        ("web-1", "nginx"),
        ("web-2", "nginx"),
        ("web-3", "never-ready"),
    ] {
        c.ok_stdin(&["apply", "-f", "-"], &pod(name, image))?;
    }

    wait_for(
        "Endpoints web with 2 ready and 1 not-ready address on port 8080",
        Duration::from_secs(30),
        || {
            let seen = endpoints(&c)?;
            Ok((
                (seen == (2, 1, vec![8080])).then_some(()),
                format!("{seen:?}"),
            ))
        },
    )?;
    let ep = json(&c, &["endpoints", "web"])?;
    let address = &ep["subsets"][0]["addresses"][0];
    assert_eq!(address["targetRef"]["kind"], "Pod", "{ep}");
    assert!(
        address["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("node-")),
        "{ep}"
    );
    let not_ready = &ep["subsets"][0]["notReadyAddresses"][0];
    assert_eq!(not_ready["targetRef"]["name"], "web-3", "{ep}");

    wait_for(
        "EndpointSlice of web with 2 ready and 1 not-ready endpoint",
        Duration::from_secs(30),
        || {
            let seen = slice_readiness(&c)?;
            Ok((
                (seen == [false, true, true]).then_some(()),
                format!("{seen:?}"),
            ))
        },
    )?;
    let all = slices(&c)?;
    assert_eq!(all.len(), 1, "{all:?}");
    let slice = &all[0];
    assert_eq!(slice["addressType"], "IPv4", "{slice}");
    assert_eq!(slice["ports"][0]["name"], "http", "{slice}");
    assert_eq!(slice["ports"][0]["port"], 8080, "{slice}");
    assert_eq!(
        slice["metadata"]["ownerReferences"][0]["kind"], "Service",
        "{slice}"
    );
    assert_eq!(
        slice["metadata"]["ownerReferences"][0]["name"], "web",
        "{slice}"
    );
    let endpoint = slice["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["targetRef"]["name"] == "web-3"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(endpoint["conditions"]["ready"], false, "{slice}");
    assert!(endpoint["nodeName"].is_string(), "{slice}");

    c.ok(&[
        "patch",
        "pod",
        "web-2",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
    ])?;
    wait_for(
        "Endpoints web with web-2 not ready",
        Duration::from_secs(30),
        || {
            let seen = endpoints(&c)?;
            Ok((
                (seen == (1, 2, vec![8080])).then_some(()),
                format!("{seen:?}"),
            ))
        },
    )?;
    wait_for(
        "EndpointSlice of web with web-2 not ready",
        Duration::from_secs(30),
        || {
            let seen = slice_readiness(&c)?;
            Ok((
                (seen == [false, false, true]).then_some(()),
                format!("{seen:?}"),
            ))
        },
    )?;

    c.ok(&["delete", "pod", "web-1"])?;
    wait_for(
        "Endpoints web with 2 not-ready addresses",
        Duration::from_secs(30),
        || {
            let seen = endpoints(&c)?;
            Ok((
                (seen == (0, 2, vec![8080])).then_some(()),
                format!("{seen:?}"),
            ))
        },
    )?;
    wait_for(
        "EndpointSlice of web with 2 endpoints",
        Duration::from_secs(30),
        || {
            let seen = slice_readiness(&c)?;
            Ok(((seen == [false, false]).then_some(()), format!("{seen:?}")))
        },
    )?;

    wait_for(
        "Endpoints and EndpointSlice of other",
        Duration::from_secs(30),
        || {
            let seen = (endpoints_of(&c, "other")?, slices_of(&c, "other")?.len());
            Ok((
                (seen == ((0, 2, vec![80]), 1)).then_some(()),
                format!("{seen:?}"),
            ))
        },
    )?;
    c.ok(&[
        "patch",
        "service",
        "other",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/selector"}]"#,
    ])?;
    wait_for(
        "other, without a selector, has no managed Endpoints or EndpointSlice",
        Duration::from_secs(30),
        || {
            let eps = c.ok(&["get", "endpoints", "-o", "name"])?;
            let left = slices_of(&c, "other")?.len();
            let gone = !eps.lines().any(|l| l.trim() == "endpoints/other") && left == 0;
            Ok((gone.then_some(()), format!("{eps:?}, {left} slices")))
        },
    )?;

    c.ok(&["delete", "service", "web"])?;
    wait_for(
        "no Endpoints and no EndpointSlice for web",
        Duration::from_secs(30),
        || {
            let eps = c.ok(&["get", "endpoints", "-o", "name"])?;
            let left = slices(&c)?.len();
            let gone = !eps.lines().any(|l| l.trim() == "endpoints/web") && left == 0;
            Ok((gone.then_some(()), format!("{eps:?}, {left} slices")))
        },
    )?;

    let manual = json(&c, &["endpoints", "manual"])?;
    assert_eq!(
        manual["subsets"][0]["addresses"][0]["ip"], "192.0.2.10",
        "user-managed Endpoints of a selector-less Service are left alone: {manual}"
    );
    // The apiserver writes the `kubernetes` Service's Endpoints with the same
    // skip-mirror label as the controller's own: the controller leaves them alone.
    let apiserver = json(&c, &["endpoints", "kubernetes"])?;
    assert!(
        apiserver["subsets"][0]["addresses"][0]["ip"].is_string(),
        "the apiserver's Endpoints are kept: {apiserver}"
    );
    Ok(())
}
