//! PodTopologySpread tests against hand-computed skews and scores.

use std::sync::Arc;

use super::*;
use crate::cache::Cache;
use crate::framework::*;
use crate::testing::{NodeBuilder, PodBuilder};

/// n1 (zone a) runs 2 `app=web` pods, n2 (zone b) 1, n3 (zone c) none, n4 has no zone.
fn cluster() -> Cache {
    let mut c = Cache::new();
    for (n, zone) in [
        ("n1", Some("a")),
        ("n2", Some("b")),
        ("n3", Some("c")),
        ("n4", None),
    ] {
        let mut b = NodeBuilder::new(n);
        if let Some(z) = zone {
            b = b.label("zone", z);
        }
        c.upsert_node(Arc::new(b.build())).expect("node");
    }
    for (p, n) in [("w1", "n1"), ("w2", "n1"), ("w3", "n2")] {
        c.add_pod(Arc::new(
            PodBuilder::new(p).label("app", "web").node(n).build(),
        ))
        .expect("pod");
    }
    c.add_pod(Arc::new(
        PodBuilder::new("db").label("app", "db").node("n3").build(),
    ))
    .expect("pod");
    c
}

fn slot(c: &Cache, name: &str) -> u32 {
    c.slot_of(name).expect("node")
}

#[test]
fn filter_should_reject_nodes_whose_domain_would_exceed_max_skew() {
    let c = cluster();
    let snap = NodeSnapshot::new(&c);
    let pod = PodBuilder::new("p")
        .label("app", "web")
        .spread(1, "zone", true, "web")
        .build();
    let mut s = CycleState::new();
    let (_, st) = PodTopologySpread.pre_filter(&mut s, &pod, &snap);
    assert!(st.is_success());
    // Counts a=2, b=1, c=0; min 0. Skew = count + 1 (self) − 0.
    let verdict = |n: &str| PodTopologySpread.filter(&s, &pod, snap.node(slot(&c, n)));
    assert_eq!(
        verdict("n1"),
        Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH)
    );
    assert_eq!(
        verdict("n2"),
        Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH)
    );
    assert!(verdict("n3").is_success());
    assert_eq!(
        verdict("n4"),
        Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH)
    );
}

#[test]
fn pre_filter_should_skip_pods_without_hard_constraints() {
    let c = cluster();
    let pod = PodBuilder::new("p").spread(1, "zone", false, "web").build();
    let (_, st) =
        PodTopologySpread.pre_filter(&mut CycleState::new(), &pod, &NodeSnapshot::new(&c));
    assert!(st.is_skip());
}

#[test]
fn score_should_prefer_emptier_domains() {
    let c = cluster();
    let snap = NodeSnapshot::new(&c);
    let pod = PodBuilder::new("p")
        .label("app", "web")
        .spread(1, "zone", false, "web")
        .build();
    let feasible: Vec<u32> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| slot(&c, n))
        .collect();
    let mut s = CycleState::new();
    assert!(PodTopologySpread
        .pre_score(&mut s, &pod, &snap, &feasible)
        .is_success());
    let mut raw: Vec<i64> = feasible
        .iter()
        .map(|&n| {
            PodTopologySpread
                .score(&s, &pod, snap.node(n))
                .expect("score")
        })
        .collect();
    // 3 domains: weight ln(5) = 1.609; n1 2·1.609 = 3.22 -> 3, n2 1.61 -> 2, n3 0; n4 ignored.
    assert_eq!(raw, vec![3, 2, 0, -1]);
    // 100·(max + min − s)/max with max 3, min 0: 0, 33, 100; ignored -> 0.
    PodTopologySpread.normalize_scores(&s, &pod, &mut raw);
    assert_eq!(raw, vec![0, 33, 100, 0]);
}
