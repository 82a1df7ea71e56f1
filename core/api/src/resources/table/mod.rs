//! Server-side Table printing: `meta.k8s.io/v1` Tables with upstream's columns and cells.
//!
//! A resource's [`Resource::columns`] (set in the catalog from [`columns`]) select
//! the printer that computes its cells; the printers follow upstream's
//! `pkg/printers/internalversion/printers.go` with `Wide: true`, as the
//! apiserver always sends every column.

mod cluster;
pub mod columns;
mod events;
mod fields;
mod misc;
mod network;
mod pod;
mod time;
mod workloads;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::{Column, Resource};

pub use time::{age, human_duration};

/// What each Table row's `object` carries (the `includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `null`.
    None,
    /// A `PartialObjectMetadata` with the object's full metadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses `includeObject`: `None`, `Metadata` or `Object`; anything else means the default, `Metadata`.
    pub fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Computes the cells of one row.
type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

/// A column set and the function that fills it.
struct Printer {
    columns: &'static [Column],
    cells: CellsFn,
    /// Row conditions (`Completed` for finished pods).
    conditions: fn(&Value) -> Vec<Value>,
}

fn no_conditions(_: &Value) -> Vec<Value> {
    Vec::new()
}

const fn printer(columns: &'static [Column], cells: CellsFn) -> Printer {
    Printer {
        columns,
        cells,
        conditions: no_conditions,
    }
}

/// Every printer, found by its column set.
const PRINTERS: &[Printer] = &[
    Printer {
        columns: columns::POD,
        cells: pod::cells,
        conditions: pod::conditions,
    },
    printer(columns::NODE, cluster::node_cells),
    printer(columns::NAMESPACE, cluster::namespace_cells),
    printer(columns::SERVICE, network::service_cells),
    printer(columns::ENDPOINTS, network::endpoints_cells),
    printer(columns::ENDPOINT_SLICE, network::endpoint_slice_cells),
    printer(columns::CONFIG_MAP, misc::config_map_cells),
    printer(columns::SECRET, misc::secret_cells),
    printer(columns::SERVICE_ACCOUNT, misc::service_account_cells),
    printer(columns::EVENT, events::cells),
    printer(columns::RESOURCE_QUOTA, misc::resource_quota_cells),
    printer(columns::DEPLOYMENT, workloads::deployment_cells),
    printer(columns::REPLICA_SET, workloads::replica_set_cells),
    printer(columns::DAEMON_SET, workloads::daemon_set_cells),
    printer(columns::STATEFUL_SET, workloads::stateful_set_cells),
    printer(columns::JOB, workloads::job_cells),
    printer(columns::LEASE, misc::lease_cells),
    printer(columns::PRIORITY_CLASS, misc::priority_class_cells),
    printer(
        columns::POD_DISRUPTION_BUDGET,
        misc::pod_disruption_budget_cells,
    ),
    printer(columns::ROLE_BINDING, misc::role_binding_cells),
    printer(columns::CLUSTER_ROLE_BINDING, misc::role_binding_cells),
    printer(
        columns::CERTIFICATE_SIGNING_REQUEST,
        misc::certificate_signing_request_cells,
    ),
    printer(columns::DEFAULT, misc::default_cells),
];

fn printer_for(resource: &Resource) -> Option<&'static Printer> {
    PRINTERS.iter().find(|p| p.columns == resource.columns)
}

/// Cells for a column set no printer knows: the name, the age, the creation time, else `""`.
fn generic_cells(columns: &[Column], object: &Value, now: Timestamp) -> Vec<Value> {
    let created = fields::text(object, "/metadata/creationTimestamp");
    columns
        .iter()
        .map(|c| match (c.format, c.name) {
            ("name", _) => fields::name(object),
            (_, "Age") => json!(age(created, now)),
            (_, "Created At") => json!(time::rfc3339(created)),
            _ => json!(""),
        })
        .collect()
}

/// One cell per column of `resource`, computed as upstream's printers do.
pub fn cells(resource: &Resource, object: &Value, now: Timestamp) -> Vec<Value> {
    match printer_for(resource) {
        Some(p) => (p.cells)(object, now),
        None => generic_cells(resource.columns, object, now),
    }
}

/// The `columnDefinitions` of a Table of `resource`.
pub fn column_definitions(resource: &Resource) -> Vec<Value> {
    resource
        .columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect()
}

/// One Table row: cells, conditions when there are any, and the object as `include_object` asks.
fn row(
    resource: &Resource,
    object: &Value,
    include_object: IncludeObject,
    now: Timestamp,
) -> Value {
    let printer = printer_for(resource);
    let cells = match printer {
        Some(p) => (p.cells)(object, now),
        None => generic_cells(resource.columns, object, now),
    };
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if let Some(conditions) = printer
        .map(|p| (p.conditions)(object))
        .filter(|c| !c.is_empty())
    {
        row.insert("conditions".into(), Value::Array(conditions));
    }
    let object = match include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => object.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    };
    row.insert("object".into(), object);
    Value::Object(row)
}

fn assemble(metadata: Map<String, Value>, columns: Vec<Value>, rows: Vec<Value>) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A `meta.k8s.io/v1` Table of `items` (a list page, or one object for a GET).
///
/// `continue_token` is omitted when empty; `remaining` becomes `remainingItemCount`.
pub fn table(
    resource: &Resource,
    items: &[&Value],
    include_object: IncludeObject,
    resource_version: &str,
    continue_token: &str,
    remaining: Option<i64>,
    now: Timestamp,
) -> Value {
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), json!(resource_version));
    }
    if !continue_token.is_empty() {
        metadata.insert("continue".into(), json!(continue_token));
    }
    if let Some(n) = remaining {
        metadata.insert("remainingItemCount".into(), json!(n));
    }
    let rows = items
        .iter()
        .map(|o| row(resource, o, include_object, now))
        .collect();
    assemble(metadata, column_definitions(resource), rows)
}

/// The Table carried by one watch event: a single row, `resourceVersion` from the object,
/// and `columnDefinitions` only when `with_columns` (the first event of a watch); `[]` otherwise.
pub fn watch_event_table(
    resource: &Resource,
    object: &Value,
    include_object: IncludeObject,
    with_columns: bool,
    now: Timestamp,
) -> Value {
    let mut metadata = Map::new();
    let rv = fields::text(object, "/metadata/resourceVersion");
    if !rv.is_empty() {
        metadata.insert("resourceVersion".into(), json!(rv));
    }
    let columns = if with_columns {
        column_definitions(resource)
    } else {
        Vec::new()
    };
    assemble(
        metadata,
        columns,
        vec![row(resource, object, include_object, now)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{find, RESOURCES};

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("now")
    }

    fn pod(name: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "web"}, "creationTimestamp": "2025-06-01T11:59:15Z"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Pending"}
        })
    }

    #[test]
    fn catalog_resources_should_each_have_a_printer_filling_every_column() {
        let sparse = json!({"metadata": {"name": "x"}});
        for r in RESOURCES {
            assert!(
                printer_for(r).is_some(),
                "{} has no printer",
                r.qualified_plural()
            );
            assert_eq!(
                cells(r, &sparse, now()).len(),
                r.columns.len(),
                "{}",
                r.qualified_plural()
            );
        }
    }

    #[test]
    fn include_object_should_parse_with_metadata_as_default() {
        assert_eq!(IncludeObject::parse(None), IncludeObject::Metadata);
        assert_eq!(
            IncludeObject::parse(Some("Metadata")),
            IncludeObject::Metadata
        );
        assert_eq!(IncludeObject::parse(Some("Object")), IncludeObject::Object);
        assert_eq!(IncludeObject::parse(Some("None")), IncludeObject::None);
        assert_eq!(IncludeObject::parse(Some("bogus")), IncludeObject::Metadata);
    }

    #[test]
    fn table_should_have_the_meta_v1_shape() {
        let pods = find("", "v1", "pods").expect("pods");
        let (a, b) = (pod("a"), pod("b"));
        let t = table(
            pods,
            &[&a, &b],
            IncludeObject::Metadata,
            "57",
            "tok",
            Some(3),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "57", "continue": "tok", "remainingItemCount": 3})
        );
        let cols = t["columnDefinitions"].as_array().expect("columns");
        assert_eq!(cols.len(), 9);
        assert_eq!(
            cols[0],
            json!({"name": "Name", "type": "string", "format": "name", "description": columns::NAME.description, "priority": 0})
        );
        assert_eq!(cols[5]["name"], "IP");
        assert_eq!(cols[5]["priority"], 1);
        let rows = t["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0]["cells"],
            json!(["a", "0/1", "Pending", "0", "45s", "<none>", "<none>", "<none>", "<none>"])
        );
        assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(rows[0]["object"]["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(rows[0]["object"]["metadata"], a["metadata"]);
        assert!(rows[0].get("conditions").is_none());
    }

    #[test]
    fn table_should_honour_include_object_and_omit_empty_list_meta() {
        let pods = find("", "v1", "pods").expect("pods");
        let a = pod("a");
        let t = table(pods, &[&a], IncludeObject::Object, "", "", None, now());
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["rows"][0]["object"], a);
        let t = table(pods, &[&a], IncludeObject::None, "1", "", None, now());
        assert!(t["rows"][0]["object"].is_null());
        let empty = table(pods, &[], IncludeObject::Metadata, "1", "", None, now());
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn table_should_mark_finished_pods_completed() {
        let pods = find("", "v1", "pods").expect("pods");
        let mut done = pod("done");
        done["status"]["phase"] = json!("Succeeded");
        let t = table(
            pods,
            &[&done],
            IncludeObject::Metadata,
            "1",
            "",
            None,
            now(),
        );
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
    }

    #[test]
    fn watch_event_table_should_send_columns_only_when_asked() {
        let pods = find("", "v1", "pods").expect("pods");
        let a = pod("a");
        let first = watch_event_table(pods, &a, IncludeObject::Metadata, true, now());
        assert_eq!(first["metadata"]["resourceVersion"], "42");
        assert_eq!(first["columnDefinitions"].as_array().map(Vec::len), Some(9));
        let later = watch_event_table(pods, &a, IncludeObject::Metadata, false, now());
        assert_eq!(later["columnDefinitions"], json!([]));
        assert_eq!(later["rows"][0]["cells"][0], "a");
    }

    #[test]
    fn cells_should_fall_back_to_name_and_age_for_unknown_column_sets() {
        static COLS: &[Column] = &[
            columns::NAME,
            columns::AGE,
            Column {
                name: "Other",
                type_: "string",
                format: "",
                description: "",
                priority: 0,
            },
        ];
        let custom = Resource {
            columns: COLS,
            ..RESOURCES[0]
        };
        assert_eq!(
            cells(&custom, &pod("a"), now()),
            vec![json!("a"), json!("45s"), json!("")]
        );
    }

    #[test]
    fn column_definitions_should_mark_roles_with_created_at() {
        let roles = find("rbac.authorization.k8s.io", "v1", "roles").expect("roles");
        let cols = column_definitions(roles);
        assert_eq!(cols[1]["name"], "Created At");
        assert_eq!(cols[1]["type"], "date");
    }
}
