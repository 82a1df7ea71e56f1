//! PriorityClasses (scheduling.k8s.io/v1): served with kubectl's columns, the system
//! classes exist from the start, user classes are checked, and a new pod takes its
//! priority from its class or the global default one (Priority admission).

use anyhow::Result;
use kubernel_e2e::Cluster;

fn pod(name: &str, extra: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra}  containers:\n  - name: c\n    image: nginx\n")
}

fn priority(c: &Cluster, name: &str) -> Result<String> {
    c.ok(&[
        "get",
        "pod",
        name,
        "-o",
        "jsonpath={.spec.priority} {.spec.priorityClassName} {.spec.preemptionPolicy}",
    ])
}

#[test]
fn pods_should_take_their_priority_from_their_class() -> Result<()> {
    let c = Cluster::start("")?;
    let table = c.ok(&["get", "priorityclasses"])?;
    assert!(table.starts_with("NAME"), "{table}");
    for column in ["VALUE", "GLOBAL-DEFAULT", "PREEMPTIONPOLICY"] {
        assert!(table.contains(column), "{table}");
    }
    assert!(table.contains("system-node-critical"), "{table}");
    assert!(table.contains("2000001000"), "{table}");
    let resources = c.ok(&["api-resources", "--api-group=scheduling.k8s.io"])?;
    assert!(
        resources.contains("priorityclasses") && resources.contains(" pc "),
        "{resources}"
    );

    c.ok(&[
        "create",
        "priorityclass",
        "high",
        "--value=1000",
        "--description=important",
    ])?;
    c.ok_stdin(
        &["create", "-f", "-"],
        &pod("urgent", "  priorityClassName: high\n"),
    )?;
    assert_eq!(priority(&c, "urgent")?, "1000 high PreemptLowerPriority");

    let (status, _, err) = c.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("lost", "  priorityClassName: nope\n"),
    )?;
    assert!(!status.success());
    assert!(
        err.contains("pods \"lost\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    let (status, _, err) = c.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("mismatch", "  priorityClassName: high\n  priority: 7\n"),
    )?;
    assert!(!status.success());
    assert!(err.contains("the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"), "{err}");

    let (status, _, err) = c.kubectl(&["create", "priorityclass", "huge", "--value=2000000000"])?;
    assert!(!status.success());
    assert!(
        err.contains(
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        ),
        "{err}"
    );
    let (status, _, err) = c.kubectl(&["create", "priorityclass", "system-mine", "--value=1"])?;
    assert!(!status.success());
    assert!(err.contains("reserved for system use only"), "{err}");
    let (status, _, err) = c.kubectl(&[
        "patch",
        "priorityclass",
        "high",
        "--type=merge",
        "-p",
        "{\"value\":5}",
    ])?;
    assert!(!status.success());
    assert!(
        err.contains("value: Forbidden: may not be changed in an update."),
        "{err}"
    );

    // Without a class: the request's own priority (no default class yet), then the default class.
    c.ok_stdin(&["create", "-f", "-"], &pod("plain", ""))?;
    assert_eq!(priority(&c, "plain")?, "0  PreemptLowerPriority");
    c.ok(&[
        "create",
        "priorityclass",
        "everyone",
        "--value=5",
        "--global-default=true",
        "--preemption-policy=Never",
    ])?;
    c.ok_stdin(&["create", "-f", "-"], &pod("defaulted", ""))?;
    assert_eq!(priority(&c, "defaulted")?, "5 everyone Never");
    Ok(())
}
