//! Node IPAM: with `allocate_node_cidrs`, the controller-manager gives every Node a
//! pod CIDR of its own from the cluster CIDR, and a deleted Node's CIDR goes to the
//! next Node that needs one.

mod controller_support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use controller_support::{cluster_with, wait_for};
use kubernel_e2e::Cluster;

fn node(c: &Cluster, name: &str) -> Result<()> {
    c.ok_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"),
    )?;
    Ok(())
}

fn pod_cidr(c: &Cluster, name: &str) -> Result<String> {
    c.ok(&["get", "node", name, "-o", "jsonpath={.spec.podCIDR}"])
}

fn wait_cidr(c: &Cluster, name: &str) -> Result<String> {
    wait_for(
        &format!("{name}'s pod CIDR"),
        Duration::from_secs(20),
        || {
            let cidr = pod_cidr(c, name)?;
            Ok(((!cidr.is_empty()).then(|| cidr.clone()), cidr))
        },
    )
}

#[test]
fn every_node_should_get_its_own_pod_cidr_and_a_deleted_one_should_be_reused() -> Result<()> {
    let c = cluster_with(
        "",
        "allocate_node_cidrs = true\ncluster_cidr = \"10.244.0.0/22\"\nnode_cidr_mask_size = 24",
    )?;
    let mut seen = BTreeSet::new();
    for i in 0..4 {
        let name = format!("n{i}");
        node(&c, &name)?;
        seen.insert(wait_cidr(&c, &name)?);
    }
    let all: BTreeSet<String> = (0..4).map(|i| format!("10.244.{i}.0/24")).collect();
    assert_eq!(seen, all, "four distinct /24s of the /22");
    let podcidrs = c.ok(&["get", "node", "n0", "-o", "jsonpath={.spec.podCIDRs[0]}"])?;
    assert_eq!(podcidrs, pod_cidr(&c, "n0")?);

    // The range is full: a fifth node waits until one goes.
    node(&c, "n4")?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pod_cidr(&c, "n4")?, "", "no CIDR left");
    let freed = pod_cidr(&c, "n2")?;
    c.ok(&["delete", "node", "n2"])?;
    assert_eq!(wait_cidr(&c, "n4")?, freed);

    let metrics = c.kernel.get("/metrics")?.1;
    let usage = metrics
        .lines()
        .find(|l| l.starts_with("node_ipam_controller_cidrset_usage_cidrs{"))
        .unwrap_or_default();
    assert!(usage.contains("clusterCIDR=\"10.244.0.0/22\""), "{usage}");
    assert!(usage.ends_with(" 4"), "{usage}");
    Ok(())
}
