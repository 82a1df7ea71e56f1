//! A user limits a namespace with ResourceQuotas: the controller-manager keeps
//! `status.used` true, and the apiserver refuses the create that would go over `hard`
//! with 403 Forbidden and kube-apiserver's message — also under concurrent creates.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster, wait_for, wait_jsonpath};
use kubernel_e2e::Cluster;

fn used(c: &Cluster, ns: &str, quota: &str, resource: &str, want: &str) -> Result<()> {
    wait_jsonpath(
        c,
        &["resourcequota", quota, "-n", ns],
        &format!("{{.status.used.{}}}", resource.replace('.', "\\.")),
        want,
    )
}

#[test]
fn quota_should_track_usage_and_reject_the_pod_over_the_limit() -> Result<()> {
    let c = cluster()?;
    c.ok(&["create", "namespace", "team"])?;
    c.ok(&[
        "create",
        "quota",
        "q",
        "--hard=pods=2,services=1,count/deployments.apps=1,count/jobs.batch=3",
        "-n",
        "team",
    ])?;
    used(&c, "team", "q", "pods", "0")?;
    wait_jsonpath(
        &c,
        &["resourcequota", "q", "-n", "team"],
        "{.status.hard.pods}",
        "2",
    )?;

    c.ok(&["run", "p1", "--image=nginx", "-n", "team"])?;
    c.ok(&["run", "p2", "--image=nginx", "-n", "team"])?;
    let (status, _, err) = c.kubectl(&["run", "p3", "--image=nginx", "-n", "team"])?;
    assert!(!status.success());
    assert!(
        err.contains("Error from server (Forbidden): pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    used(&c, "team", "q", "pods", "2")?;

    // Deleting a pod gives its share back; the next create fits again.
    c.ok(&[
        "delete",
        "pod",
        "p1",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ])?;
    used(&c, "team", "q", "pods", "1")?;
    c.ok(&["run", "p3", "--image=nginx", "-n", "team"])?;
    used(&c, "team", "q", "pods", "2")?;

    // Other counts: services, and count/<resource>.<group> (jobs are counted by listing).
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "a",
        "--tcp=80:80",
        "-n",
        "team",
    ])?;
    let (status, _, err) = c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "b",
        "--tcp=80:80",
        "-n",
        "team",
    ])?;
    assert!(!status.success());
    assert!(
        err.contains(
            "exceeded quota: q, requested: services=1, used: services=1, limited: services=1"
        ),
        "{err}"
    );
    c.ok(&["create", "job", "j", "--image=busybox", "-n", "team"])?;
    used(&c, "team", "q", "count/jobs.batch", "1")?;

    // A Deployment over the pod quota: the ReplicaSet reports the refusal and stops at 2 pods.
    c.ok(&[
        "delete",
        "pod",
        "--all",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ])?;
    used(&c, "team", "q", "pods", "0")?;
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
        "-n",
        "team",
    ])?;
    used(&c, "team", "q", "count/deployments.apps", "1")?;
    wait_for(
        "a FailedCreate event naming the quota",
        Duration::from_secs(30),
        || {
            let out = c.ok(&[
                "get",
                "events",
                "-n",
                "team",
                "--field-selector=reason=FailedCreate",
                "-o",
                "jsonpath={.items[*].message}",
            ])?;
            Ok((out.contains("exceeded quota: q").then_some(()), out))
        },
    )?;
    used(&c, "team", "q", "pods", "2")?;
    let pods = c.ok(&["get", "pods", "-n", "team", "-o", "name"])?;
    assert_eq!(pods.lines().count(), 2, "{pods}");

    let described = c.ok(&["describe", "quota", "q", "-n", "team"])?;
    assert!(described.contains("pods"), "{described}");
    Ok(())
}

#[test]
fn compute_quota_should_require_requests_and_sum_them() -> Result<()> {
    let c = cluster()?;
    c.ok(&["create", "namespace", "compute"])?;
    c.ok(&[
        "create",
        "quota",
        "cpu",
        "--hard=requests.cpu=1,requests.memory=1Gi",
        "-n",
        "compute",
    ])?;
    used(&c, "compute", "cpu", "requests.cpu", "0")?;

    let (status, _, err) = c.kubectl(&["run", "bare", "--image=nginx", "-n", "compute"])?;
    assert!(!status.success());
    assert!(
        err.contains("pods \"bare\" is forbidden: failed quota: cpu: must specify requests.cpu for: bare; requests.memory for: bare"),
        "{err}"
    );

    let pod = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},
            "spec":{{"containers":[{{"name":"c","image":"nginx",
            "resources":{{"requests":{{"cpu":"600m","memory":"256Mi"}}}}}}]}}}}"#
        )
    };
    c.ok_stdin(&["create", "-n", "compute", "-f", "-"], &pod("first"))?;
    used(&c, "compute", "cpu", "requests.cpu", "600m")?;
    used(&c, "compute", "cpu", "requests.memory", "256Mi")?;
    let (status, _, err) =
        c.kubectl_stdin(&["create", "-n", "compute", "-f", "-"], &pod("second"))?;
    assert!(!status.success());
    assert!(
        err.contains("exceeded quota: cpu, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"),
        "{err}"
    );
    Ok(())
}

#[test]
fn concurrent_creates_should_never_exceed_the_quota() -> Result<()> {
    let c = cluster()?;
    c.ok(&["create", "namespace", "race"])?;
    c.ok(&["create", "quota", "cm", "--hard=configmaps=5", "-n", "race"])?;
    wait_for("quota synced", Duration::from_secs(30), || {
        let out = c.ok(&[
            "get",
            "resourcequota",
            "cm",
            "-n",
            "race",
            "-o",
            "jsonpath={.status.used.configmaps}",
        ])?;
        Ok(((!out.is_empty()).then_some(()), out))
    })?;
    let already: usize = c
        .ok(&["get", "configmaps", "-n", "race", "-o", "name"])?
        .lines()
        .count();

    let results: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let body = format!(
                        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}"}}}}"#
                    );
                    c.send(
                        "POST",
                        "/api/v1/namespaces/race/configmaps",
                        "application/json",
                        body.as_bytes(),
                    )
                    .map(|(code, _)| code)
                    .unwrap_or(0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let created = results.iter().filter(|&&code| code == 201).count();
    let refused = results.iter().filter(|&&code| code == 403).count();
    assert_eq!(created, 5 - already, "codes: {results:?}");
    assert_eq!(created + refused, 16, "codes: {results:?}");
    let stored = c
        .ok(&["get", "configmaps", "-n", "race", "-o", "name"])?
        .lines()
        .count();
    assert_eq!(stored, 5, "configmaps stored");
    used(&c, "race", "cm", "configmaps", "5")?;
    Ok(())
}
