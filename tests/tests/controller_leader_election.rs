//! Two controller-managers in two processes share one apiserver: one leads through the
//! `kube-system/kube-controller-manager` Lease and reconciles, the other waits; when the
//! leader dies the other takes the Lease and carries on, without duplicating work.

mod controller_support;

use std::time::Duration;

use anyhow::Result;
use controller_support::{live_pods, wait_for};
use kubernel_e2e::{component_entry, kernel_section, signal, Cluster, Kernel};

/// A kernel running only a controller-manager pointed at `api`, with short Lease timings.
fn controller_manager(api: &str) -> Result<Kernel> {
    let config = format!(
        "{}{}",
        kernel_section(),
        component_entry(
            "controller-manager",
            "controller-manager",
            &format!(
                "[plugin.config.client]\nserver = \"{api}\"\n\
                 [plugin.config.leader_election]\nlease_duration = \"2s\"\nretry_period = \"200ms\"\n"
            ),
        )
    );
    Kernel::start(&config, &[])
}

/// `leader_election_master_status{name="kube-controller-manager"}` of a kernel (0 if absent).
fn leading(k: &Kernel) -> f64 {
    let Ok((_, body)) = k.get("/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with("leader_election_master_status{"))
        .filter(|l| l.contains("name=\"kube-controller-manager\""))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn holder(c: &Cluster) -> Result<String> {
    c.ok(&[
        "get",
        "lease",
        "kube-controller-manager",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

#[test]
fn a_standby_controller_manager_should_take_over_when_the_leader_dies() -> Result<()> {
    let c = Cluster::start("")?;
    let first = controller_manager(&c.api)?;
    wait_for("the first to lead", Duration::from_secs(20), || {
        let v = leading(&first);
        Ok(((v == 1.0).then_some(()), format!("status {v}")))
    })?;
    let second = controller_manager(&c.api)?;
    wait_for(
        "the second to be a candidate",
        Duration::from_secs(20),
        || {
            let (_, body) = second.get("/metrics")?;
            let seen = body.contains("leader_election_master_status{");
            Ok((seen.then_some(()), String::new()))
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(leading(&second), 0.0, "only one leader at a time");
    let first_id = holder(&c)?;
    assert!(
        first_id.contains(&format!("_{}_", first.pid())),
        "lease held by {first_id}, first kernel pid {}",
        first.pid()
    );

    c.ok(&[
        "create",
        "deployment",
        "one",
        "--image=nginx",
        "--replicas=2",
    ])?;
    wait_for("2 pods of one", Duration::from_secs(30), || {
        let pods = live_pods(&c, "app=one")?;
        Ok(((pods.len() == 2).then_some(()), format!("{pods:?}")))
    })?;

    signal(first.pid(), "KILL");
    wait_for("the second to lead", Duration::from_secs(20), || {
        let v = leading(&second);
        Ok(((v == 1.0).then_some(()), format!("status {v}")))
    })?;
    let second_id = holder(&c)?;
    assert!(
        second_id.contains(&format!("_{}_", second.pid())),
        "lease held by {second_id}, second kernel pid {}",
        second.pid()
    );

    c.ok(&[
        "create",
        "deployment",
        "two",
        "--image=nginx",
        "--replicas=3",
    ])?;
    wait_for("3 pods of two", Duration::from_secs(30), || {
        let pods = live_pods(&c, "app=two")?;
        Ok(((pods.len() == 3).then_some(()), format!("{pods:?}")))
    })?;
    // The new leader adopted the first Deployment's state instead of redoing it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(live_pods(&c, "app=one")?.len(), 2);
    let replicasets = c.ok(&["get", "replicasets", "-l", "app=one", "-o", "name"])?;
    assert_eq!(replicasets.lines().count(), 1, "{replicasets}");
    Ok(())
}
