//! kubectl's typed generators (`kubectl create namespace|configmap|secret|deployment|...`)
//! send protobuf bodies; the objects they create match what they asked for.

use anyhow::Result;
use kubernel_e2e::Cluster;
use serde_json::Value;

fn json(c: &Cluster, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&c.ok(&all)?)?)
}

#[test]
fn kubectl_create_generators_should_create_the_objects_they_describe() -> Result<()> {
    let c = Cluster::start("")?;
    assert_eq!(
        c.ok(&["create", "namespace", "lab"])?.trim(),
        "namespace/lab created"
    );
    let ns = json(&c, &["get", "namespace", "lab"])?;
    assert_eq!(ns["status"]["phase"], "Active");

    c.ok(&[
        "-n",
        "lab",
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=1",
        "--from-literal=b=two",
    ])?;
    let cm = json(&c, &["-n", "lab", "get", "configmap", "cfg"])?;
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "two"}));
    assert!(cm["metadata"]["creationTimestamp"].is_string(), "{cm}");

    c.ok(&[
        "-n",
        "lab",
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=password=hunter2",
    ])?;
    let secret = json(&c, &["-n", "lab", "get", "secret", "s"])?;
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");

    c.ok(&[
        "-n",
        "lab",
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=0",
        "--port=80",
    ])?;
    let d = json(&c, &["-n", "lab", "get", "deployment", "web"])?;
    assert_eq!(d["spec"]["replicas"], 0, "an explicit zero survives: {d}");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["ports"][0]["containerPort"], 80);
    assert_eq!(
        container["terminationMessagePath"], "/dev/termination-log",
        "defaults apply to fields the generator left empty"
    );

    c.ok(&[
        "-n",
        "lab",
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
    ])?;
    let svc = json(&c, &["-n", "lab", "get", "service", "web"])?;
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    c.ok(&["-n", "lab", "create", "serviceaccount", "robot"])?;
    c.ok(&[
        "-n",
        "lab",
        "create",
        "job",
        "once",
        "--image=busybox",
        "--",
        "echo",
        "hi",
    ])?;
    let job = json(&c, &["-n", "lab", "get", "job", "once"])?;
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    c.ok(&[
        "-n",
        "lab",
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods",
    ])?;
    c.ok(&[
        "-n",
        "lab",
        "create",
        "rolebinding",
        "read",
        "--role=reader",
        "--serviceaccount=lab:robot",
    ])?;
    let rb = json(&c, &["-n", "lab", "get", "rolebinding", "read"])?;
    assert_eq!(rb["subjects"][0]["name"], "robot");
    c.ok(&[
        "-n",
        "lab",
        "create",
        "quota",
        "q",
        "--hard=pods=5,requests.cpu=2",
    ])?;
    let q = json(&c, &["-n", "lab", "get", "resourcequota", "q"])?;
    assert_eq!(q["spec"]["hard"]["requests.cpu"], "2");
    c.ok(&[
        "-n",
        "lab",
        "create",
        "poddisruptionbudget",
        "pdb",
        "--selector=app=web",
        "--min-available=50%",
    ])?;
    let pdb = json(&c, &["-n", "lab", "get", "pdb", "pdb"])?;
    assert_eq!(pdb["spec"]["minAvailable"], "50%");
    Ok(())
}
