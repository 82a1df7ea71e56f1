//! Mutations: create, update, patch, delete, deletecollection (and the status/scale subresources).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use kubernel_api::pointer::Pointer;
use kubernel_api::resources::Resource;
use serde_json::{json, Value};

use super::read::{fetch, page, Filter};
use super::{observe_storage, ApiState, Query};
use crate::admission::{self, selector, FieldValidation};
use crate::allocator;
use crate::negotiate::json;
use crate::objects::{self, meta_str, metadata_mut};
use crate::patch::{self, PatchType};
use crate::request::{RequestInfo, Verb};
use crate::status::ApiError;
use crate::store::{StoreError, Stored};

/// Runs a mutating request.
pub async fn mutate(
    state: &Arc<ApiState>,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
    user: &crate::auth::UserInfo,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    match info.verb {
        Verb::Create => create(state, info, query, (content_type, &body), dry_run, user).await,
        Verb::Update => update(state, info, query, content_type, &body, dry_run).await,
        Verb::Patch => {
            patch(
                state,
                info,
                query,
                headers,
                (content_type, &body),
                dry_run,
                user,
            )
            .await
        }
        Verb::Delete => delete(state, info, query, &body, dry_run).await,
        Verb::DeleteCollection => delete_collection(state, info, query, &body, dry_run).await,
        _ => Err(ApiError::method_not_allowed("not a mutating verb")),
    }
}

fn store_error(info: &RequestInfo, name: &str, e: StoreError) -> ApiError {
    let r = info.resource;
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(r.group, r.plural, name),
        StoreError::NotFound { .. } => ApiError::not_found(r.group, r.plural, name),
        StoreError::Conflict { .. } => ApiError::conflict(r.group, r.plural, name),
        StoreError::Invalid(m) => ApiError::bad_request(m),
        other => ApiError::unavailable(other.to_string()),
    }
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// [`admission::parse_body`], off the async workers when the body is YAML or large.
async fn parse_body(
    state: &ApiState,
    r: &'static Resource,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let yaml = content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("yaml"));
    let heavy = super::heavy_body(yaml, body);
    let content_type = content_type.map(str::to_string);
    let body = body.clone();
    super::decode_off_workers(state, heavy, move || {
        admission::parse_body(r, content_type.as_deref(), &body)
    })
    .await
}

/// A PATCH body to apply, with the request's field manager and `force`.
struct PatchJob {
    patch_type: PatchType,
    body: Bytes,
    manager: String,
    force: bool,
}

impl PatchJob {
    fn new(patch_type: PatchType, body: &Bytes, manager: &str, force: bool) -> PatchJob {
        PatchJob {
            patch_type,
            body: body.clone(),
            manager: manager.to_string(),
            force,
        }
    }

    /// [`patch::apply_patch`] to `original`, off the async workers when the
    /// body is an apply configuration in YAML (not JSON) or is large.
    async fn run(
        &self,
        state: &ApiState,
        kind: &'static str,
        original: Arc<Value>,
    ) -> Result<Value, ApiError> {
        let yaml = self.patch_type == PatchType::Apply
            && self.body.trim_ascii_start().first() != Some(&b'{');
        let heavy = super::heavy_body(yaml, &self.body);
        let (patch_type, body, manager, force) = (
            self.patch_type,
            self.body.clone(),
            self.manager.clone(),
            self.force,
        );
        super::decode_off_workers(state, heavy, move || {
            patch::apply_patch(kind, &original, patch_type, &body, &manager, force)
        })
        .await
    }
}

fn has_status(r: &Resource) -> bool {
    r.subresource("status").is_some()
}

/// Decodes, defaults and validates the object a request body carries.
fn admit(
    info: &RequestInfo,
    query: &Query,
    object: Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let mode = FieldValidation::parse(query.get("fieldValidation").map(String::as_str))?;
    let (mut object, warnings) = if info.subresource == "status" {
        admission::decode_status(info.resource, object, mode)?
    } else {
        admission::decode(info.resource, object, mode)?
    };
    admission::apply_defaults(info.resource, &mut object);
    Ok((object, warnings))
}

async fn create(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    (content_type, body): (Option<&str>, &Bytes),
    dry_run: bool,
    user: &crate::auth::UserInfo,
) -> Result<Response, ApiError> {
    let r = info.resource;
    if !info.subresource.is_empty() {
        return create_subresource(state, info, content_type, body).await;
    }
    if !info.name.is_empty() {
        return Err(ApiError::method_not_allowed(format!(
            "POST to a named {} is not allowed",
            r.singular
        )));
    }
    let object = parse_body(state, r, content_type, body).await?;
    let requested_priority = object.at("/spec/priority").and_then(Value::as_i64);
    let (mut object, mut warnings) = admit(info, query, object)?;
    let on = |plugin: &str| state.admission.enabled(plugin);
    let mut audit_annotations = Vec::new();
    if r.namespaced && on("NamespaceLifecycle") {
        check_namespace(state, &info.namespace)?;
    }
    objects::prepare_create(info, &mut object)?;
    if (r.group, r.kind) == ("", "Pod") {
        let store = state.store.as_ref();
        let mut pod_admission = || -> Result<admission::pod_security::Verdict, String> {
            if on("Priority") {
                admission::priority::resolve(store, &mut object, requested_priority)?;
            }
            if on("LimitRanger") {
                admission::limit_ranger::admit(store, &mut object)?;
            }
            if on("ServiceAccount") {
                admission::service_account::admit(store, &mut object)?;
            }
            if on("PodSecurity") {
                return admission::pod_security::admit(store, &object);
            }
            Ok(admission::pod_security::Verdict::default())
        };
        let verdict = pod_admission().map_err(|m| {
            let name = meta_str(&object, "name");
            ApiError::forbidden(
                "",
                "pods",
                name,
                format!("pods \"{name}\" is forbidden: {m}"),
            )
        })?;
        warnings.extend(verdict.warnings);
        audit_annotations.extend(verdict.audit_annotations);
        let config = &state.config;
        if on("DefaultTolerationSeconds") {
            admission::default_toleration_seconds(
                &mut object,
                admission::TolerationSeconds {
                    not_ready: config.default_not_ready_toleration_seconds,
                    unreachable: config.default_unreachable_toleration_seconds,
                },
            );
        }
    }
    if r.kind == "Namespace" {
        object["status"] = json!({ "phase": "Active" });
    }
    if (r.group, r.kind) == ("certificates.k8s.io", "CertificateSigningRequest") {
        admission::csr::admit(&mut object, user)?;
    }
    if r.kind == "Job" {
        objects::generate_job_selector(&mut object);
    }
    let name = meta_str(&object, "name").to_string();
    let named = RequestInfo {
        name: name.clone(),
        ..info.clone()
    };
    let started = Instant::now();
    admission::validate_create(r, &object)?;
    observe_admission(state, "create", started);
    if r.namespaced && on("ResourceQuota") {
        admission::quota::charge(state.store.as_ref(), r, &info.namespace, &object, dry_run)
            .await?;
    }
    let allocated = state.services.allocate_create(&named, &mut object)?;
    let answer = |body: Bytes| {
        let mut resp = with_warnings(json(201, "application/json", body), &warnings);
        if !audit_annotations.is_empty() {
            resp.extensions_mut()
                .insert(crate::audit::Annotations(audit_annotations.clone()));
        }
        resp
    };
    if dry_run {
        return Ok(answer(Bytes::from(object.to_string())));
    }
    let started = Instant::now();
    let stored = state
        .store
        .create(&named.key(), object)
        .await
        .map_err(|e| store_error(info, &name, e));
    observe_storage(state, "create", r, started);
    let stored = stored?;
    allocated.commit();
    Ok(answer(stored.json))
}

/// NamespaceLifecycle: objects are created only in existing, non-terminating namespaces.
fn check_namespace(state: &ApiState, namespace: &str) -> Result<(), ApiError> {
    let ns = state
        .store
        .get(&format!("namespaces/{namespace}"))
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::not_found("", "namespaces", namespace))?;
    if ns.object.at("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::forbidden(
            "",
            "namespaces",
            namespace,
            format!("unable to create new content in namespace {namespace} because it is being terminated"),
        ));
    }
    Ok(())
}

fn observe_admission(state: &ApiState, operation: &str, started: Instant) {
    state
        .metrics
        .admission_duration
        .with_label_values(&["validation", operation, "false", "validate"])
        .observe(started.elapsed().as_secs_f64());
}

async fn update(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let r = info.resource;
    if info.subresource == "scale" {
        let scale: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("decoding Scale: {e}")))?;
        return write_scale(state, info, scale, dry_run).await;
    }
    let object = parse_body(state, r, content_type, body).await?;
    if meta_str(&object, "name") != info.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            meta_str(&object, "name"),
            info.name
        )));
    }
    let current = fetch(state, info)?;
    let (object, warnings) = admit(info, query, object)?;
    let resp = replace(state, info, &current, object, true, dry_run).await?;
    Ok(with_warnings(resp, &warnings))
}

/// Writes `new` over `current` (compare-and-swap on its revision), after the
/// update preparation and validation; `check_rv` honours a resourceVersion in `new`.
async fn replace(
    state: &ApiState,
    info: &RequestInfo,
    current: &Stored,
    mut new: Value,
    check_rv: bool,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let r = info.resource;
    let client_rv = meta_str(&new, "resourceVersion").to_string();
    if check_rv && !client_rv.is_empty() && client_rv != current.mod_revision.to_string() {
        return Err(ApiError::conflict(r.group, r.plural, &info.name));
    }
    let uid = meta_str(&new, "uid");
    if !uid.is_empty() && uid != meta_str(&current.object, "uid") {
        return Err(ApiError::conflict_message(
            r.group,
            r.plural,
            &info.name,
            uid_precondition_failed(uid, meta_str(&current.object, "uid")),
        ));
    }
    allocator::prepare_update(info, &current.object, &mut new);
    objects::prepare_update(info, &current.object, &mut new, has_status(r))?;
    let started = Instant::now();
    admission::validate_update(r, &current.object, &new)?;
    observe_admission(state, "update", started);
    let allocated = state
        .services
        .allocate_update(info, &current.object, &mut new)?;
    if dry_run {
        return Ok(json(200, "application/json", new.to_string()));
    }
    // Finalizers all gone from an object being deleted: the update completes the delete.
    let finished = new.at("/metadata/deletionTimestamp").is_some()
        && new
            .at("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
        && !has_spec_finalizers(r.kind, &new);
    let started = Instant::now();
    let result = if finished {
        state
            .store
            .delete(&info.key(), Some(current.mod_revision))
            .await
    } else {
        state
            .store
            .update(&info.key(), new, Some(current.mod_revision))
            .await
    };
    observe_storage(state, "update", r, started);
    let stored = result.map_err(|e| store_error(info, &info.name, e))?;
    if finished {
        allocated.commit_delete();
    } else {
        allocated.commit();
    }
    Ok(json(200, "application/json", stored.json))
}

async fn patch(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
    (content_type, body): (Option<&str>, &Bytes),
    dry_run: bool,
    user: &crate::auth::UserInfo,
) -> Result<Response, ApiError> {
    let r = info.resource;
    let ct = content_type.unwrap_or("");
    let patch_type =
        PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    let manager = query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| objects::manager_from_user_agent(headers));
    let force = query.get("force").is_some_and(|f| f == "true");
    if info.subresource == "scale" {
        let current = fetch(state, info)?;
        let scale = to_scale(info, &current.object)?;
        let patch = PatchJob::new(patch_type, body, &manager, force);
        let patched = patch.run(state, "Scale", Arc::new(scale)).await?;
        return write_scale(state, info, patched, dry_run).await;
    }
    let job = PatchJob::new(patch_type, body, &manager, force);
    // As kube-apiserver's patcher: a patch that names no resourceVersion of its own
    // is applied again to the newer object when another write came in between.
    for attempt in 1.. {
        let current = match fetch(state, info) {
            Ok(c) => c,
            Err(e)
                if e.code == 404
                    && patch_type == PatchType::Apply
                    && info.subresource.is_empty() =>
            {
                // Server-side apply creates the object when it does not exist.
                let created = job.run(state, r.kind, Arc::new(Value::Null)).await?;
                let create_info = RequestInfo {
                    verb: Verb::Create,
                    name: String::new(),
                    ..info.clone()
                };
                let bytes = Bytes::from(
                    serde_json::to_vec(&created).map_err(|e| ApiError::internal(e.to_string()))?,
                );
                return create(
                    state,
                    &create_info,
                    query,
                    (Some("application/json"), &bytes),
                    dry_run,
                    user,
                )
                .await;
            }
            Err(e) => return Err(e),
        };
        let patched = job.run(state, r.kind, current.object.clone()).await?;
        if meta_str(&patched, "name") != info.name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                meta_str(&patched, "name"),
                info.name
            )));
        }
        let own_precondition =
            meta_str(&patched, "resourceVersion") != current.mod_revision.to_string();
        let (patched, warnings) = admit(info, query, patched)?;
        match replace(state, info, &current, patched, true, dry_run).await {
            Err(e) if e.reason == "Conflict" && !own_precondition && attempt < PATCH_ATTEMPTS => {
                continue
            }
            result => return result.map(|resp| with_warnings(resp, &warnings)),
        }
    }
    Err(ApiError::internal("patch retries exhausted"))
}

/// How often a patch is applied again after a conflicting write (kube-apiserver: 5).
const PATCH_ATTEMPTS: usize = 5;

/// The `autoscaling/v1` Scale of a deployment, replica set or stateful set.
pub fn to_scale(info: &RequestInfo, object: &Value) -> Result<Value, ApiError> {
    let md = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let selector = object
        .at("/spec/selector")
        .map(selector::to_text)
        .unwrap_or_default();
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": md.get("name"),
            "namespace": md.get("namespace"),
            "uid": md.get("uid"),
            "resourceVersion": md.get("resourceVersion"),
            "creationTimestamp": md.get("creationTimestamp"),
        },
        "spec": { "replicas": object.at("/spec/replicas").and_then(Value::as_i64).unwrap_or(info.resource.namespaced as i64) },
        "status": {
            "replicas": object.at("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        }
    }))
}

async fn write_scale(
    state: &ApiState,
    info: &RequestInfo,
    scale: Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let replicas = scale
        .at("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            &info.name,
            vec![crate::status::Cause::invalid(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let current = fetch(state, info)?;
    let rv = meta_str(&scale, "resourceVersion");
    if !rv.is_empty() && rv != current.mod_revision.to_string() {
        return Err(ApiError::conflict(
            info.resource.group,
            info.resource.plural,
            &info.name,
        ));
    }
    let mut new = (*current.object).clone();
    new["spec"]["replicas"] = json!(replicas);
    let main = RequestInfo {
        subresource: String::new(),
        ..info.clone()
    };
    replace(state, &main, &current, new, false, dry_run).await?;
    let updated = fetch(state, info)?;
    Ok(json(
        200,
        "application/json",
        to_scale(info, &updated.object)?.to_string(),
    ))
}

/// POST to a subresource: `pods/<name>/binding`, `pods/<name>/eviction` and
/// `serviceaccounts/<name>/token`.
async fn create_subresource(
    state: &ApiState,
    info: &RequestInfo,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let value: Value = match content_type {
        Some(ct) if ct.starts_with("application/vnd.kubernetes.protobuf") => {
            crate::protobuf::decode(body).map_err(ApiError::bad_request)?
        }
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("decoding {}: {e}", info.subresource)))?,
    };
    let main = RequestInfo {
        subresource: String::new(),
        ..info.clone()
    };
    match (info.resource.kind, info.subresource.as_str()) {
        ("Pod", "binding") => bind(state, info, &main, &value).await,
        ("Pod", "eviction") => {
            let current = fetch(state, &main)?;
            check_disruption_budget(state, &info.namespace, &current.object).await?;
            state
                .store
                .delete(&main.key(), Some(current.mod_revision))
                .await
                .map_err(|e| store_error(info, &info.name, e))?;
            Ok(json(201, "application/json", success(info).to_string()))
        }
        ("ServiceAccount", "token") => super::token::create(state, info, &value).await,
        (_, sub) => Err(ApiError::method_not_allowed(format!(
            "POST is not supported on the {sub} subresource"
        ))),
    }
}

/// `pods/binding` as kube-apiserver's BindingREST: the pod (with the binding's
/// UID, when it names one) gets `spec.nodeName`, the binding's annotations and
/// `PodScheduled=True`, unless it is being deleted, already bound or gated
/// (409, `Operation cannot be fulfilled on pods/binding ...`).
async fn bind(
    state: &ApiState,
    info: &RequestInfo,
    pod: &RequestInfo,
    binding: &Value,
) -> Result<Response, ApiError> {
    let node = binding
        .at("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &info.name,
            vec![crate::status::Cause::required("target.name")],
        ));
    }
    let current = fetch(state, pod)?;
    let object = &current.object;
    let uid = binding
        .at("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !uid.is_empty() && uid != meta_str(object, "uid") {
        return Err(ApiError::conflict_message(
            "",
            "pods",
            &info.name,
            format!(
                "Operation cannot be fulfilled on pods \"{}\": {}",
                info.name,
                uid_precondition_failed(uid, meta_str(object, "uid"))
            ),
        ));
    }
    let refused = |why: String| {
        ApiError::conflict_message(
            "",
            "pods/binding",
            &info.name,
            format!(
                "Operation cannot be fulfilled on pods/binding \"{}\": {why}",
                info.name
            ),
        )
    };
    if object.at("/metadata/deletionTimestamp").is_some() {
        return Err(refused(format!(
            "pod {} is being deleted, cannot be assigned to a host",
            info.name
        )));
    }
    if let Some(assigned) = object
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(refused(format!(
            "pod {} is already assigned to node {assigned:?}",
            info.name
        )));
    }
    if object
        .at("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        return Err(refused(format!(
            "pod {} has non-empty .spec.schedulingGates",
            info.name
        )));
    }
    let mut new = (**object).clone();
    new["spec"]["nodeName"] = json!(node);
    if let Some(annotations) = binding
        .at("/metadata/annotations")
        .and_then(Value::as_object)
        .filter(|a| !a.is_empty())
    {
        let md = objects::metadata_mut(&mut new)?;
        if let Some(into) = admission::ensure_object(md, "annotations") {
            into.extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    set_pod_scheduled(&mut new);
    state
        .store
        .update(&pod.key(), new, Some(current.mod_revision))
        .await
        .map_err(|e| store_error(info, &info.name, e))?;
    Ok(json(201, "application/json", success(info).to_string()))
}

/// Why a write whose UID precondition does not match the object failed.
fn uid_precondition_failed(precondition: &str, object: &str) -> String {
    format!(
        "Precondition failed: UID in precondition: {precondition}, UID in object meta: {object}"
    )
}

/// Sets the pod's `PodScheduled` condition to `True`, as upstream's
/// `UpdatePodCondition`: the transition time moves only when the status changes,
/// and the reason and message of an `Unschedulable` condition go.
fn set_pod_scheduled(pod: &mut Value) {
    let Some(status) = pod
        .as_object_mut()
        .and_then(|o| admission::ensure_object(o, "status"))
    else {
        return;
    };
    admission::default_value(status, "conditions", json!([]));
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    let old = conditions
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let since = old
        .map(|i| &conditions[i])
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(objects::now()));
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": since,
    });
    match old {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Eviction honours PodDisruptionBudgets as kube-apiserver does: a running pod
/// covered by a budget is evicted only while the budget allows a disruption,
/// which the eviction then uses up.
async fn check_disruption_budget(
    state: &ApiState,
    namespace: &str,
    pod: &Value,
) -> Result<(), ApiError> {
    let phase = pod
        .at("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if matches!(phase, "Pending" | "Succeeded" | "Failed")
        || pod.at("/metadata/deletionTimestamp").is_some()
    {
        return Ok(());
    }
    let prefix = format!("poddisruptionbudgets.policy/{namespace}/");
    let budgets = state
        .store
        .list(&crate::store::ListOptions {
            prefix,
            start_after: None,
            limit: None,
            revision: None,
        })
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let matching: Vec<Stored> = budgets
        .items
        .into_iter()
        .filter(|b| {
            // Upstream skips a budget whose selector is empty (it selects nothing here).
            b.object.at("/spec/selector").is_some_and(|sel| {
                !selector::is_empty(sel) && selector::matches(Some(sel), pod.at("/metadata/labels"))
            })
        })
        .collect();
    let budget = match matching.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    };
    let name = meta_str(&budget.object, "name").to_string();
    let refuse = |why: String| {
        ApiError::too_many_requests(
            format!("Cannot evict pod as it would violate the pod's disruption budget.{why}"),
            10,
        )
    };
    let int = |path: &str, default: i64| {
        budget
            .object
            .at(path)
            .and_then(Value::as_i64)
            .unwrap_or(default)
    };
    let generation = int("/metadata/generation", 1);
    let observed = int("/status/observedGeneration", 0);
    if observed < generation {
        return Err(refuse(format!(
            " The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = int("/status/disruptionsAllowed", 0);
    if allowed <= 0 {
        let desired = int("/status/desiredHealthy", 0);
        let current = int("/status/currentHealthy", 0);
        return Err(refuse(format!(
            " The disruption budget {name} needs {desired} healthy pods and has {current} currently"
        )));
    }
    let mut updated = (*budget.object).clone();
    updated["status"]["disruptionsAllowed"] = json!(allowed - 1);
    state
        .store
        .update(&budget.key, updated, Some(budget.mod_revision))
        .await
        .map_err(|_| ApiError::conflict("policy", "poddisruptionbudgets", &name))?;
    Ok(())
}

fn success(info: &RequestInfo) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": info.name, "group": info.resource.group, "kind": info.resource.plural }
    })
}

/// `DeleteOptions` from the body (JSON or protobuf) or the query string.
struct DeleteOptions {
    propagation: String,
    grace_period: Option<i64>,
    precondition_uid: String,
    precondition_rv: String,
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let from_body: Value = if body.is_empty() {
        json!({})
    } else if body.starts_with(b"k8s\0") {
        crate::protobuf::decode(body).map_err(ApiError::bad_request)?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("decoding DeleteOptions: {e}")))?
    };
    let get = |field: &str| -> Option<String> {
        from_body
            .get(field)
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .or_else(|| query.get(field).cloned())
    };
    let propagation = get("propagationPolicy").unwrap_or_default();
    if !matches!(
        propagation.as_str(),
        "" | "Background" | "Foreground" | "Orphan"
    ) {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {propagation:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
        )));
    }
    let orphan = from_body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
    let propagation = match (propagation.as_str(), orphan) {
        ("", Some(true)) => "Orphan".to_string(),
        _ => propagation,
    };
    let grace_period = match get("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        ),
        None => None,
    };
    Ok(DeleteOptions {
        propagation,
        grace_period,
        precondition_uid: from_body
            .at("/preconditions/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        precondition_rv: from_body
            .at("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

/// True for a Namespace whose `spec.finalizers` (the Namespace controller's
/// `kubernetes`) are not all gone: it stays Terminating until they are.
fn has_spec_finalizers(kind: &str, object: &Value) -> bool {
    kind == "Namespace"
        && object
            .at("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

/// True when some stored object names `uid` in its ownerReferences.
fn has_dependents(state: &ApiState, uid: &str) -> bool {
    if uid.is_empty() {
        return false;
    }
    state
        .store
        .list(&crate::store::ListOptions::default())
        .is_ok_and(|all| {
            all.items.iter().any(|s| {
                s.object
                    .at("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    })
            })
        })
}

async fn delete(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let r = info.resource;
    let opts = delete_options(query, body)?;
    let current = fetch(state, info)?;
    let object = &current.object;
    if !opts.precondition_uid.is_empty() && opts.precondition_uid != meta_str(object, "uid") {
        return Err(ApiError::conflict_message(
            r.group,
            r.plural,
            &info.name,
            uid_precondition_failed(&opts.precondition_uid, meta_str(object, "uid")),
        ));
    }
    if !opts.precondition_rv.is_empty() && opts.precondition_rv != current.mod_revision.to_string()
    {
        return Err(ApiError::conflict(r.group, r.plural, &info.name));
    }
    let mut finalizers: Vec<Value> = object
        .at("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let add = |f: &mut Vec<Value>, name: &str| {
        if !f.iter().any(|x| x == name) {
            f.push(json!(name));
        }
    };
    // Only Foreground and Orphan look for dependents: the scan reads every object.
    let dependents = || has_dependents(state, meta_str(object, "uid"));
    match opts.propagation.as_str() {
        "Foreground" if dependents() => add(&mut finalizers, "foregroundDeletion"),
        "Orphan" if dependents() => add(&mut finalizers, "orphan"),
        _ => {}
    }
    // Pods bound to a node are deleted gracefully: the kubelet finishes the delete.
    let bound = r.kind == "Pod"
        && object
            .at("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
    let grace = opts.grace_period.unwrap_or_else(|| {
        object
            .at("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    let graceful = bound && grace > 0;
    if finalizers.is_empty() && !graceful && !has_spec_finalizers(r.kind, object) {
        if dry_run {
            return Ok(json(200, "application/json", current.json.clone()));
        }
        let started = Instant::now();
        let deleted = state
            .store
            .delete(&info.key(), Some(current.mod_revision))
            .await
            .map_err(|e| store_error(info, &info.name, e));
        observe_storage(state, "delete", r, started);
        let deleted = deleted?;
        state.services.release(info, &deleted.object);
        return Ok(if matches!(r.kind, "Pod" | "Service") {
            json(200, "application/json", deleted.json)
        } else {
            let mut s = success(info);
            s["details"]["uid"] = json!(meta_str(object, "uid"));
            json(200, "application/json", s.to_string())
        });
    }
    if object.at("/metadata/deletionTimestamp").is_some() {
        return Ok(json(202, "application/json", current.json.clone()));
    }
    let mut new = (**object).clone();
    let md = metadata_mut(&mut new)?;
    md.insert("deletionTimestamp".into(), json!(objects::now()));
    md.insert(
        "deletionGracePeriodSeconds".into(),
        json!(if graceful { grace } else { 0 }),
    );
    md.insert("finalizers".into(), Value::Array(finalizers));
    if r.kind == "Namespace" {
        new["status"]["phase"] = json!("Terminating");
    }
    if dry_run {
        return Ok(json(202, "application/json", new.to_string()));
    }
    let stored = state
        .store
        .update(&info.key(), new, Some(current.mod_revision))
        .await
        .map_err(|e| store_error(info, &info.name, e))?;
    Ok(json(
        if graceful { 200 } else { 202 },
        "application/json",
        stored.json,
    ))
}

async fn delete_collection(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(info, query)?;
    let mut q = query.clone();
    q.remove("limit");
    q.remove("continue");
    let items = page(state, info, &q, &filter)?.items;
    for s in &items {
        let one = RequestInfo {
            verb: Verb::Delete,
            namespace: meta_str(&s.object, "namespace").to_string(),
            name: meta_str(&s.object, "name").to_string(),
            ..info.clone()
        };
        match delete(state, &one, query, body, dry_run).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let r = info.resource;
    Ok(json(200, "application/json", json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"group": r.group, "kind": r.plural}}).to_string()))
}
