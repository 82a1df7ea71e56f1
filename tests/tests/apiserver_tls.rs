//! The apiserver over HTTPS: the generated PKI and admin.kubeconfig with the real
//! kubectl, plain HTTP and foreign CAs refused, static tokens, anonymous requests
//! limited to health and version, garbage credentials answered with 401.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kubernel_e2e::{kubectl_as, run_refused, tls_get, Cluster, Kernel};

/// `https://127.0.0.1:<port>` from a kubeconfig.
fn server_of(kubeconfig: &Path) -> Result<String> {
    let text = std::fs::read_to_string(kubeconfig)?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .context("kubeconfig without a server")
}

fn pki(c: &Cluster) -> PathBuf {
    c.kernel.data_dir().join("pki")
}

/// Sum of every sample of metric `name` whose labels contain `labels`.
fn metric_sum(k: &Kernel, name: &str, labels: &str) -> Result<f64> {
    let (_, body) = k.get("/metrics")?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn secure_port(c: &Cluster) -> Result<u16> {
    let server = server_of(&c.kubeconfig)?;
    server
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {server}"))
}

#[test]
fn admin_kubeconfig_should_reach_the_cluster_over_https_and_the_pki_should_be_kept() -> Result<()> {
    let c = Cluster::start("")?;
    let server = server_of(&c.kubeconfig)?;
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    let text = std::fs::read_to_string(&c.kubeconfig)?;
    for field in [
        "certificate-authority-data",
        "client-certificate-data",
        "client-key-data",
    ] {
        assert!(text.contains(field), "{text}");
    }
    let (ok, out, err) = kubectl_as(&c.kubeconfig, &["get", "namespaces"], "")?;
    assert!(ok, "{err}");
    assert!(out.contains("kube-system"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "ca.crt",
        "ca.key",
        "apiserver.crt",
        "apiserver.key",
        "sa.key",
        "sa.pub",
    ] {
        let mode = std::fs::metadata(pki(&c).join(f))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "pki/{f}");
    }
    let mode = std::fs::metadata(&c.kubeconfig)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "admin.kubeconfig");
    let ca = std::fs::read_to_string(pki(&c).join("ca.crt"))?;
    // The serving certificate names the kubernetes Service and its ClusterIP.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(pki(&c).join("apiserver.crt"))
        .output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        for san in [
            "DNS:kubernetes.default.svc.cluster.local",
            "DNS:kubernetes",
            "IP Address:127.0.0.1",
            "IP Address:10.96.0.1",
        ] {
            assert!(text.contains(san), "{san} missing:\n{text}");
        }
    }
    let c = c.kill_and_restart()?;
    assert_eq!(
        std::fs::read_to_string(pki(&c).join("ca.crt"))?,
        ca,
        "CA reused"
    );
    let (ok, _, err) = kubectl_as(&c.kubeconfig, &["get", "nodes"], "")?;
    assert!(ok, "after restart: {err}");
    Ok(())
}

#[test]
fn plain_http_and_foreign_certificates_should_be_refused() -> Result<()> {
    let c = Cluster::start("")?;
    let port = secure_port(&c)?;
    let before = metric_sum(&c.kernel, "apiserver_tls_handshake_errors_total", "")?;
    // Plain HTTP to the TLS port: no HTTP answer.
    let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.write_all(b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1 200"),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&out)
    );
    // A client certificate from another CA.
    let dir = tempfile::tempdir()?;
    let other = kubernel_pki::ensure(&dir.path().join("pki"), &Default::default())
        .map_err(anyhow::Error::msg)?;
    let ca = std::fs::read_to_string(pki(&c).join("ca.crt"))?;
    let refused = tls_get(
        port,
        &ca,
        Some((&other.admin.cert_pem, &other.admin.key_pem)),
        "/api/v1/namespaces",
        b"",
    );
    assert!(
        refused.is_err(),
        "foreign client certificate accepted: {refused:?}"
    );
    // kubectl trusting another CA refuses the server.
    let foreign = dir.path().join("foreign.kubeconfig");
    std::fs::write(
        &foreign,
        kubernel_pki::kubeconfig(
            &server_of(&c.kubeconfig)?,
            &other.ca.cert_pem,
            "kubernetes-admin",
            &other.admin,
        ),
    )?;
    let (ok, _, err) = kubectl_as(&foreign, &["get", "namespaces"], "")?;
    assert!(!ok);
    assert!(
        err.contains("certificate signed by unknown authority"),
        "{err}"
    );
    let after = metric_sum(&c.kernel, "apiserver_tls_handshake_errors_total", "")?;
    assert!(
        after >= before + 2.0,
        "handshake errors {before} -> {after}"
    );
    Ok(())
}

#[test]
fn static_tokens_should_authenticate_and_garbage_should_get_401() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "# token,user,uid,groups\nroot-token,tok-admin,1,\"system:masters,ops\"\nplain-token,tok-user,2\n",
    )?;
    let c = Cluster::start(&format!("token_auth_file = {:?}\n", tokens.display()))?;
    let port = secure_port(&c)?;
    let ca = std::fs::read_to_string(pki(&c).join("ca.crt"))?;
    let with_token = |token: &str| -> Result<PathBuf> {
        let path = dir.path().join(format!("{}.kubeconfig", token.len()));
        let b64 = std::fs::read_to_string(&c.kubeconfig)?
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("certificate-authority-data: ")
                    .map(str::to_string)
            })
            .context("CA data")?;
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {}\n    certificate-authority-data: {b64}\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: t\ncurrent-context: k\nusers:\n- name: t\n  user:\n    token: {token}\n",
                server_of(&c.kubeconfig)?
            ),
        )?;
        Ok(path)
    };
    let (ok, out, err) = kubectl_as(&with_token("root-token")?, &["get", "namespaces"], "")?;
    assert!(ok, "{err}");
    assert!(out.contains("default"), "{out}");
    let (ok, _, err) = kubectl_as(
        &with_token("wrong-token-value")?,
        &["get", "namespaces"],
        "",
    )?;
    assert!(!ok);
    assert!(err.contains("You must be logged in to the server"), "{err}");
    // A valid token without a role is authenticated, then forbidden.
    let (ok, _, err) = kubectl_as(&with_token("plain-token")?, &["get", "pods"], "")?;
    assert!(!ok);
    assert!(
        err.contains("pods is forbidden: User \"tok-user\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    // Garbage credentials: 401 with a Status, no reason, and the server keeps serving.
    let garbage: Vec<Vec<u8>> = vec![
        b"Authorization: Bearer nope\r\n".to_vec(),
        b"Authorization: Basic YWRtaW46YWRtaW4=\r\n".to_vec(),
        b"Authorization: Bearer\r\n".to_vec(),
        b"Authorization: \xff\xfe\x00garbage\r\n".to_vec(),
        format!("Authorization: Bearer {}\r\n", "x".repeat(6000)).into_bytes(),
        b"Authorization: Bearer root-token\r\nAuthorization: Bearer root-token\r\n".to_vec(),
    ];
    for header in &garbage {
        match tls_get(port, &ca, None, "/api/v1/namespaces", header) {
            Ok((code, body)) => {
                assert!(
                    code == 401 || code == 400,
                    "{:?}: {code} {body}",
                    String::from_utf8_lossy(header)
                );
                if code == 401 {
                    let status: serde_json::Value = serde_json::from_str(&body)?;
                    assert_eq!(status["kind"], "Status");
                    assert_eq!(status["reason"], "Unauthorized");
                    assert_eq!(status["message"], "Unauthorized");
                }
            }
            // hyper refuses some malformed header bytes by closing the connection.
            Err(e) => eprintln!(
                "{:?}: connection refused the request: {e}",
                String::from_utf8_lossy(header)
            ),
        }
    }
    let (code, _) = tls_get(port, &ca, None, "/healthz", b"")?;
    assert_eq!(code, 200, "still serving");
    let failures = metric_sum(
        &c.kernel,
        "apiserver_authentication_attempts",
        "result=\"failure\"",
    )?;
    assert!(failures >= 4.0, "failures counted: {failures}");
    // Successful requests count by compressed user name (system:anonymous: `other`).
    let users = metric_sum(
        &c.kernel,
        "authenticated_user_requests",
        "username=\"other\"",
    )?;
    assert!(users >= 1.0, "authenticated requests counted: {users}");
    Ok(())
}

#[test]
fn anonymous_requests_should_reach_only_health_and_version() -> Result<()> {
    let c = Cluster::start("")?;
    let port = secure_port(&c)?;
    let ca = std::fs::read_to_string(pki(&c).join("ca.crt"))?;
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, body) = tls_get(port, &ca, None, path, b"")?;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body) = tls_get(port, &ca, None, "/api", b"")?;
    assert_eq!(code, 403, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        status["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/api\""
    );
    let (code, body) = tls_get(port, &ca, None, "/api/v1/namespaces/default/pods", b"")?;
    assert_eq!(code, 403, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"]["kind"], "pods");
    let denied = metric_sum(
        &c.kernel,
        "apiserver_authorization_decisions_total",
        "decision=\"denied\"",
    )?;
    assert!(denied >= 2.0, "denials counted: {denied}");
    Ok(())
}

#[test]
fn an_insecure_port_off_loopback_should_be_refused() -> Result<()> {
    let config = format!(
        "{}\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nbind_address = \"127.0.0.1\"\nsecure_port = {}\ninsecure_port = {}\ninsecure_bind_address = \"0.0.0.0\"\n",
        kubernel_e2e::kernel_section(),
        kubernel_e2e::apiserver_lib().display(),
        kubernel_e2e::free_port()?,
        kubernel_e2e::free_port()?
    );
    let (code, err) = run_refused(&config, &[])?;
    assert_ne!(code, Some(0));
    if !err.contains("insecure_bind_address: 0.0.0.0 is not a loopback address") {
        bail!("unclear refusal: {err}");
    }
    Ok(())
}
