//! Workload rows: upstream's `printDeployment`, `printReplicaSet`, `printDaemonSet`, `printStatefulSet`, `printJob`.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{
    condition_true, containers, format_labels, format_selector, int, list, name, opt_int, present,
    selector_string, text,
};
use super::time::{age, between, parse};
use crate::pointer::Pointer;

fn created(o: &Value, now: Timestamp) -> Value {
    json!(age(text(o, "/metadata/creationTimestamp"), now))
}

/// `spec.replicas`, defaulted to 1 as the API server does.
fn desired(o: &Value) -> i64 {
    opt_int(o, "/spec/replicas").unwrap_or(1)
}

/// The `Containers` and `Images` cells of a pod template.
fn template(o: &Value) -> [Value; 2] {
    let (names, images) = containers(o.at("/spec/template/spec"));
    [json!(names), json!(images)]
}

/// The cells of a deployment row, in [`super::columns::DEPLOYMENT`] order.
pub(crate) fn deployment_cells(d: &Value, now: Timestamp) -> Vec<Value> {
    let selector =
        selector_string(d.at("/spec/selector")).unwrap_or_else(|_| "<invalid>".to_string());
    let [names, images] = template(d);
    vec![
        name(d),
        json!(format!(
            "{}/{}",
            int(d, "/status/readyReplicas"),
            desired(d)
        )),
        json!(int(d, "/status/updatedReplicas")),
        json!(int(d, "/status/availableReplicas")),
        created(d, now),
        names,
        images,
        json!(selector),
    ]
}

/// The cells of a replica set row, in [`super::columns::REPLICA_SET`] order.
pub(crate) fn replica_set_cells(rs: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = template(rs);
    vec![
        name(rs),
        json!(desired(rs)),
        json!(int(rs, "/status/replicas")),
        json!(int(rs, "/status/readyReplicas")),
        created(rs, now),
        names,
        images,
        json!(format_selector(rs.at("/spec/selector"))),
    ]
}

/// The cells of a daemon set row, in [`super::columns::DAEMON_SET`] order.
pub(crate) fn daemon_set_cells(ds: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = template(ds);
    vec![
        name(ds),
        json!(int(ds, "/status/desiredNumberScheduled")),
        json!(int(ds, "/status/currentNumberScheduled")),
        json!(int(ds, "/status/numberReady")),
        json!(int(ds, "/status/updatedNumberScheduled")),
        json!(int(ds, "/status/numberAvailable")),
        json!(format_labels(ds.at("/spec/template/spec/nodeSelector"))),
        created(ds, now),
        names,
        images,
        json!(format_selector(ds.at("/spec/selector"))),
    ]
}

/// The cells of a stateful set row, in [`super::columns::STATEFUL_SET`] order.
pub(crate) fn stateful_set_cells(sts: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = template(sts);
    vec![
        name(sts),
        json!(format!(
            "{}/{}",
            int(sts, "/status/readyReplicas"),
            desired(sts)
        )),
        created(sts, now),
        names,
        images,
    ]
}

/// The cells of a job row, in [`super::columns::JOB`] order.
pub(crate) fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let conditions = list(job, "/status/conditions");
    let is = |t: &str| condition_true(conditions, t);
    let status = if is("Complete") {
        "Complete"
    } else if is("Failed") {
        "Failed"
    } else if present(job, "/metadata/deletionTimestamp") {
        "Terminating"
    } else if is("Suspended") {
        "Suspended"
    } else if is("FailureTarget") {
        "FailureTarget"
    } else if is("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = int(job, "/status/succeeded");
    let completions = match (
        opt_int(job, "/spec/completions"),
        int(job, "/spec/parallelism"),
    ) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, p) if p > 1 => format!("{succeeded}/1 of {p}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let duration = match (
        parse(text(job, "/status/startTime")),
        parse(text(job, "/status/completionTime")),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => between(start, now),
        (Some(start), Some(end)) => between(start, end),
    };
    let [names, images] = template(job);
    vec![
        name(job),
        json!(status),
        json!(completions),
        json!(duration),
        created(job, now),
        names,
        images,
        json!(format_selector(job.at("/spec/selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("now")
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        })
    }

    #[test]
    fn deployment_cells_should_show_ready_over_desired_and_integer_counts() {
        assert_eq!(
            deployment_cells(&deployment(), now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("60m"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox"),
                json!("app=web"),
            ]
        );
    }

    #[test]
    fn deployment_cells_should_default_missing_status_to_zero() {
        let d = json!({"metadata": {"name": "new"}, "spec": {"selector": {}, "template": {"spec": {"containers": []}}}});
        let cells = deployment_cells(&d, now());
        assert_eq!(cells[1..4], [json!("0/1"), json!(0), json!(0)]);
        assert_eq!(cells[7], "");
    }

    #[test]
    fn replica_set_and_daemon_set_cells_should_be_integers() {
        let mut rs = deployment();
        rs["status"] = json!({"replicas": 3, "readyReplicas": 1});
        let cells = replica_set_cells(&rs, now());
        assert_eq!(cells[1..4], [json!(3), json!(3), json!(1)]);
        assert_eq!(cells[7], "app=web");

        let ds = json!({"metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"spec": {"nodeSelector": {"os": "linux"}, "containers": [{"name": "a", "image": "a:1"}]}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        let cells = daemon_set_cells(&ds, now());
        assert_eq!(
            cells[1..7],
            [
                json!(2),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("os=linux")
            ]
        );
        assert_eq!(cells.len(), 11);
    }

    #[test]
    fn stateful_set_cells_should_show_ready_over_desired() {
        let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres"}]}}},
            "status": {"readyReplicas": 2}});
        assert_eq!(
            stateful_set_cells(&sts, now())[1..5],
            [
                json!("2/2"),
                json!("<unknown>"),
                json!("pg"),
                json!("postgres")
            ]
        );
    }

    #[test]
    fn job_cells_should_show_status_completions_and_duration() {
        let mut job = json!({"metadata": {"name": "pi", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"completions": 3, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2025-06-01T11:00:00Z"}});
        let cells = job_cells(&job, now());
        assert_eq!(
            cells[1..5],
            [json!("Running"), json!("1/3"), json!("60m"), json!("60m")]
        );
        assert_eq!(cells[7], "batch.kubernetes.io/controller-uid=u1");

        job["status"] = json!({"succeeded": 3, "startTime": "2025-06-01T11:00:00Z", "completionTime": "2025-06-01T11:00:42Z",
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]});
        let cells = job_cells(&job, now());
        assert_eq!(cells[1..4], [json!("Complete"), json!("3/3"), json!("42s")]);

        let parallel = json!({"metadata": {"name": "p"}, "spec": {"parallelism": 4}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            job_cells(&parallel, now())[1..4],
            [json!("Suspended"), json!("0/1 of 4"), json!("")]
        );
    }
}
