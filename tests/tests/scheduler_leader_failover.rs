//! Scheduler high availability: two kernels each run a scheduler with leader
//! election against one apiserver (in a third kernel, with the simulated nodes).
//! Only the Lease holder schedules; when it is killed, the other takes the Lease
//! once it expires and schedules the pods created meanwhile and after.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kubernel_e2e::{component_entry, eventually, kernel_section, signal, Cluster, Kernel};
use serde_json::Value;

/// Short Lease timings so the failover takes seconds (upstream: 15 s and 2 s).
const LEASE_SECONDS: u64 = 2;
const RETRY_MS: u64 = 200;

fn scheduler_kernel(kubeconfig: &std::path::Path) -> Result<Kernel> {
    let config = kernel_section()
        + &component_entry(
            "scheduler",
            "scheduler",
            &format!(
                "[plugin.config.client]\nkubeconfig = \"{}\"\n\
                 [plugin.config.leader_election]\nleader_elect = true\n\
                 lease_duration = \"{LEASE_SECONDS}s\"\nretry_period = \"{RETRY_MS}ms\"\n",
                kubeconfig.display()
            ),
        );
    Kernel::start(&config, &[])
}

fn holder(c: &Cluster) -> Result<String> {
    let (status, body) =
        c.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler")?;
    if status == 404 {
        return Ok(String::new());
    }
    if status != 200 {
        bail!("GET lease: {status} {body}");
    }
    let lease: Value = serde_json::from_str(&body)?;
    Ok(lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The identity names the process: `<host>_<pid>_<plugin>`.
fn held_by(identity: &str, k: &Kernel) -> bool {
    identity.contains(&format!("_{}_", k.pid()))
}

fn scheduled_attempts(k: &Kernel) -> Result<f64> {
    let metrics = k.get("/metrics")?.1;
    Ok(metrics
        .lines()
        .filter(|l| {
            l.starts_with("scheduler_schedule_attempts_total{")
                && l.contains("result=\"scheduled\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn create_pod(c: &Cluster, name: &str) -> Result<()> {
    c.ok_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n"),
    )?;
    Ok(())
}

fn wait_bound(c: &Cluster, name: &str, within: Duration) -> Result<()> {
    eventually(within, &format!("{name} bound"), || {
        Ok(!c
            .ok(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"])?
            .is_empty())
    })
}

#[test]
fn the_standby_scheduler_should_take_over_when_the_leader_is_killed() -> Result<()> {
    let c = Cluster::start(&component_entry(
        "kubelet",
        "kubelet",
        "runtime = \"sim\"\nnodes = 2\nlease_renew_interval = \"1s\"",
    ))?;
    eventually(Duration::from_secs(30), "simulated nodes", || {
        Ok(c.ok(&["get", "nodes", "-o", "name"])?.lines().count() == 2)
    })?;
    let mut a = scheduler_kernel(&c.kubeconfig)?;
    let mut b = scheduler_kernel(&c.kubeconfig)?;
    eventually(
        Duration::from_secs(20),
        "a scheduler holding the Lease",
        || {
            let h = holder(&c)?;
            Ok(held_by(&h, &a) || held_by(&h, &b))
        },
    )?;
    if !held_by(&holder(&c)?, &a) {
        std::mem::swap(&mut a, &mut b);
    }
    let (leader, standby) = (a, b);

    create_pod(&c, "before")?;
    wait_bound(&c, "before", Duration::from_secs(30))?;
    assert!(scheduled_attempts(&leader)? >= 1.0, "the leader scheduled");
    assert_eq!(scheduled_attempts(&standby)?, 0.0, "the standby did not");

    signal(leader.pid(), "KILL");
    let killed = Instant::now();
    create_pod(&c, "during")?;
    eventually(
        Duration::from_secs(20),
        "the standby holding the Lease",
        || Ok(held_by(&holder(&c)?, &standby)),
    )?;
    let took = killed.elapsed();
    // The Lease expires LEASE_SECONDS after the last renewal, then the standby's
    // next retry takes it; allow for a loaded machine on top.
    assert!(
        took < Duration::from_secs(LEASE_SECONDS + 3),
        "failover took {took:?}"
    );
    wait_bound(&c, "during", Duration::from_secs(30))?;
    create_pod(&c, "after")?;
    wait_bound(&c, "after", Duration::from_secs(30))?;
    assert!(
        scheduled_attempts(&standby)? >= 2.0,
        "the new leader scheduled both"
    );
    let metrics = standby.get("/metrics")?.1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("leader_election_master_status{")
                && l.contains("name=\"kube-scheduler\"")
                && l.ends_with(" 1")),
        "the new leader says so in leader_election_master_status"
    );
    drop(leader);
    Ok(())
}
