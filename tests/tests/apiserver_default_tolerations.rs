//! New pods tolerate not-ready and unreachable nodes for a while (the DefaultTolerationSeconds admission plugin).

use anyhow::Result;
use kubernel_e2e::Cluster;
use serde_json::{json, Value};

fn tolerations(c: &Cluster, pod: &str) -> Result<Value> {
    let out = c.ok(&["get", "pod", pod, "-o", "json"])?;
    let pod: Value = serde_json::from_str(&out)?;
    Ok(pod["spec"]["tolerations"].clone())
}

fn toleration(key: &str, seconds: i64) -> Value {
    json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds})
}

#[test]
fn kubectl_created_pods_should_tolerate_not_ready_and_unreachable_nodes_for_300_seconds(
) -> Result<()> {
    let c = Cluster::start("")?;
    c.ok(&["run", "web", "--image=nginx"])?;
    assert_eq!(
        tolerations(&c, "web")?,
        json!([
            toleration("node.kubernetes.io/not-ready", 300),
            toleration("node.kubernetes.io/unreachable", 300)
        ])
    );

    // A pod that tolerates one of the taints itself keeps its own toleration.
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: patient\nspec:\n  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 3600\n  containers:\n  - name: c\n    image: busybox\n";
    c.ok_stdin(&["create", "-f", "-"], manifest)?;
    assert_eq!(
        tolerations(&c, "patient")?,
        json!([
            toleration("node.kubernetes.io/unreachable", 3600),
            toleration("node.kubernetes.io/not-ready", 300)
        ])
    );

    // Updates do not add them again: the pod keeps what it was created with.
    c.ok(&["label", "pod", "web", "tier=front"])?;
    assert_eq!(tolerations(&c, "web")?.as_array().map(Vec::len), Some(2));
    Ok(())
}

#[test]
fn toleration_seconds_should_follow_the_apiserver_config() -> Result<()> {
    let c = Cluster::start(
        "default_not_ready_toleration_seconds = 60\ndefault_unreachable_toleration_seconds = 20\n",
    )?;
    c.ok(&["run", "web", "--image=nginx"])?;
    assert_eq!(
        tolerations(&c, "web")?,
        json!([
            toleration("node.kubernetes.io/not-ready", 60),
            toleration("node.kubernetes.io/unreachable", 20)
        ])
    );
    Ok(())
}
