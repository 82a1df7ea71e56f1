//! Services get cluster IPs and node ports from the apiserver, as from kube-apiserver: allocated, kept, checked, released, and the `kubernetes` Service.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use kubernel_e2e::Cluster;
use serde_json::{json, Value};

fn json_of(c: &Cluster, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&c.ok(&all)?)?)
}

fn service(c: &Cluster, name: &str) -> Result<Value> {
    json_of(c, &["get", "service", name])
}

/// kubectl's stderr for a command expected to fail.
fn refused(c: &Cluster, args: &[&str], stdin: &str) -> Result<String> {
    let (status, out, err) = c.kubectl_stdin(args, stdin)?;
    if status.success() {
        bail!("kubectl {} succeeded: {out}", args.join(" "));
    }
    Ok(err)
}

fn ip_in_default_range(ip: &Value) -> bool {
    ip.as_str()
        .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
        .is_some_and(|ip| (u32::from(ip) >> 20) == (u32::from_be_bytes([10, 96, 0, 0]) >> 20))
}

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n";

#[test]
fn the_kubernetes_service_should_point_at_the_apiserver_after_start() -> Result<()> {
    let c = Cluster::start("")?;
    let port = c.secure_port()?;
    let svc = service(&c, "kubernetes")?;
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1", "{svc}");
    assert_eq!(svc["spec"]["clusterIPs"], json!(["10.96.0.1"]));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}])
    );
    assert_eq!(
        svc["metadata"]["labels"],
        json!({"component": "apiserver", "provider": "kubernetes"})
    );
    let table = c.ok(&["get", "svc", "kubernetes"])?;
    assert!(
        table.contains("ClusterIP") && table.contains("10.96.0.1") && table.contains("443/TCP"),
        "{table}"
    );
    let ep = json_of(&c, &["get", "endpoints", "kubernetes"])?;
    assert_eq!(
        ep["subsets"],
        json!([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
    );
    let slice = json_of(&c, &["get", "endpointslice", "kubernetes"])?;
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["127.0.0.1"]));
    assert_eq!(slice["ports"][0]["port"], port);

    // A restart neither duplicates nor recreates them.
    let uid = svc["metadata"]["uid"].clone();
    let c = c.kill_and_restart()?;
    assert_eq!(service(&c, "kubernetes")?["metadata"]["uid"], uid);
    Ok(())
}

#[test]
fn kubectl_created_and_applied_services_should_get_and_keep_a_cluster_ip() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok(&["create", "service", "clusterip", "gen", "--tcp=80:8080"])?;
    let gen = service(&c, "gen")?;
    assert!(ip_in_default_range(&gen["spec"]["clusterIP"]), "{gen}");
    assert_eq!(gen["spec"]["clusterIPs"], json!([gen["spec"]["clusterIP"]]));
    assert_eq!(gen["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(gen["spec"]["ipFamilyPolicy"], "SingleStack");

    // kubectl expose reads the deployment's selector and posts a Service without an IP.
    c.ok(&[
        "create",
        "deployment",
        "app",
        "--image=nginx",
        "--port=8080",
    ])?;
    c.ok(&[
        "expose",
        "deployment",
        "app",
        "--port=80",
        "--target-port=8080",
    ])?;
    let exposed = service(&c, "app")?;
    assert!(
        ip_in_default_range(&exposed["spec"]["clusterIP"]),
        "{exposed}"
    );
    assert_ne!(exposed["spec"]["clusterIP"], gen["spec"]["clusterIP"]);

    // apply twice, the second time with a change: the IP stays.
    c.ok_stdin(&["apply", "-f", "-"], WEB)?;
    let ip = service(&c, "web")?["spec"]["clusterIP"].clone();
    assert!(ip_in_default_range(&ip), "{ip}");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &WEB.replace("targetPort: 8080", "targetPort: 9090"),
    )?;
    let applied = service(&c, "web")?;
    assert_eq!(applied["spec"]["clusterIP"], ip);
    assert_eq!(applied["spec"]["ports"][0]["targetPort"], 9090);
    // replace sends the manifest as it is, without the IP: the server keeps it.
    c.ok_stdin(&["replace", "-f", "-"], WEB)?;
    assert_eq!(service(&c, "web")?["spec"]["clusterIP"], ip);

    // A cluster IP may not change, and a requested one must be free and in range.
    let moved = format!("{WEB}  clusterIP: 10.96.0.77\n");
    let err = refused(&c, &["apply", "-f", "-"], &moved)?;
    assert!(
        err.contains(
            "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.77\"}: may not change once set"
        ),
        "{err}"
    );
    let fixed = WEB.replace("name: web", "name: fixed") + "  clusterIP: 10.96.0.77\n";
    c.ok_stdin(&["create", "-f", "-"], &fixed)?;
    assert_eq!(
        service(&c, "fixed")?["spec"]["clusterIPs"],
        json!(["10.96.0.77"])
    );
    let twin = fixed.replace("name: fixed", "name: twin");
    let err = refused(&c, &["create", "-f", "-"], &twin)?;
    assert!(
        err.contains("The Service \"twin\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.77\"}: failed to allocate IP 10.96.0.77: provided IP is already allocated"),
        "{err}"
    );
    let outside = twin.replace("10.96.0.77", "10.200.0.1");
    let err = refused(&c, &["create", "-f", "-"], &outside)?;
    assert!(
        err.contains("failed to allocate IP 10.200.0.1: the provided IP (10.200.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{err}"
    );

    // Headless and ExternalName Services take no IP.
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "headless",
        "--clusterip=None",
        "--tcp=80",
    ])?;
    assert_eq!(service(&c, "headless")?["spec"]["clusterIP"], "None");
    c.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=example.com",
    ])?;
    let ext = service(&c, "ext")?;
    assert_eq!(ext["spec"].get("clusterIP"), None, "{ext}");
    Ok(())
}

#[test]
fn node_ports_should_be_allocated_checked_kept_and_released() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok(&["create", "service", "nodeport", "gen", "--tcp=80:8080"])?;
    let node_port = service(&c, "gen")?["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap_or(0);
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    let np = "apiVersion: v1\nkind: Service\nmetadata:\n  name: np\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    nodePort: 30080\n";
    c.ok_stdin(&["apply", "-f", "-"], np)?;
    let err = refused(
        &c,
        &["create", "-f", "-"],
        &np.replace("name: np", "name: np2"),
    )?;
    assert!(
        err.contains("The Service \"np2\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"),
        "{err}"
    );
    let err = refused(
        &c,
        &["create", "-f", "-"],
        &np.replace("name: np", "name: np3")
            .replace("30080", "29999"),
    )?;
    assert!(
        err.contains("spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{err}"
    );

    // The same two refusals over HTTP: 422 Invalid, as from kube-apiserver.
    for (name, node_port, message) in [
        ("np6", 30080, "provided port is already allocated"),
        ("np7", 32768, "provided port is not in the valid range"),
    ] {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
            "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": node_port }] }
        });
        let (code, body) = c.send(
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            svc.to_string().as_bytes(),
        )?;
        assert_eq!(code, 422, "{name}: {body}");
        let status: Value = serde_json::from_str(&body)?;
        assert_eq!(status["reason"], "Invalid", "{body}");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{body}"
        );
    }

    // apply again with another port added: the first keeps its node port, the new one gets one.
    let two = format!("{np}  - port: 443\n    name: https\n")
        .replace("- port: 80\n", "- port: 80\n    name: http\n");
    c.ok_stdin(&["apply", "-f", "-"], &two)?;
    let ports = service(&c, "np")?["spec"]["ports"].clone();
    assert_eq!(ports[0]["nodePort"], 30080, "{ports}");
    assert!(
        ports[1]["nodePort"]
            .as_i64()
            .is_some_and(|p| p != 30080 && (30000..=32767).contains(&p)),
        "{ports}"
    );

    // Back to ClusterIP: the node ports are dropped and free again.
    let plain = two
        .replace("  type: NodePort\n", "  type: ClusterIP\n")
        .replace("    nodePort: 30080\n", "");
    c.ok_stdin(&["apply", "-f", "-"], &plain)?;
    let svc = service(&c, "np")?;
    assert_eq!(svc["spec"]["ports"][0].get("nodePort"), None, "{svc}");
    c.ok_stdin(&["create", "-f", "-"], &np.replace("name: np", "name: np4"))?;

    // Deleting a NodePort Service frees its port.
    c.ok(&["delete", "service", "np4"])?;
    c.ok_stdin(&["create", "-f", "-"], &np.replace("name: np", "name: np5"))?;

    // LoadBalancer: node ports allocated, left pending; ClientIP affinity defaulted.
    c.ok(&["create", "service", "loadbalancer", "lb", "--tcp=80:8080"])?;
    c.ok(&[
        "patch",
        "service",
        "lb",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    ])?;
    let lb = service(&c, "lb")?;
    assert!(
        lb["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .is_some_and(|p| p >= 30000),
        "{lb}"
    );
    assert_eq!(
        lb["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
    let table = c.ok(&["get", "service", "lb"])?;
    assert!(
        table.contains("LoadBalancer") && table.contains("<pending>"),
        "{table}"
    );
    Ok(())
}

#[test]
fn a_full_range_should_refuse_creates_until_a_service_is_deleted() -> Result<()> {
    // 10.96.0.0/29: six usable IPs, the first taken by the kubernetes Service.
    let c = Cluster::start("service_cluster_ip_range = \"10.96.0.0/29\"")?;
    let mut ips = BTreeSet::new();
    for i in 0..5 {
        let name = format!("s{i}");
        c.ok(&["create", "service", "clusterip", &name, "--tcp=80"])?;
        ips.insert(
            service(&c, &name)?["spec"]["clusterIP"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    let expected: BTreeSet<String> = (2..=6).map(|i| format!("10.96.0.{i}")).collect();
    assert_eq!(ips, expected);
    let err = refused(
        &c,
        &["create", "service", "clusterip", "extra", "--tcp=80"],
        "",
    )?;
    assert!(
        err.contains("Internal error occurred: failed to allocate a serviceIP: range is full"),
        "{err}"
    );
    let freed = service(&c, "s2")?["spec"]["clusterIP"].clone();
    c.ok(&["delete", "service", "s2"])?;
    c.ok(&["create", "service", "clusterip", "extra", "--tcp=80"])?;
    assert_eq!(service(&c, "extra")?["spec"]["clusterIP"], freed);
    Ok(())
}

#[test]
fn concurrent_creates_should_never_share_an_ip() -> Result<()> {
    let c = Cluster::start("service_cluster_ip_range = \"10.96.0.0/29\"")?;
    let created: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("c{i}")},
                        "spec": {"ports": [{"port": 80}]}});
                    c.send("POST", "/api/v1/namespaces/default/services", "application/json", body.to_string().as_bytes())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a create thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut ips = BTreeSet::new();
    for (status, body) in &created {
        match status {
            201 => {
                let svc: Value = serde_json::from_str(body)?;
                assert!(
                    ips.insert(svc["spec"]["clusterIP"].to_string()),
                    "shared IP: {body}"
                );
            }
            500 => assert!(body.contains("range is full"), "{body}"),
            other => bail!("create answered {other}: {body}"),
        }
    }
    assert_eq!(ips.len(), 5, "{created:?}");
    Ok(())
}

#[test]
fn allocations_should_survive_a_restart() -> Result<()> {
    let c = Cluster::start("")?;
    let held = "apiVersion: v1\nkind: Service\nmetadata:\n  name: held\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.50\n  ports:\n  - port: 80\n    nodePort: 30090\n";
    c.ok_stdin(&["create", "-f", "-"], held)?;
    c.ok(&["create", "service", "clusterip", "dynamic", "--tcp=80"])?;
    let dynamic = service(&c, "dynamic")?["spec"]["clusterIP"].clone();
    let c = c.kill_and_restart()?;

    let err = refused(
        &c,
        &["create", "-f", "-"],
        &held.replace("name: held", "name: again"),
    )?;
    assert!(err.contains("provided IP is already allocated"), "{err}");
    let other_ip = held
        .replace("name: held", "name: again")
        .replace("10.96.0.50", "10.96.0.51");
    let err = refused(&c, &["create", "-f", "-"], &other_ip)?;
    assert!(
        err.contains("30090: provided port is already allocated"),
        "{err}"
    );
    c.ok(&["create", "service", "clusterip", "next", "--tcp=80"])?;
    let next = service(&c, "next")?["spec"]["clusterIP"].clone();
    assert_ne!(next, dynamic);
    assert_ne!(next, "10.96.0.50");

    // After a delete, the restarted apiserver hands the values out again.
    c.ok(&["delete", "service", "held"])?;
    c.ok_stdin(
        &["create", "-f", "-"],
        &held.replace("name: held", "name: again"),
    )?;
    Ok(())
}
