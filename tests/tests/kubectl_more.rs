//! More kubectl paths: strict field validation, describe, explain, server-side apply, API metrics.

use anyhow::Result;
use kubernel_e2e::Cluster;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n";

#[test]
fn kubectl_create_should_refuse_unknown_fields() -> Result<()> {
    let c = Cluster::start("")?;
    let bogus = POD.replace("    image: nginx\n", "    image: nginx\n    bogus: 1\n");
    let (status, _, err) = c.kubectl_stdin(&["create", "-f", "-"], &bogus)?;
    assert!(!status.success());
    assert!(err.contains("Error from server (BadRequest)"), "{err}");
    assert!(
        err.contains("strict decoding error: unknown field \"spec.containers[0].bogus\""),
        "{err}"
    );
    let out = c.ok_stdin(&["create", "--validate=false", "-f", "-"], &bogus)?;
    assert_eq!(
        out.trim(),
        "pod/web created",
        "fieldValidation=Ignore drops the field"
    );
    let yaml = c.ok(&["get", "pod", "web", "-o", "yaml"])?;
    assert!(!yaml.contains("bogus"), "{yaml}");
    Ok(())
}

#[test]
fn kubectl_describe_explain_and_server_side_apply_should_work() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok_stdin(&["create", "-f", "-"], POD)?;
    let out = c.ok(&["describe", "pod", "web"])?;
    for line in [
        "Name:             web",
        "Namespace:        default",
        "Service Account:  default",
        "Status:           Pending",
        "Image:        nginx",
        "QoS Class:        BestEffort",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    let out = c.ok(&["explain", "pods"])?;
    assert!(
        out.contains("KIND:       Pod") && out.contains("VERSION:    v1"),
        "{out}"
    );

    let out = c.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &POD.replace("web\nspec", "ssa\nspec"),
    )?;
    assert_eq!(out.trim(), "pod/ssa serverside-applied");
    let managers = c.ok(&[
        "get",
        "pod",
        "ssa",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ])?;
    assert_eq!(managers, "kubectl");
    let out = c.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &POD.replace("web\nspec", "ssa\nspec")
            .replace("image: nginx", "image: nginx:2"),
    )?;
    assert_eq!(out.trim(), "pod/ssa serverside-applied");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "ssa",
            "-o",
            "jsonpath={.spec.containers[0].image}"
        ])?,
        "nginx:2"
    );
    Ok(())
}

#[test]
fn api_requests_should_be_counted_in_the_kernel_metrics() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok(&["get", "pods"])?;
    let (_, body) = c.kernel.get("/metrics")?;
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"pods\"")
                && l.contains("verb=\"LIST\"")
        })
        .unwrap_or("");
    assert!(
        line.contains("code=\"200\"") && line.contains("plugin=\"apiserver\""),
        "{body}"
    );
    for family in [
        "apiserver_request_duration_seconds",
        "apiserver_storage_objects",
        "apiserver_current_inflight_requests",
        "etcd_request_duration_seconds",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} missing in:\n{}",
            body.lines()
                .filter(|l| l.contains("etcd") || l.contains("apiserver_request_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        body.contains("apiserver_storage_objects{resource=\"namespaces\",plugin=\"apiserver\"} 4"),
        "{body}"
    );
    Ok(())
}

#[test]
fn jobs_should_get_a_generated_selector() -> Result<()> {
    let c = Cluster::start("")?;
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: pi\n        image: perl\n";
    assert_eq!(
        c.ok_stdin(&["create", "-f", "-"], job)?.trim(),
        "job.batch/pi created"
    );
    let uid = c.ok(&["get", "job", "pi", "-o", "jsonpath={.metadata.uid}"])?;
    let selector = c.ok(&["get", "job", "pi", "-o", "jsonpath={.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid} {.spec.template.metadata.labels.job-name}"])?;
    assert_eq!(selector, format!("{uid} pi"));
    let out = c.ok(&["get", "jobs"])?;
    assert!(out.starts_with("NAME") && out.contains("pi"), "{out}");
    Ok(())
}

#[test]
fn binding_should_assign_the_node_as_kube_apiserver_does() -> Result<()> {
    let c = Cluster::start("")?;
    c.ok_stdin(&["create", "-f", "-"], POD)?;
    // As the scheduler leaves an unschedulable pod.
    c.ok(&[
        "patch", "pod", "web", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/1 nodes are available","lastTransitionTime":"2020-01-01T00:00:00Z"}]}}"#,
    ])?;
    let bind = |pod: &str, body: &str| {
        c.kubectl_stdin(
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{pod}/binding"),
                "-f",
                "-",
            ],
            body,
        )
    };
    let binding = |node: &str, uid: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "web", "uid": uid, "annotations": {"lab/placed-by": "test"}},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
        .to_string()
    };
    let (status, _, err) = bind("web", &binding("n1", "not-its-uid"))?;
    assert!(
        !status.success() && err.contains("Precondition failed: UID in precondition: not-its-uid"),
        "{err}"
    );

    let (status, _, err) = bind("web", &binding("n1", ""))?;
    assert!(status.success(), "{err}");
    let pod: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "pod", "web", "-o", "json"])?)?;
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(pod["metadata"]["annotations"]["lab/placed-by"], "test");
    let conditions = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    assert_eq!(conditions[0]["status"], "True");
    assert_eq!(
        conditions[0].get("reason"),
        None,
        "the Unschedulable reason goes"
    );
    assert_ne!(conditions[0]["lastTransitionTime"], "2020-01-01T00:00:00Z");

    let (status, _, err) = bind("web", &binding("n2", ""))?;
    assert!(
        !status.success()
            && err.contains(r#"Operation cannot be fulfilled on pods/binding "web": pod web is already assigned to node "n1""#),
        "{err}"
    );

    let gated = POD.replace(
        "name: web\nspec:\n",
        "name: gated\nspec:\n  schedulingGates:\n  - name: lab/wait\n",
    );
    c.ok_stdin(&["create", "-f", "-"], &gated)?;
    let (status, _, err) = bind("gated", &binding("n1", "").replace("\"web\"", "\"gated\""))?;
    assert!(
        !status.success() && err.contains("pod gated has non-empty .spec.schedulingGates"),
        "{err}"
    );
    Ok(())
}
