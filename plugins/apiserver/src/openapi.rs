//! A minimal OpenAPI v3 (`/openapi/v3`, `/openapi/v3/<gv>`): enough for kubectl's field-validation check and `explain`.
//!
//! Every kind gets `get`/`put`/`patch`/`delete` (and `list`/`post`/`deletecollection`
//! on its collection) operations carrying `x-kubernetes-group-version-kind`; write
//! operations take a `fieldValidation` query parameter, so kubectl sends
//! `fieldValidation=Strict` instead of validating against a schema it would have to
//! download as OpenAPI v2. Patch operations deliberately have no `requestBody`: kubectl
//! only builds strategic merge patches from v3 schemas that advertise
//! `application/strategic-merge-patch+json`, and those schemas would need the complete
//! patch-merge-key metadata; without it, kubectl uses its compiled-in types.

use std::sync::OnceLock;

use kubernel_api::resources::{group_versions, Resource, RESOURCES};
use serde_json::{json, Map, Value};

/// Schema name of `metav1.Status`.
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// Schema name of `metav1.ObjectMeta`.
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";

/// One served group-version document, its index key (`api/v1`, `apis/apps/v1`) and hash.
struct Document {
    group: &'static str,
    version: &'static str,
    key: String,
    hash: String,
    body: Value,
}

/// The documents, built once from the catalog.
fn documents() -> &'static [Document] {
    static DOCS: OnceLock<Vec<Document>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(group, version)| {
                let body = build(group, version);
                let key = if group.is_empty() {
                    format!("api/{version}")
                } else {
                    format!("apis/{group}/{version}")
                };
                Document {
                    group,
                    version,
                    key,
                    hash: hash(&body.to_string()),
                    body,
                }
            })
            .collect()
    })
}

/// FNV-1a (64-bit) of the document text, as upper-case hex: stable across restarts, changes with the document.
fn hash(text: &str) -> String {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016X}")
}

/// `/openapi/v3`: each served group-version's document URL, with its hash.
pub fn index() -> Value {
    let paths: Map<String, Value> = documents()
        .iter()
        .map(|d| {
            (
                d.key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={}", d.key, d.hash)}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>`: the group-version's document, if served.
pub fn group_version_document(group: &str, version: &str) -> Option<Value> {
    documents()
        .iter()
        .find(|d| d.group == group && d.version == version)
        .map(|d| d.body.clone())
}

/// The Go package of a group's types: `core` for `""`, else the group's first label.
fn package(group: &str) -> &str {
    if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    }
}

/// The schema name of a kind: `io.k8s.api.apps.v1.Deployment`.
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    format!("io.k8s.api.{}.{version}.{kind}", package(group))
}

/// `Core`, `Apps`, `RbacAuthorization`: the group as operation IDs spell it.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_string();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

/// Query parameters of a write (`post`, `put`, `patch`): `dryRun`, `fieldManager`, `fieldValidation`.
fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![
        query("dryRun", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query("fieldValidation", FIELD_VALIDATION),
    ];
    if patch {
        params.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    params
}

fn list_params() -> Vec<Value> {
    [
        "allowWatchBookmarks",
        "continue",
        "fieldSelector",
        "labelSelector",
        "limit",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
    ]
    .iter()
    .map(|p| query(p, p))
    .collect()
}

fn delete_params() -> Vec<Value> {
    [
        "dryRun",
        "gracePeriodSeconds",
        "orphanDependents",
        "propagationPolicy",
    ]
    .iter()
    .map(|p| query(p, p))
    .collect()
}

/// A JSON response referencing a schema (or a plain string for `log`).
fn responses(schema: Option<&str>, codes: &[&str]) -> Value {
    let content = match schema {
        Some(s) => {
            json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}})
        }
        None => json!({"text/plain": {"schema": {"type": "string"}}}),
    };
    let map: Map<String, Value> = codes
        .iter()
        .map(|c| {
            (
                (*c).to_string(),
                json!({"description": "OK", "content": content}),
            )
        })
        .collect();
    Value::Object(map)
}

/// What one operation is: its verb, id, action, kind and I/O.
struct Op<'a> {
    method: &'a str,
    id: String,
    action: &'a str,
    gvk: Value,
    params: Vec<Value>,
    body: Option<&'a str>,
    response: Option<String>,
    codes: &'a [&'a str],
    tag: &'a str,
}

fn operation(op: Op<'_>) -> Value {
    let mut m = Map::new();
    m.insert("operationId".into(), json!(op.id));
    m.insert("tags".into(), json!([op.tag]));
    m.insert(
        "description".into(),
        json!(format!(
            "{} {}",
            op.action,
            op.gvk["kind"].as_str().unwrap_or_default()
        )),
    );
    m.insert("parameters".into(), Value::Array(op.params));
    if let Some(schema) = op.body {
        m.insert("requestBody".into(), json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}, "required": true}));
    }
    m.insert(
        "responses".into(),
        responses(op.response.as_deref(), op.codes),
    );
    m.insert("x-kubernetes-action".into(), json!(op.action));
    m.insert("x-kubernetes-group-version-kind".into(), op.gvk);
    Value::Object(m)
}

/// Adds an operation to a path item, creating the item with its path parameters.
fn add(paths: &mut Map<String, Value>, path: &str, path_params: &[Value], op: Op<'_>) {
    let method = op.method.to_string();
    let item = paths.entry(path.to_string()).or_insert_with(|| {
        let mut params = path_params.to_vec();
        params.push(query(
            "pretty",
            "If 'true', then the output is pretty printed.",
        ));
        json!({ "parameters": params })
    });
    if let Some(m) = item.as_object_mut() {
        m.insert(method, operation(op));
    }
}

/// The paths of one resource: collection, all-namespaces list, item and subresources.
fn resource_paths(paths: &mut Map<String, Value>, r: &Resource, tag: &str) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let name_param = path_param("name", &format!("name of the {}", r.kind));
    let ns_param = path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    );
    let (collection, collection_params, scoped) = if r.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            vec![ns_param.clone()],
            "Namespaced",
        )
    } else {
        (format!("{prefix}/{}", r.plural), Vec::new(), "")
    };
    let mut item_params = vec![name_param];
    item_params.extend(collection_params.iter().cloned());
    let item = format!("{collection}/{{name}}");
    let gv = format!("{}{}", group_camel(r.group), capitalize(r.version));
    let kind = schema_name(r.group, r.version, r.kind);
    let list_kind = schema_name(r.group, r.version, r.list_kind);
    let has = |verb: &str| r.verbs.contains(&verb);
    let op = |method, id: String, action, params, body, response: Option<String>, codes| Op {
        method,
        id,
        action,
        gvk: gvk(r.group, r.version, r.kind),
        params,
        body,
        response,
        codes,
        tag,
    };

    if has("list") {
        add(
            paths,
            &collection,
            &collection_params,
            op(
                "get",
                format!("list{gv}{scoped}{}", r.kind),
                "list",
                list_params(),
                None,
                Some(list_kind.clone()),
                &["200"],
            ),
        );
        if r.namespaced {
            let all = format!("{prefix}/{}", r.plural);
            add(
                paths,
                &all,
                &[],
                op(
                    "get",
                    format!("list{gv}{}ForAllNamespaces", r.kind),
                    "list",
                    list_params(),
                    None,
                    Some(list_kind),
                    &["200"],
                ),
            );
        }
    }
    if has("create") {
        add(
            paths,
            &collection,
            &collection_params,
            op(
                "post",
                format!("create{gv}{scoped}{}", r.kind),
                "post",
                write_params(false),
                Some(&kind),
                Some(kind.clone()),
                &["200", "201", "202"],
            ),
        );
    }
    if has("deletecollection") {
        add(
            paths,
            &collection,
            &collection_params,
            op(
                "delete",
                format!("delete{gv}Collection{scoped}{}", r.kind),
                "deletecollection",
                delete_params(),
                None,
                Some(STATUS.into()),
                &["200"],
            ),
        );
    }
    if has("get") {
        add(
            paths,
            &item,
            &item_params,
            op(
                "get",
                format!("read{gv}{scoped}{}", r.kind),
                "get",
                Vec::new(),
                None,
                Some(kind.clone()),
                &["200"],
            ),
        );
    }
    if has("update") {
        add(
            paths,
            &item,
            &item_params,
            op(
                "put",
                format!("replace{gv}{scoped}{}", r.kind),
                "put",
                write_params(false),
                Some(&kind),
                Some(kind.clone()),
                &["200", "201"],
            ),
        );
    }
    if has("patch") {
        add(
            paths,
            &item,
            &item_params,
            op(
                "patch",
                format!("patch{gv}{scoped}{}", r.kind),
                "patch",
                write_params(true),
                None,
                Some(kind.clone()),
                &["200", "201"],
            ),
        );
    }
    if has("delete") {
        add(
            paths,
            &item,
            &item_params,
            op(
                "delete",
                format!("delete{gv}{scoped}{}", r.kind),
                "delete",
                delete_params(),
                None,
                Some(STATUS.into()),
                &["200", "202"],
            ),
        );
    }

    for s in r.subresources {
        let path = format!("{item}/{}", s.name);
        let sub_kind = schema_name(s.group, s.version, s.kind);
        let suffix = capitalize(s.name);
        let response = if s.name == "log" {
            None
        } else {
            Some(sub_kind.clone())
        };
        for verb in s.verbs {
            let (method, prefix, params, body, codes): (
                &str,
                &str,
                Vec<Value>,
                Option<&str>,
                &[&str],
            ) = match *verb {
                "get" => ("get", "read", Vec::new(), None, &["200"]),
                "update" => (
                    "put",
                    "replace",
                    write_params(false),
                    Some(&sub_kind),
                    &["200", "201"],
                ),
                "patch" => ("patch", "patch", write_params(true), None, &["200", "201"]),
                "create" => (
                    "post",
                    "create",
                    write_params(false),
                    Some(&sub_kind),
                    &["200", "201", "202"],
                ),
                _ => continue,
            };
            let o = Op {
                method,
                id: format!("{prefix}{gv}{scoped}{}{suffix}", r.kind),
                action: method,
                gvk: gvk(s.group, s.version, s.kind),
                params,
                body,
                response: response.clone(),
                codes,
                tag,
            };
            add(paths, &path, &item_params, o);
        }
    }
}

/// A minimal schema for `kubectl explain`: the kind's GVK and its top-level fields.
fn kind_schema(group: &str, version: &str, kind: &str, spec_and_status: bool) -> Value {
    let mut props = json!({
        "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"},
        "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
        "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {}, "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"},
    });
    if spec_and_status {
        props["spec"] = json!({"type": "object", "description": format!("Spec defines the desired state of the {kind}.")});
        props["status"] = json!({"type": "object", "description": format!("Status is the most recently observed state of the {kind}. Populated by the system. Read-only.")});
    }
    json!({
        "type": "object",
        "description": format!("{kind} of {}", if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }),
        "properties": props,
        "x-kubernetes-group-version-kind": [{"group": group, "kind": kind, "version": version}],
    })
}

/// The OpenAPI 3.0 document of one group-version.
fn build(group: &str, version: &str) -> Value {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    let lower: String = chars
        .next()
        .map(|f| f.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    let tag = format!("{lower}_{version}");
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(STATUS.into(), json!({"type": "object", "description": "Status is a return value for calls that don't return other objects.", "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]}));
    schemas.insert(OBJECT_META.into(), json!({"type": "object", "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create."}));
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resource_paths(&mut paths, r, &tag);
        let has_status = r.subresource("status").is_some();
        schemas.insert(
            schema_name(r.group, r.version, r.kind),
            kind_schema(r.group, r.version, r.kind, has_status),
        );
        schemas.insert(
            schema_name(r.group, r.version, r.list_kind),
            json!({"type": "object", "description": format!("{} is a list of {}.", r.list_kind, r.kind), "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.list_kind, "version": r.version}]}),
        );
        for s in r.subresources.iter().filter(|s| s.kind != r.kind) {
            schemas
                .entry(schema_name(s.group, s.version, s.kind))
                .or_insert_with(|| kind_schema(s.group, s.version, s.kind, s.kind == "Scale"));
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl's `QueryParamVerifierV3` finds for a kind: the first patch operation's parameter check.
    fn patch_ops<'a>(doc: &'a Value, group: &str, version: &str, kind: &str) -> Vec<&'a Value> {
        let want = gvk(group, version, kind);
        doc["paths"]
            .as_object()
            .map(|p| {
                p.values()
                    .filter_map(|item| item.get("patch"))
                    .filter(|op| op["x-kubernetes-group-version-kind"] == want)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn has_query(op: &Value, name: &str) -> bool {
        op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query"))
    }

    #[test]
    fn index_should_link_every_group_version_with_its_hash() {
        let idx = index();
        let paths = idx["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), group_versions().len());
        let core = paths["api/v1"]["serverRelativeURL"].as_str().expect("url");
        let doc = group_version_document("", "v1").expect("core");
        assert_eq!(
            core,
            format!("/openapi/v3/api/v1?hash={}", hash(&doc.to_string()))
        );
        assert!(paths["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("/openapi/v3/apis/apps/v1?hash=")));
        assert_eq!(index(), idx);
        assert!(group_version_document("metrics.k8s.io", "v1beta1").is_none());
    }

    #[test]
    fn documents_should_let_kubectl_verify_field_validation_for_every_kind() {
        for r in RESOURCES {
            let doc = group_version_document(r.group, r.version).expect("document");
            let ops = patch_ops(&doc, r.group, r.version, r.kind);
            assert!(!ops.is_empty(), "no patch operation for {}", r.kind);
            for op in ops {
                assert!(
                    has_query(op, "fieldValidation"),
                    "{} patch without fieldValidation",
                    r.kind
                );
                assert!(
                    op.get("requestBody").is_none(),
                    "{} patch advertises a request body",
                    r.kind
                );
            }
        }
    }

    #[test]
    fn documents_should_describe_pod_operations() {
        let doc = group_version_document("", "v1").expect("core");
        assert_eq!(doc["openapi"], "3.0.0");
        let item = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
        for method in ["get", "put", "patch", "delete"] {
            assert_eq!(
                item[method]["x-kubernetes-group-version-kind"],
                gvk("", "v1", "Pod"),
                "{method}"
            );
        }
        assert_eq!(item["patch"]["operationId"], "patchCoreV1NamespacedPod");
        assert!(has_query(&item["put"], "fieldValidation"));
        let collection = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"];
        assert!(has_query(&collection["post"], "fieldValidation"));
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");
        assert_eq!(
            doc["paths"]["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        let eviction = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(
            eviction["x-kubernetes-group-version-kind"],
            gvk("policy", "v1", "Eviction")
        );
        assert!(doc["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
        assert!(doc["paths"]["/api/v1/namespaces/{name}/finalize"]["put"].is_object());
    }

    #[test]
    fn documents_should_carry_schemas_for_explain() {
        let doc = group_version_document("apps", "v1").expect("apps");
        let schemas = &doc["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(deployment["properties"]["spec"].is_object());
        assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
        assert!(schemas[OBJECT_META].is_object());
        let rbac = group_version_document("rbac.authorization.k8s.io", "v1").expect("rbac");
        assert!(
            rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]
                ["operationId"]
                == "patchRbacAuthorizationV1ClusterRole"
        );
        assert!(rbac["components"]["schemas"]["io.k8s.api.rbac.v1.ClusterRole"].is_object());
    }
}
