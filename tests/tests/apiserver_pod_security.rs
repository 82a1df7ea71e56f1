//! PodSecurity admission through kubectl: a namespace labelled
//! `pod-security.kubernetes.io/enforce=restricted` refuses a plain pod with
//! upstream's message and admits a hardened one; `warn=baseline` admits a
//! privileged pod with upstream's warning; `audit=restricted` admits a plain pod and
//! annotates its audit event; an unlabelled namespace checks nothing.

use anyhow::Result;
use kubernel_e2e::Cluster;

const PLAIN: &str = "apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
  - {name: app, image: busybox}
";

const HARDENED: &str = "apiVersion: v1
kind: Pod
metadata: {name: hardened}
spec:
  securityContext:
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: app
    image: busybox
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
";

const PRIVILEGED: &str = "apiVersion: v1
kind: Pod
metadata: {name: root}
spec:
  hostNetwork: true
  containers:
  - name: app
    image: busybox
    securityContext: {privileged: true}
";

#[test]
fn namespace_labels_should_enforce_and_warn_pod_security_levels() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok(&["create", "namespace", "locked"])?;
    c.ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    let (status, _, err) = c.kubectl_stdin(&["create", "-n", "locked", "-f", "-"], PLAIN)?;
    assert!(!status.success());
    assert!(
        err.contains("pods \"plain\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"),
        "{err}"
    );
    c.ok_stdin(&["create", "-n", "locked", "-f", "-"], HARDENED)?;

    c.ok(&["create", "namespace", "watched"])?;
    c.ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
    ])?;
    let (status, _, err) = c.kubectl_stdin(&["create", "-n", "watched", "-f", "-"], PRIVILEGED)?;
    assert!(status.success(), "{err}");
    assert!(
        err.contains("Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), privileged (container \"app\" must not set securityContext.privileged=true)"),
        "{err}"
    );

    c.ok_stdin(&["create", "-f", "-"], PRIVILEGED)?;
    Ok(())
}

#[test]
fn the_audit_level_should_admit_and_annotate_the_audit_event() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.log");
    let c = Cluster::start(&format!("audit_log_path = \"{}\"\n", log.display()))?;
    c.ok(&["create", "namespace", "audited"])?;
    c.ok(&[
        "label",
        "namespace",
        "audited",
        "pod-security.kubernetes.io/audit=restricted",
    ])?;
    let (status, _, err) = c.kubectl_stdin(&["create", "-n", "audited", "-f", "-"], PLAIN)?;
    assert!(status.success(), "admitted: {err}");
    assert!(
        !err.contains("would violate"),
        "no warning at the audit level: {err}"
    );

    let annotated = |e: &serde_json::Value| {
        e["verb"] == "create"
            && e["objectRef"]["resource"] == "pods"
            && e["objectRef"]["namespace"] == "audited"
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let event = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| annotated(e));
        match found {
            Some(e) => break e,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            None => anyhow::bail!("no audit event of the pod create in:\n{text}"),
        }
    };
    let violations = event["annotations"]["pod-security.kubernetes.io/audit-violations"]
        .as_str()
        .unwrap_or_default();
    assert!(
        violations.starts_with("would violate PodSecurity \"restricted:latest\": ")
            && violations.contains("allowPrivilegeEscalation != false"),
        "{event}"
    );
    assert_eq!(
        event["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    Ok(())
}
