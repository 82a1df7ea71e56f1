//! The installed kubectl against the apiserver plugin: discovery, create, get in every format, label, patch, delete.

use anyhow::Result;
use kubernel_e2e::Cluster;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: web
    image: nginx:1.27
    ports:
    - containerPort: 80
"#;

#[test]
fn kubectl_should_see_the_cluster_and_its_resources() -> Result<()> {
    let c = Cluster::start("")?;
    let out = c.ok(&["version", "-o", "json"])?;
    assert!(out.contains("\"minor\": \"33\""), "{out}");
    let out = c.ok(&["get", "namespaces"])?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(ns), "{out}");
    }
    assert!(out.starts_with("NAME"), "server-side table: {out}");
    assert!(out.contains("Active"), "{out}");
    let out = c.ok(&["api-resources"])?;
    for line in ["pods ", "deployments ", "po ", "deploy "] {
        assert!(out.contains(line), "{line} in {out}");
    }
    Ok(())
}

#[test]
fn kubectl_should_create_get_label_patch_and_delete_a_pod() -> Result<()> {
    let c = Cluster::start("")?;
    let out = c.ok_stdin(&["create", "-f", "-"], POD)?;
    assert_eq!(out.trim(), "pod/web created");

    let out = c.ok(&["get", "pods"])?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert!(
        out.contains("web") && out.contains("0/1") && out.contains("Pending"),
        "{out}"
    );
    let wide = c.ok(&["get", "pods", "-o", "wide"])?;
    assert!(wide.contains("NODE") && wide.contains("<none>"), "{wide}");

    let yaml = c.ok(&["get", "pod", "web", "-o", "yaml"])?;
    for field in [
        "restartPolicy: Always",
        "dnsPolicy: ClusterFirst",
        "imagePullPolicy: IfNotPresent",
        "uid: ",
        "resourceVersion: ",
    ] {
        assert!(yaml.contains(field), "defaulted {field} in {yaml}");
    }
    assert_eq!(
        c.ok(&["get", "pod", "web", "-o", "name"])?.trim(),
        "pod/web"
    );
    let json = c.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ])?;
    assert_eq!(json, "nginx:1.27");

    c.ok(&["label", "pod", "web", "tier=front"])?;
    c.ok(&["annotate", "pod", "web", "note=hello"])?;
    let out = c.ok(&["get", "pods", "-l", "tier=front", "-o", "name"])?;
    assert_eq!(out.trim(), "pod/web");
    let out = c.ok(&["get", "pods", "-l", "tier=back", "-o", "name"])?;
    assert_eq!(out.trim(), "");
    let out = c.ok(&["get", "pods", "--show-labels"])?;
    assert!(out.contains("app=web,tier=front"), "{out}");

    c.ok(&[
        "patch",
        "pod",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"patched":"merge"}}}"#,
    ])?;
    c.ok(&[
        "patch",
        "pod",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
    ])?;
    c.ok(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}"#,
    ])?;
    let out = c.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels.patched}/{.metadata.labels.json}/{.spec.containers[0].image}/{.spec.containers[0].ports[0].containerPort}"])?;
    assert_eq!(
        out, "merge/yes/nginx:1.28/80",
        "strategic merge keeps the port"
    );

    let out = c.ok(&["delete", "pod", "web"])?;
    assert_eq!(out.trim(), "pod \"web\" deleted");
    let (status, _, err) = c.kubectl(&["get", "pod", "web"])?;
    assert!(!status.success());
    assert!(
        err.contains("Error from server (NotFound): pods \"web\" not found"),
        "{err}"
    );
    Ok(())
}

#[test]
fn kubectl_should_show_server_errors_like_kubernetes() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok_stdin(&["create", "-f", "-"], POD)?;
    let (status, _, err) = c.kubectl_stdin(&["create", "-f", "-"], POD)?;
    assert!(!status.success());
    assert!(
        err.contains("(AlreadyExists)") && err.contains("pods \"web\" already exists"),
        "{err}"
    );

    let invalid = POD
        .replace("    image: nginx:1.27\n", "")
        .replace("name: web\n  labels", "name: Bad_Name\n  labels");
    let (status, _, err) = c.kubectl_stdin(&["create", "-f", "-"], &invalid)?;
    assert!(!status.success());
    assert!(err.contains("is invalid"), "{err}");
    assert!(
        err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );

    let (status, _, err) = c.kubectl(&["get", "pods", "-n", "nowhere-ns", "nope"])?;
    assert!(!status.success());
    assert!(err.contains("NotFound"), "{err}");
    let (status, _, err) = c.kubectl_stdin(&["create", "-n", "nowhere-ns", "-f", "-"], POD)?;
    assert!(!status.success());
    assert!(err.contains("namespaces \"nowhere-ns\" not found"), "{err}");
    Ok(())
}
