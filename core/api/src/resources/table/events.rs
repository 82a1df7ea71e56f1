//! Event rows: upstream's `printEvent`, for core `v1` and `events.k8s.io/v1` events alike.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{opt_int, present, text};
use super::time::age;

/// Field names of the two event schemas (`events.k8s.io` renames most core fields).
struct Schema {
    regarding: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
}

const CORE: Schema = Schema {
    regarding: "/involvedObject",
    message: "/message",
    source: "/source",
    first: "/firstTimestamp",
    last: "/lastTimestamp",
    count: "/count",
};

const EVENTS_K8S_IO: Schema = Schema {
    regarding: "/regarding",
    message: "/note",
    source: "/deprecatedSource",
    first: "/deprecatedFirstTimestamp",
    last: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
};

/// The cells of an event row, in [`super::columns::EVENT`] order.
pub(crate) fn cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let s = if text(event, "/apiVersion") == "events.k8s.io/v1" || present(event, "/regarding") {
        &EVENTS_K8S_IO
    } else {
        &CORE
    };
    let at = |pointer: &str| text(event, pointer);

    let first = if at(s.first).is_empty() {
        age(at("/eventTime"), now)
    } else {
        age(at(s.first), now)
    };
    let mut last = if at(s.last).is_empty() {
        first.clone()
    } else {
        age(at(s.last), now)
    };
    let mut count = opt_int(event, s.count).unwrap_or(0);
    if present(event, "/series") {
        last = age(at("/series/lastObservedTime"), now);
        count = opt_int(event, "/series/count").unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }

    let kind = text(event, &format!("{}/kind", s.regarding)).to_lowercase();
    let target = match text(event, &format!("{}/name", s.regarding)) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(
        text(event, &format!("{}/component", s.source)),
        at("/reportingController"),
    );
    let instance = first_non_empty(
        text(event, &format!("{}/host", s.source)),
        at("/reportingInstance"),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };

    vec![
        json!(last),
        json!(at("/type")),
        json!(at("/reason")),
        json!(target),
        json!(text(event, &format!("{}/fieldPath", s.regarding))),
        json!(source),
        json!(at(s.message).trim()),
        json!(first),
        json!(count),
        json!(at("/metadata/name")),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("now")
    }

    #[test]
    fn event_cells_should_show_core_events() {
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "nginx.1234", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "nginx", "namespace": "default", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "message": "Successfully pulled image \"nginx\"\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2025-06-01T11:50:00Z", "lastTimestamp": "2025-06-01T11:58:00Z", "count": 3
        });
        assert_eq!(
            cells(&ev, now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/nginx"),
                json!("spec.containers{nginx}"),
                json!("kubelet, node-a"),
                json!("Successfully pulled image \"nginx\""),
                json!("10m"),
                json!(3),
                json!("nginx.1234"),
            ]
        );
    }

    #[test]
    fn event_cells_should_read_new_style_events_and_series() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1"},
            "eventTime": "2025-06-01T11:00:00.000000Z",
            "series": {"count": 7, "lastObservedTime": "2025-06-01T11:59:30.000000Z"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "reason": "ScalingReplicaSet", "note": "Scaled up", "type": "Normal",
            "reportingController": "deployment-controller", "reportingInstance": ""
        });
        let cells = cells(&ev, now());
        assert_eq!(cells[0], "30s");
        assert_eq!(cells[3], "deployment/web");
        assert_eq!(cells[5], "deployment-controller");
        assert_eq!(cells[6], "Scaled up");
        assert_eq!(cells[7], "60m");
        assert_eq!(cells[8], 7);
    }

    #[test]
    fn event_cells_should_default_count_and_times() {
        let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"}});
        let cells = cells(&ev, now());
        assert_eq!(cells[0], "<unknown>");
        assert_eq!(cells[3], "node");
        assert_eq!(cells[8], 1);
    }
}
