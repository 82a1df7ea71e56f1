//! Cache tests: assume, confirm, forget, ghosts and the columnar view.

use std::sync::Arc;

use super::*;
use crate::testing::{NodeBuilder, PodBuilder};

fn cache_with(nodes: &[&str]) -> Cache {
    let mut c = Cache::new();
    for n in nodes {
        c.upsert_node(Arc::new(NodeBuilder::new(n).build()))
            .expect("node");
    }
    c
}

fn pod(name: &str) -> Arc<PodInfo> {
    Arc::new(PodBuilder::new(name).cpu("1").memory("1Gi").build())
}

#[test]
fn assume_should_count_the_pod_before_the_api_confirms_it() {
    let mut c = cache_with(&["n1", "n2"]);
    c.assume_pod(pod("p"), "n1").expect("assume");
    let n1 = c.node(c.slot_of("n1").expect("n1"));
    assert_eq!(n1.requested.milli_cpu, 1000);
    assert!(c.is_assumed("p"));
    assert!(matches!(
        c.assume_pod(pod("p"), "n2"),
        Err(CacheError::PodExists(_))
    ));
}

#[test]
fn add_pod_should_confirm_an_assumed_pod_on_the_node_the_api_reports() {
    let mut c = cache_with(&["n1", "n2"]);
    c.assume_pod(pod("p"), "n1").expect("assume");
    let bound = Arc::new(
        PodBuilder::new("p")
            .cpu("1")
            .memory("1Gi")
            .node("n2")
            .build(),
    );
    c.add_pod(bound).expect("confirm");
    assert!(!c.is_assumed("p"));
    assert_eq!(c.pod_node("p"), Some("n2"));
    assert_eq!(c.node(c.slot_of("n1").expect("n1")).requested.milli_cpu, 0);
    assert_eq!(
        c.node(c.slot_of("n2").expect("n2")).requested.milli_cpu,
        1000
    );
    assert!(matches!(
        c.forget_pod("p"),
        Err(CacheError::PodNotAssumed(_))
    ));
}

#[test]
fn forget_should_release_the_resources_of_an_assumed_pod() {
    let mut c = cache_with(&["n1"]);
    c.assume_pod(pod("p"), "n1").expect("assume");
    c.forget_pod("p").expect("forget");
    let n1 = c.node(c.slot_of("n1").expect("n1"));
    assert_eq!((n1.requested.milli_cpu, n1.pods.len()), (0, 0));
    assert!(!c.contains_pod("p"));
}

#[test]
fn assume_should_refuse_an_unknown_node() {
    let mut c = cache_with(&["n1"]);
    assert!(matches!(
        c.assume_pod(pod("p"), "nope"),
        Err(CacheError::NodeNotFound(_))
    ));
}

#[test]
fn remove_node_should_keep_a_ghost_until_its_pods_are_gone() {
    let mut c = cache_with(&["n1", "n2"]);
    let bound = Arc::new(PodBuilder::new("p").node("n1").build());
    c.add_pod(bound).expect("add");
    c.remove_node("n1").expect("remove");
    assert_eq!(c.num_nodes(), 1);
    assert_eq!(c.slot_of("n1"), None);
    assert_eq!(c.pod_node("p"), Some("n1"));
    c.remove_pod("p").expect("pod removed");
    assert_eq!(c.pod_node("p"), None);
    // The slot is reused by the next node.
    c.upsert_node(Arc::new(NodeBuilder::new("n3").build()))
        .expect("node");
    assert_eq!(c.slot_of("n3"), Some(0));
}

#[test]
fn pods_should_arrive_before_their_node() {
    let mut c = Cache::new();
    c.add_pod(Arc::new(PodBuilder::new("p").cpu("1").node("late").build()))
        .expect("add");
    assert_eq!(c.num_nodes(), 0);
    c.upsert_node(Arc::new(NodeBuilder::new("late").build()))
        .expect("node");
    assert_eq!(c.nodes().next().map(|n| n.requested.milli_cpu), Some(1000));
}

#[test]
fn columns_should_mirror_nodes_and_group_counts() {
    let mut c = cache_with(&["n1", "n2"]);
    c.upsert_node(Arc::new(
        NodeBuilder::new("n2")
            .label("zone", "b")
            .taint("k", "v", "NoSchedule")
            .build(),
    ))
    .expect("update");
    let p = Arc::new(PodBuilder::new("p").label("app", "web").cpu("1").build());
    let group = p.group;
    c.assume_pod(p, "n2").expect("assume");
    c.refresh_columns();
    let cols = c.columns().node_columns();
    assert_eq!(cols.requested_milli_cpu, &[0, 1000]);
    assert_eq!(cols.allocatable_milli_cpu, &[4000, 4000]);
    assert_eq!(cols.label_offsets, &[0, 1, 3]);
    assert_eq!(cols.taints.len(), 1);
    assert_eq!(c.group_counts(group), &[GroupCount { node: 1, count: 1 }]);
    use kubernel_scheduler_sdk::abi::StringTable;
    let zone = c.columns().interner.lookup("zone").expect("interned");
    assert!(cols.labels[1..3].iter().any(|l| l.key == zone));
}

#[test]
fn upsert_node_should_refuse_a_bad_quantity_and_name_the_node() {
    let mut c = Cache::new();
    let err = c
        .upsert_node(Arc::new(NodeBuilder::new("n1").cpu("lots").build()))
        .expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("node \"n1\": cpu: invalid quantity \"lots\""),
        "{err}"
    );
    assert_eq!(c.num_nodes(), 0);
}
