//! Profile building: defaults, weights, enabling and disabling, errors.

use super::*;
use crate::plugins::in_tree_registry;

fn build(text: &str) -> Result<Profile, BuildError> {
    let config = SchedulerConfig::from_toml(text, "test.toml").expect("config");
    let metrics = Metrics::new(&prometheus::Registry::new()).expect("metrics");
    build_profile(
        &config,
        &config.profiles[0],
        &in_tree_registry(),
        &metrics,
        &crate::framework::WaitingPods::new(),
    )
}

fn scores(p: &Profile) -> Vec<(String, i64)> {
    p.framework
        .score
        .iter()
        .map(|(s, w)| (s.name().to_string(), *w))
        .collect()
}

#[test]
fn default_profile_should_have_upstream_plugins_and_weights() {
    let p = build("").expect("profile");
    let f = &p.framework;
    assert_eq!(f.queue_sort.name(), "PrioritySort");
    let filters: Vec<&str> = f.filter.iter().map(|p| p.name()).collect();
    assert_eq!(
        filters,
        vec![
            "NodeUnschedulable",
            "NodeName",
            "TaintToleration",
            "NodeAffinity",
            "NodePorts",
            "NodeResourcesFit",
            "PodTopologySpread",
            "InterPodAffinity"
        ]
    );
    let want: Vec<(String, i64)> = [
        ("TaintToleration", 3),
        ("NodeAffinity", 2),
        ("NodeResourcesFit", 1),
        ("PodTopologySpread", 2),
        ("InterPodAffinity", 2),
        ("NodeResourcesBalancedAllocation", 1),
    ]
    .iter()
    .map(|(n, w)| (n.to_string(), *w))
    .collect();
    assert_eq!(scores(&p), want);
    assert_eq!(f.post_filter.len(), 1);
    assert_eq!(f.bind.len(), 1);
}

#[test]
fn profile_should_apply_disabled_and_enabled_score_plugins() {
    let p = build(
        r#"
        [[profiles]]
        plugins.score.disabled = [{ name = "*" }]
        plugins.score.enabled = [{ name = "LeastRequestedPriority", weight = 1 }, { name = "NodeResourcesFit", weight = 4 }]
        "#,
    )
    .expect("profile");
    assert_eq!(
        scores(&p),
        vec![
            ("LeastRequestedPriority".into(), 1),
            ("NodeResourcesFit".into(), 4)
        ]
    );
    // Filters are untouched.
    assert_eq!(p.framework.filter.len(), 8);
}

#[test]
fn profile_should_override_a_default_weight_in_place() {
    let p = build(
        "[[profiles]]\nplugins.score.enabled = [{ name = \"NodeResourcesFit\", weight = 7 }]",
    )
    .expect("profile");
    assert!(scores(&p).contains(&("NodeResourcesFit".into(), 7)));
    assert_eq!(scores(&p).len(), 6);
}

#[test]
fn profile_should_name_an_unknown_plugin() {
    let err = build("[[profiles]]\nplugins.score.enabled = [{ name = \"Schedular\" }]")
        .err()
        .expect("refused");
    assert!(
        err.to_string().starts_with(
            "profile \"default-scheduler\": plugin \"Schedular\": no such plugin; known: "
        ),
        "{err}"
    );
    assert_eq!(err.plugin.as_deref(), Some("Schedular"));
}

#[test]
fn profile_should_refuse_a_plugin_at_a_point_it_does_not_implement() {
    let err =
        build("[[profiles]]\nplugins.filter.enabled = [{ name = \"LeastRequestedPriority\" }]")
            .err()
            .expect("refused");
    assert!(
        err.to_string().contains("does not implement filter"),
        "{err}"
    );
}

#[test]
fn profile_should_require_one_queue_sort_and_a_binder() {
    let err = build("[[profiles]]\nplugins.multi_point.disabled = [{ name = \"*\" }]")
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("exactly one queue sort plugin is required, found 0"),
        "{err}"
    );
    let err = build("[[profiles]]\nplugins.bind.disabled = [{ name = \"DefaultBinder\" }]")
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("at least one bind plugin"),
        "{err}"
    );
}

#[test]
fn profile_should_pass_plugin_args_and_report_bad_ones() {
    let err = build(
        "[[profiles]]\n[[profiles.plugin_config]]\nname = \"NodeResourcesFit\"\nargs = { scoring_strategy = { type = \"Sideways\" } }",
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("plugin NodeResourcesFit: invalid args: unknown variant `Sideways`"),
        "{err}"
    );
}
