//! Service-account tokens: `kubectl create token` issues one through the
//! TokenRequest subresource; it authenticates as
//! `system:serviceaccount:<namespace>:<name>` with kubectl and raw HTTPS, gets
//! upstream's 403 text until RBAC grants it something, and stops working when its
//! ServiceAccount is deleted. A pod gets the `kube-api-access-*` volume from
//! admission, the kubelet projects its token, CA and namespace at
//! `/var/run/secrets/kubernetes.io/serviceaccount` and sets `KUBERNETES_SERVICE_*`,
//! and the pod calls the API with them.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use kubernel_e2e::netns::is_root;
use kubernel_e2e::{component_entry, eventually, free_port, kubectl_as, Cluster};
use serde_json::json;

#[test]
fn kubectl_create_token_should_issue_a_token_that_authenticates_until_its_account_goes(
) -> Result<()> {
    let c = Cluster::start("")?;
    let (status, _, err) = c.kubectl(&["create", "serviceaccount", "robot"])?;
    assert!(status.success(), "{err}");
    let (status, token, err) = c.kubectl(&["create", "token", "robot", "--duration=20m"])?;
    assert!(status.success(), "{err}");
    let token = token.trim();
    assert!(
        token.starts_with("eyJ") && token.split('.').count() == 3,
        "{token}"
    );
    let dir = tempfile::tempdir()?;
    let kubeconfig = c.token_kubeconfig(dir.path(), token)?;
    let (ok, out, err) = kubectl_as(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
        "",
    )?;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("system:serviceaccount:default:robot "),
        "{out}"
    );
    assert!(out.contains("system:serviceaccounts:default"), "{out}");
    let (ok, _, err) = kubectl_as(&kubeconfig, &["get", "pods"], "")?;
    assert!(!ok);
    assert!(err.contains("pods is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""), "{err}");
    let (status, _, err) = c.kubectl(&["delete", "serviceaccount", "robot"])?;
    assert!(status.success(), "{err}");
    let (ok, _, err) = kubectl_as(&kubeconfig, &["get", "pods"], "")?;
    assert!(!ok);
    if !err.contains("You must be logged in to the server") {
        bail!("a deleted account's token still authenticates: {err}");
    }
    Ok(())
}

/// What the pod runs: reads its ServiceAccount files and lists pods over HTTPS
/// with them, printing what it found.
const IN_POD: &str = r#"
import json, os, ssl, urllib.request, urllib.error
d = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(d + "/token").read()
ns = open(d + "/namespace").read()
ctx = ssl.create_default_context(cafile=d + "/ca.crt")
print("namespace=" + ns, "host=" + os.environ.get("KUBERNETES_SERVICE_HOST", ""),
      "port=" + os.environ.get("KUBERNETES_SERVICE_PORT", ""), flush=True)
req = urllib.request.Request("https://127.0.0.1:" + os.environ["API_PORT"] + "/api/v1/namespaces/" + ns + "/pods",
                             headers={"Authorization": "Bearer " + token})
try:
    body = json.load(urllib.request.urlopen(req, context=ctx))
    print("status=200 pods=" + ",".join(p["metadata"]["name"] for p in body["items"]), flush=True)
except urllib.error.HTTPError as e:
    print("status=" + str(e.code), flush=True)
"#;

#[test]
fn a_pod_should_call_the_api_with_its_projected_token() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: needs root (the process runtime mounts volumes at their mountPath only as root)");
        return Ok(());
    }
    let port = free_port()?;
    let c = Cluster::start(&format!(
        "{}{}",
        component_entry(
            "kubelet",
            "kubelet",
            &format!("runtime = \"process\"\nnetwork = \"host\"\nnode_name = \"sa-node\"\nport = {port}\nlease_renew_interval = \"1s\""),
        ),
        component_entry("controller-manager", "controller-manager", ""),
    ))?;
    eventually(
        Duration::from_secs(20),
        "default ServiceAccount and kube-root-ca.crt",
        || {
            let (sa, _) = c.get("/api/v1/namespaces/default/serviceaccounts/default")?;
            let (cm, _) = c.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")?;
            Ok(sa == 200 && cm == 200)
        },
    )?;
    c.ok(&[
        "create",
        "rolebinding",
        "sa-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ])?;
    let api_port = c.secure_port()?.to_string();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "caller"},
        "spec": {
            "nodeName": "sa-node",
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c", "image": "python",
                "command": ["python3", "-c", IN_POD],
                "env": [{"name": "API_PORT", "value": api_port}],
            }],
        },
    });
    c.ok_stdin(&["create", "-f", "-"], &pod.to_string())?;
    let spec = c.ok(&["get", "pod", "caller", "-o", "jsonpath={.spec.serviceAccountName} {.spec.volumes[0].name} {.spec.containers[0].volumeMounts[0].mountPath}"])?;
    assert!(spec.starts_with("default kube-api-access-"), "{spec}");
    assert!(
        spec.ends_with(" /var/run/secrets/kubernetes.io/serviceaccount"),
        "{spec}"
    );
    let mut logs = String::new();
    eventually(Duration::from_secs(30), "the pod's API call", || {
        logs = c.kubectl(&["logs", "caller"])?.1;
        Ok(logs.contains("status="))
    })
    .with_context(|| {
        format!(
            "pod: {}",
            c.ok(&["get", "pod", "caller", "-o", "yaml"])
                .unwrap_or_default()
        )
    })?;
    let (_, service) = c.get("/api/v1/namespaces/default/services/kubernetes")?;
    let service: serde_json::Value = serde_json::from_str(&service)?;
    let ip = service["spec"]["clusterIP"].as_str().unwrap_or_default();
    assert!(
        logs.contains(&format!("namespace=default host={ip} port=443")),
        "{logs}"
    );
    assert!(logs.contains("status=200 pods=caller"), "{logs}");
    Ok(())
}

#[test]
fn a_token_request_should_refuse_a_short_lifetime_and_a_missing_account() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok(&["create", "serviceaccount", "robot"])?;
    let (status, _, err) = c.kubectl(&["create", "token", "robot", "--duration=5m"])?;
    assert!(!status.success());
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let (status, _, err) = c.kubectl(&["create", "token", "nobody"])?;
    assert!(!status.success());
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_token_review_should_say_who_a_token_is_to_auth_delegators_only() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok(&["create", "serviceaccount", "robot"])?;
    let token = c.ok(&["create", "token", "robot", "--duration=20m"])?;
    let review = |token: &str| {
        serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        })
        .to_string()
    };
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let (code, body) = c.send("POST", path, "application/json", review(&token).as_bytes())?;
    assert_eq!(code, 201, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(answer["kind"], "TokenReview");
    assert_eq!(answer["status"]["authenticated"], true, "{answer}");
    assert_eq!(
        answer["status"]["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    let (code, body) = c.send(
        "POST",
        path,
        "application/json",
        review("garbage.token").as_bytes(),
    )?;
    assert_eq!(code, 201, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(answer["status"]["authenticated"], false, "{answer}");
    assert_eq!(answer["status"]["error"], "invalid bearer token");

    // Asking takes system:auth-delegator.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("review.json");
    std::fs::write(&file, review(&token))?;
    let file = file.display().to_string();
    let robot = c.token_kubeconfig(dir.path(), &token)?;
    let (ok, _, err) = kubectl_as(&robot, &["create", "--raw", path, "-f", &file], "")?;
    assert!(!ok && err.contains("Forbidden"), "{err}");
    c.ok(&[
        "create",
        "clusterrolebinding",
        "robot-delegator",
        "--clusterrole=system:auth-delegator",
        "--serviceaccount=default:robot",
    ])?;
    let (ok, out, err) = kubectl_as(&robot, &["create", "--raw", path, "-f", &file], "")?;
    assert!(ok, "{err}");
    assert!(out.contains("\"authenticated\":true"), "{out}");
    Ok(())
}
