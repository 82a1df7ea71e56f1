//! PodSecurity admission through kubectl: a namespace labelled
//! `pod-security.kubernetes.io/enforce=restricted` refuses a plain pod with
//! upstream's message and admits a hardened one; `warn=baseline` admits a
//! privileged pod with upstream's warning; an unlabelled namespace checks nothing.

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
