//! LimitRanger admission through kubectl: a namespace's LimitRange fills in the
//! requests and limits pods leave out (and says so in an annotation), and a pod
//! outside its min, max or ratio is forbidden with upstream's message.

use anyhow::Result;
use kubernel_e2e::Cluster;

const LIMITS: &str = "apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 100m}
    max: {cpu: '1'}
    min: {cpu: 50m}
    maxLimitRequestRatio: {cpu: '10'}
";

fn pod(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: c
    image: busybox
    resources: {resources}
"
    )
}

#[test]
fn a_limit_range_should_default_and_bound_container_resources() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok_stdin(&["create", "-f", "-"], LIMITS)?;
    c.ok_stdin(&["create", "-f", "-"], &pod("defaulted", "{}"))?;
    let got = c.ok(&[
        "get",
        "pod",
        "defaulted",
        "-o",
        "jsonpath={.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.requests.memory} {.spec.containers[0].resources.limits.memory}",
    ])?;
    assert_eq!(got, "100m 500m 128Mi 128Mi");
    let note = c.ok(&[
        "get",
        "pod",
        "defaulted",
        "-o",
        "jsonpath={.metadata.annotations.kubernetes\\.io/limit-ranger}",
    ])?;
    assert_eq!(
        note,
        "LimitRanger plugin set: cpu request, memory request, cpu limit, memory limit for container c"
    );
    for (name, resources, message) in [
        ("greedy", "{limits: {cpu: '2'}}", "pods \"greedy\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"),
        ("tiny", "{requests: {cpu: 10m}}", "pods \"tiny\" is forbidden: minimum cpu usage per Container is 50m, but request is 10m"),
        ("skewed", "{requests: {cpu: 50m}, limits: {cpu: '1'}}", "pods \"skewed\" is forbidden: cpu max limit to request ratio per Container is 10, but provided ratio is 20.000000"),
    ] {
        let (status, _, err) = c.kubectl_stdin(&["create", "-f", "-"], &pod(name, resources))?;
        assert!(!status.success(), "{name} admitted");
        assert!(err.contains(message), "{err}");
    }
    // Another namespace has no LimitRange: nothing is set.
    c.ok(&["create", "namespace", "free"])?;
    c.ok_stdin(&["create", "-n", "free", "-f", "-"], &pod("plain", "{}"))?;
    let got = c.ok(&[
        "get",
        "pod",
        "-n",
        "free",
        "plain",
        "-o",
        "jsonpath={.spec.containers[0].resources}",
    ])?;
    assert_eq!(got, "{}");
    Ok(())
}
