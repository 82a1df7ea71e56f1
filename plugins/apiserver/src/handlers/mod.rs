//! The HTTP entry point: discovery, OpenAPI, and resource requests through the handler chain.
//!
//! Every request goes: authentication -> routing -> authorization -> limits
//! (in-flight, body size) -> admission (defaults, validation) -> storage.

mod log;
mod read;
mod token;
mod watch;
mod write;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use kubernel_sdk::CancellationToken;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::allocator::ServiceAllocator;
use crate::audit::Record;
use crate::auth::rbac::{self, Attributes, Modes};
use crate::auth::{Caller, TokenFile, UserInfo};
use crate::config::ApiServerConfig;
use crate::metrics::Metrics;
use crate::negotiate::{self, json};
use crate::request::{route, RequestInfo, Verb};
use crate::status::ApiError;
use crate::store::Store;
use crate::{discovery, openapi};

/// What every handler shares.
pub struct ApiState {
    /// The object store.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub config: ApiServerConfig,
    /// Cancelled when the apiserver stops: ends watches.
    pub shutdown: CancellationToken,
    /// Cluster IPs and node ports held by Services.
    pub services: ServiceAllocator,
    /// Bearer tokens and authorizers.
    pub auth: AuthSettings,
    /// The audit log, when on.
    pub audit: Option<crate::audit::Auditor>,
    /// The admission plugins that run.
    pub admission: crate::admission::AdmissionPlugins,
    readonly: Semaphore,
    mutating: Semaphore,
    /// API Priority and Fairness, in place of the two limits above when enabled.
    flow_control: Option<crate::flowcontrol::FlowControl>,
    decoders: Semaphore,
}

/// How requests are authenticated and authorized.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The static token file's tokens.
    pub tokens: TokenFile,
    /// The configured authorizers.
    pub modes: Modes,
    /// Whether requests without credentials are served as `system:anonymous`.
    pub anonymous: bool,
    /// Signs and checks service-account tokens (absent in unit tests).
    pub service_accounts: Option<Arc<crate::auth::serviceaccount::TokenIssuer>>,
    /// The ABAC policy, when `ABAC` is a mode.
    pub abac: Option<Arc<crate::auth::abac::PolicyList>>,
    /// How the apiserver calls kubelet APIs (`pods/log`): TLS with its
    /// `apiserver-kubelet-client` certificate (absent in unit tests: plain HTTP).
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
}

impl ApiState {
    /// Shared state for a server over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Metrics,
        config: ApiServerConfig,
        shutdown: CancellationToken,
    ) -> Self {
        ApiState {
            readonly: Semaphore::new(config.max_requests_inflight.max(1)),
            mutating: Semaphore::new(config.max_mutating_requests_inflight.max(1)),
            flow_control: config.enable_priority_and_fairness.then(|| {
                crate::flowcontrol::FlowControl::new(
                    config.max_requests_inflight + config.max_mutating_requests_inflight,
                    config.flow_control_queue_wait,
                    &metrics.flow_control,
                )
            }),
            decoders: Semaphore::new(decoder_threads()),
            services: ServiceAllocator::new(
                config.service_cluster_ip_range,
                config.service_node_port_range,
            ),
            store,
            metrics,
            config,
            shutdown,
            auth: AuthSettings::default(),
            audit: None,
            admission: crate::admission::AdmissionPlugins::default(),
        }
    }
}

/// How many request bodies are decoded on the blocking pool at once: all
/// cores but one, so a flood of heavy bodies leaves a core to the async workers.
fn decoder_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// Bodies at least this large are decoded off the async workers even when JSON or protobuf.
const LARGE_BODY_BYTES: usize = 256 * 1024;

/// Whether decoding a body costs enough to move it off the async workers:
/// YAML (`yaml`) or a large body.
pub(crate) fn heavy_body(yaml: bool, body: &[u8]) -> bool {
    yaml || body.len() >= LARGE_BODY_BYTES
}

/// Runs `decode` on the blocking pool when `heavy` (at most [`decoder_threads`]
/// at once; the others wait without holding a worker), inline otherwise, so
/// one slow body never stalls the runtime's workers and the requests they serve.
pub(crate) async fn decode_off_workers<T: Send + 'static>(
    state: &ApiState,
    heavy: bool,
    decode: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if !heavy {
        return decode();
    }
    let _slot = state
        .decoders
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the apiserver is stopping"))?;
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| ApiError::internal(format!("decoding the request body: {e}")))?
}

/// Query parameters, first value of each.
pub type Query = HashMap<String, String>;

fn parse_query(uri: &Uri) -> Query {
    let mut q = HashMap::new();
    if let Some(raw) = uri.query() {
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            q.entry(decode(k)).or_insert_with(|| decode(v));
        }
    }
    q
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The single handler every path goes through; its audit record ends with the response.
pub async fn dispatch(
    State(state): State<Arc<ApiState>>,
    caller: Option<axum::Extension<Caller>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = caller.map_or(Caller::Tls(None), |c| c.0);
    let mut audit = Record::begin(&method, &uri, &headers, peer.map(|p| p.0 .0));
    let response = serve(
        state.clone(),
        caller,
        method,
        uri,
        headers,
        body,
        &mut audit,
    )
    .await;
    audit.finish(state.audit.as_ref(), response).await
}

/// Authentication, routing, authorization and the handler of one request.
async fn serve(
    state: Arc<ApiState>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    audit: &mut Record,
) -> Response {
    let accounts = state
        .auth
        .service_accounts
        .as_deref()
        .map(|issuer| (issuer, state.store.as_ref()));
    let user = match crate::auth::authenticate(
        &caller,
        &headers,
        &state.auth.tokens,
        accounts,
        state.auth.anonymous,
    ) {
        Ok(user) => {
            if !matches!(caller, Caller::Bus(_)) {
                let m = &state.metrics;
                m.authentication_attempts
                    .with_label_values(&["success"])
                    .inc();
                m.authenticated_user_requests
                    .with_label_values(&[crate::metrics::compress_username(&user.name)])
                    .inc();
            }
            audit.authenticated(&user);
            user
        }
        Err(e) => {
            state
                .metrics
                .authentication_attempts
                .with_label_values(&["failure"])
                .inc();
            tracing::info!(reason = %e.0, path = uri.path(), "request refused: Unauthorized");
            return negotiate::error(&ApiError::unauthorized());
        }
    };
    let path = uri.path().trim_end_matches('/');
    let query = parse_query(&uri);
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let resource_parts = match parts.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => Some(("", *v, rest)),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => Some((*g, *v, rest)),
        _ => None,
    };
    let Some((group, version, rest)) = resource_parts else {
        let attrs = Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            ..Attributes::default()
        };
        audit.routed(state.audit.as_ref(), &attrs, "");
        if let Err(e) = authorize(&state, &user, &attrs, audit) {
            return negotiate::error(&e);
        }
        if let Some(resp) = non_resource(path, &headers) {
            return resp;
        }
        return negotiate::error(&ApiError::not_found("", "", "").with_message(format!(
            "the server could not find the requested resource ({} {})",
            method,
            uri.path()
        )));
    };
    if group == "authentication.k8s.io" && rest == ["selfsubjectreviews"] {
        return self_subject_review(&state, &user, &method, audit);
    }
    if group == "authentication.k8s.io" && rest == ["tokenreviews"] {
        return token_review(&state, &user, &method, body, audit).await;
    }
    if group == "authorization.k8s.io" {
        let review = match rest {
            ["selfsubjectaccessreviews"] => Some((Review::SelfSubject, None)),
            ["selfsubjectrulesreviews"] => Some((Review::SelfRules, None)),
            ["subjectaccessreviews"] => Some((Review::Subject, None)),
            ["namespaces", ns, "localsubjectaccessreviews"] => Some((Review::Subject, Some(*ns))),
            _ => None,
        };
        if let Some((review, namespace)) = review {
            return access_review(&state, &user, &method, review, namespace, body, audit).await;
        }
    }
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let info = match route(&method, group, version, rest, watch) {
        Ok(i) => i,
        Err(e) => return negotiate::error(&e),
    };
    let attrs = Attributes {
        verb: info.verb.as_str().to_string(),
        group: info.resource.group.to_string(),
        resource: info.resource.plural.to_string(),
        subresource: info.subresource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        path: String::new(),
    };
    audit.routed(state.audit.as_ref(), &attrs, info.resource.version);
    let started = Instant::now();
    if let Err(e) = authorize(&state, &user, &attrs, audit) {
        let response = negotiate::error(&e);
        record(&state, &info, response.status().as_u16(), started);
        return response;
    }
    let body = if escalation_checked(&info) {
        match check_escalation(&state, &user, &attrs, &info, &headers, body).await {
            Ok(body) => body,
            Err(e) => {
                let response = negotiate::error(&e);
                record(&state, &info, response.status().as_u16(), started);
                return response;
            }
        }
    } else {
        body
    };
    let body = match node_restriction(&state, &user, &info, &headers, body).await {
        Ok(body) => body,
        Err(e) => {
            let response = negotiate::error(&e);
            record(&state, &info, response.status().as_u16(), started);
            return response;
        }
    };
    let body = match audit_request_object(&state, &info, &headers, body, audit).await {
        Ok(body) => body,
        Err(e) => {
            let response = negotiate::error(&e);
            record(&state, &info, response.status().as_u16(), started);
            return response;
        }
    };
    let span = request_span(&info, &headers);
    let response = if crate::limits::long_running(&info, &query) {
        handle(&state, &info, &query, &headers, body, &user)
            .instrument(span.clone())
            .await
    } else {
        let job = (info.clone(), query, headers, body, user);
        handle_within_timeout(&state, job, span.clone()).await
    };
    let code = response.status().as_u16();
    span.record("code", code);
    record(&state, &info, code, started);
    response
}

/// Runs the handler as a task of its own and answers 504 once the request timeout
/// passes; the task goes on to the end (its write lands, its in-flight slot is held).
async fn handle_within_timeout(
    state: &Arc<ApiState>,
    (info, query, headers, body, user): (RequestInfo, Query, HeaderMap, Body, UserInfo),
    span: tracing::Span,
) -> Response {
    let limit = crate::limits::request_timeout(&state.config, &query);
    let task_state = state.clone();
    let task = tokio::spawn(
        async move { handle(&task_state, &info, &query, &headers, body, &user).await }
            .instrument(span),
    );
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => negotiate::error(&ApiError::internal(format!(
            "the request handler failed: {e}"
        ))),
        Err(_) => negotiate::error(&crate::limits::timed_out()),
    }
}

/// Reads the body of a write the audit record wants (its `requestObject`, or the
/// name of a created object), decoded to JSON from any accepted media type; the
/// body to handle.
async fn audit_request_object(
    state: &ApiState,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: Body,
    audit: &mut Record,
) -> Result<Body, ApiError> {
    if !audit.wants_body() || !info.verb.is_mutating() {
        return Ok(body);
    }
    let bytes = read_body(state, body).await?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let object = match info.verb {
        Verb::Create | Verb::Update => {
            crate::admission::parse_body(info.resource, content_type, &bytes).ok()
        }
        _ => None,
    };
    // A body that does not parse is answered by the write path; patches and delete
    // options are logged when they are JSON.
    if let Some(object) = object.or_else(|| serde_json::from_slice(&bytes).ok()) {
        audit.request_object(object);
    }
    Ok(Body::from(bytes))
}

/// The span of one API request (exported when OTLP is on), a child of the caller's
/// span when the request carries a W3C `traceparent` header.
fn request_span(info: &RequestInfo, headers: &HeaderMap) -> tracing::Span {
    let r = info.resource;
    let verb = info.verb.metrics_name();
    let span = tracing::info_span!(
        "api_request",
        otel.name = %format_args!("{verb} {}", r.plural),
        otel.kind = "server",
        verb,
        group = r.group,
        version = r.version,
        resource = r.plural,
        subresource = info.subresource.as_str(),
        namespace = info.namespace.as_str(),
        name = info.name.as_str(),
        code = tracing::field::Empty,
    );
    if let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        kubernel_sdk::set_remote_parent(&span, parent);
    }
    span
}

/// NodeRestriction for what the Node authorizer lets through without seeing the
/// body: a node identity may create only the Node and the `kube-node-lease` Lease
/// named after itself; on its Node it may not set labels reserved to the cluster
/// (`node-restriction.kubernetes.io/`, and `kubernetes.io`/`k8s.io` ones beyond
/// the kubelet's own), nor change taints after creating it. The body to handle.
async fn node_restriction(
    state: &ApiState,
    user: &UserInfo,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: Body,
) -> Result<Body, ApiError> {
    let r = info.resource;
    let node_object = r.group.is_empty() && r.plural == "nodes";
    let restricted = state.auth.modes.node
        && state.admission.enabled("NodeRestriction")
        && !user.bus
        && !user.in_group(crate::auth::MASTERS)
        && match info.verb {
            Verb::Create => {
                info.subresource.is_empty()
                    && (node_object || (r.group == "coordination.k8s.io" && r.plural == "leases"))
            }
            Verb::Update | Verb::Patch => node_object,
            _ => false,
        };
    let Some(node) = crate::auth::node::node_name(user).filter(|_| restricted) else {
        return Ok(body);
    };
    let bytes = read_body(state, body).await?;
    let Some(object) = written_object(state, info, headers, &bytes) else {
        return Ok(Body::from(bytes));
    };
    let name = object["metadata"]["name"].as_str().unwrap_or(&info.name);
    let forbid = |message: String| ApiError::forbidden(r.group, r.plural, name, message);
    if info.verb == Verb::Create && name != node {
        return Err(forbid(if node_object {
            format!(
                "nodes {name:?} is forbidden: node {node:?} is not allowed to modify node {name:?}"
            )
        } else {
            format!("leases.coordination.k8s.io {name:?} is forbidden: can only access node lease with the same name as the requesting node")
        }));
    }
    if !node_object {
        return Ok(Body::from(bytes));
    }
    let labels = &object["metadata"]["labels"];
    if info.verb == Verb::Create {
        let set = crate::auth::node::forbidden_labels(labels, &serde_json::Value::Null);
        if !set.is_empty() {
            return Err(forbid(format!(
                "nodes {name:?} is forbidden: node {node:?} is not allowed to set the following labels: {}",
                set.join(", ")
            )));
        }
        return Ok(Body::from(bytes));
    }
    // An update of its own Node (the Node authorizer refused the others).
    if let Ok(Some(current)) = state.store.get(&info.key()) {
        let old = &current.object;
        let changed = crate::auth::node::forbidden_labels(labels, &old["metadata"]["labels"]);
        if !changed.is_empty() {
            return Err(forbid(format!(
                "nodes {name:?} is forbidden: node {node:?} is not allowed to modify labels: {}",
                changed.join(", ")
            )));
        }
        let taints =
            |o: &serde_json::Value| o["spec"]["taints"].as_array().cloned().unwrap_or_default();
        if info.subresource.is_empty() && taints(&object) != taints(old) {
            return Err(forbid(format!(
                "nodes {name:?} is forbidden: node {node:?} is not allowed to modify taints"
            )));
        }
    }
    Ok(Body::from(bytes))
}

/// Creates and replacements of RBAC roles and bindings: checked for escalation.
fn escalation_checked(info: &RequestInfo) -> bool {
    info.resource.group == "rbac.authorization.k8s.io"
        && info.subresource.is_empty()
        && matches!(info.verb, Verb::Create | Verb::Update | Verb::Patch)
}

/// Reads the body of a role or binding write and refuses a grant the user does not
/// hold; the body to handle.
async fn check_escalation(
    state: &ApiState,
    user: &UserInfo,
    attrs: &Attributes,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: Body,
) -> Result<Body, ApiError> {
    if user.in_group(crate::auth::MASTERS) || user.bus {
        return Ok(body);
    }
    let bytes = read_body(state, body).await?;
    if let Some(object) = written_object(state, info, headers, &bytes) {
        rbac::check_escalation(state.store.as_ref(), state.auth.modes, user, attrs, &object)?;
    }
    Ok(Body::from(bytes))
}

/// The object a create, update or patch would write, for the checks that look at
/// it before the write path; `None` when the body does not parse or the patch does
/// not apply (the write path answers those).
fn written_object(
    state: &ApiState,
    info: &RequestInfo,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Option<serde_json::Value> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if info.verb == Verb::Patch {
        patched(state, info, content_type, bytes)
    } else {
        crate::admission::parse_body(info.resource, content_type, bytes).ok()
    }
}

/// The object a PATCH would leave (for apply, also one it would create).
fn patched(
    state: &ApiState,
    info: &RequestInfo,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Option<serde_json::Value> {
    let patch_type = crate::patch::PatchType::from_content_type(content_type?)?;
    let current = state.store.get(&info.key()).ok()?;
    let original = match current {
        Some(stored) => (*stored.object).clone(),
        None if patch_type == crate::patch::PatchType::Apply => serde_json::json!({}),
        None => return None,
    };
    crate::patch::apply_patch(
        info.resource.kind,
        &original,
        patch_type,
        bytes,
        "escalation-check",
        true,
    )
    .ok()
}

/// Runs the authorizers, counting the decision and noting it in the audit record;
/// the 403 to answer when denied.
fn authorize(
    state: &ApiState,
    user: &UserInfo,
    attrs: &Attributes,
    audit: &mut Record,
) -> Result<(), ApiError> {
    let mut result = rbac::authorize(state.store.as_ref(), state.auth.modes, user, attrs);
    let reason = match &state.auth.abac {
        Some(abac) => abac.after(&mut result, user, attrs),
        None => String::new(),
    };
    audit.authorized(result.is_ok(), reason);
    let decision = if result.is_ok() { "allowed" } else { "denied" };
    state
        .metrics
        .authorization_decisions
        .with_label_values(&[decision])
        .inc();
    if let Err(e) = &result {
        tracing::debug!(user = %user.name, groups = ?user.groups, reason = %e.message, "request forbidden");
    }
    result
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`):
/// the caller's user as authenticated; the request body carries nothing to read.
fn self_subject_review(
    state: &ApiState,
    user: &UserInfo,
    method: &Method,
    audit: &mut Record,
) -> Response {
    let review = ("authentication.k8s.io", "selfsubjectreviews", None);
    if let Err(refused) = admit_review(state, user, method, review, audit) {
        return refused;
    }
    let review = serde_json::json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "creationTimestamp": null },
        "status": { "userInfo": user_info(user) },
    });
    json(201, "application/json", review.to_string())
}

/// What every review API (`selfsubjectreviews`, `tokenreviews`, the access
/// reviews) checks first: the method is POST and the user may `create` the review
/// `(group, resource, namespace)`, which the audit record notes. The answer to
/// send otherwise.
fn admit_review(
    state: &ApiState,
    user: &UserInfo,
    method: &Method,
    (group, resource, namespace): (&str, &str, Option<&str>),
    audit: &mut Record,
) -> Result<(), Response> {
    if method != Method::POST {
        return Err(negotiate::error(&ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {resource})"
        ))));
    }
    let attrs = Attributes {
        verb: "create".into(),
        group: group.into(),
        resource: resource.into(),
        namespace: namespace.unwrap_or_default().to_string(),
        ..Attributes::default()
    };
    audit.routed(state.audit.as_ref(), &attrs, "v1");
    authorize(state, user, &attrs, audit).map_err(|e| negotiate::error(&e))
}

/// A user as `authentication.k8s.io/v1` `UserInfo`.
fn user_info(user: &UserInfo) -> serde_json::Value {
    let mut info = serde_json::json!({ "username": user.name, "groups": user.groups });
    if !user.uid.is_empty() {
        info["uid"] = serde_json::json!(user.uid);
    }
    if !user.extra.is_empty() {
        let mut extra = serde_json::Map::new();
        for (k, v) in &user.extra {
            extra.insert(k.clone(), serde_json::json!([v]));
        }
        info["extra"] = serde_json::Value::Object(extra);
    }
    info
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: who a bearer token is, as
/// this apiserver's authenticators (static tokens, bootstrap and service-account
/// tokens) see it; for webhook authenticators and the kubelet's delegated
/// authentication. Needs `create` on `tokenreviews` (`system:auth-delegator`).
async fn token_review(
    state: &Arc<ApiState>,
    user: &UserInfo,
    method: &Method,
    body: Body,
    audit: &mut Record,
) -> Response {
    let review = ("authentication.k8s.io", "tokenreviews", None);
    if let Err(refused) = admit_review(state, user, method, review, audit) {
        return refused;
    }
    let bytes = match read_body(state, body).await {
        Ok(b) => b,
        Err(e) => return negotiate::error(&e),
    };
    let review: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return negotiate::error(&ApiError::bad_request(format!(
                "TokenReview: the body is not JSON: {e}"
            )))
        }
    };
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        return negotiate::error(&ApiError::invalid(
            "authentication.k8s.io",
            "TokenReview",
            "",
            vec![crate::status::Cause::required("spec.token")],
        ));
    }
    let mut headers = HeaderMap::new();
    let status = match axum::http::HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(v) => {
            headers.insert(axum::http::header::AUTHORIZATION, v);
            let accounts = state
                .auth
                .service_accounts
                .as_deref()
                .map(|issuer| (issuer, state.store.as_ref()));
            crate::auth::authenticate(
                &crate::auth::Caller::Tls(None),
                &headers,
                &state.auth.tokens,
                accounts,
                false,
            )
            .map_err(|e| e.0)
        }
        Err(_) => Err("a token that is not a valid header value".to_string()),
    };
    let status = match status {
        Ok(who) => serde_json::json!({ "authenticated": true, "user": user_info(&who) }),
        Err(reason) => {
            tracing::info!(reason = %reason, "TokenReview: token not authenticated");
            serde_json::json!({ "authenticated": false, "user": {}, "error": "invalid bearer token" })
        }
    };
    let answer = serde_json::json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "creationTimestamp": null },
        "spec": review["spec"],
        "status": status,
    });
    json(201, "application/json", answer.to_string())
}

/// Which access review a request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Review {
    /// `selfsubjectaccessreviews` (`kubectl auth can-i`): may I.
    SelfSubject,
    /// `subjectaccessreviews`, or `localsubjectaccessreviews` in a namespace: may the
    /// user the spec names.
    Subject,
    /// `selfsubjectrulesreviews` (`kubectl auth can-i --list`): what may I.
    SelfRules,
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`,
/// `.../selfsubjectrulesreviews`, `.../subjectaccessreviews` and
/// `.../namespaces/<ns>/localsubjectaccessreviews`.
async fn access_review(
    state: &Arc<ApiState>,
    user: &UserInfo,
    method: &Method,
    review: Review,
    namespace: Option<&str>,
    body: Body,
    audit: &mut Record,
) -> Response {
    let resource = match (review, namespace) {
        (Review::SelfSubject, _) => "selfsubjectaccessreviews",
        (Review::SelfRules, _) => "selfsubjectrulesreviews",
        (Review::Subject, None) => "subjectaccessreviews",
        (Review::Subject, Some(_)) => "localsubjectaccessreviews",
    };
    let target = ("authorization.k8s.io", resource, namespace);
    if let Err(refused) = admit_review(state, user, method, target, audit) {
        return refused;
    }
    let (store, modes) = (state.store.as_ref(), state.auth.modes);
    let result = match read_body(state, body).await {
        Ok(bytes) if review == Review::SelfSubject => {
            rbac::self_subject_access_review(store, modes, user, &bytes)
        }
        Ok(bytes) if review == Review::SelfRules => {
            let abac = state.auth.abac.is_some();
            rbac::self_subject_rules_review(store, modes, abac, user, &bytes)
        }
        Ok(bytes) => rbac::subject_access_review(store, modes, namespace, &bytes),
        Err(e) => Err(e),
    };
    match result {
        Ok(mut answer) => {
            if let (Some(abac), false) = (&state.auth.abac, review == Review::SelfRules) {
                let subject = match review {
                    Review::Subject => rbac::review_subject(&answer),
                    _ => user.clone(),
                };
                abac.review(&subject, &mut answer);
            }
            json(201, "application/json", answer.to_string())
        }
        Err(e) => negotiate::error(&e),
    }
}

fn record(state: &ApiState, info: &RequestInfo, code: u16, started: Instant) {
    let r = info.resource;
    let labels = [
        info.verb.metrics_name(),
        r.group,
        r.version,
        r.plural,
        info.subresource.as_str(),
        info.scope(),
        "apiserver",
    ];
    let code = code.to_string();
    let mut with_code = labels.to_vec();
    with_code.push(&code);
    state.metrics.requests.with_label_values(&with_code).inc();
    if info.verb != Verb::Watch {
        state
            .metrics
            .request_duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Discovery, OpenAPI and health endpoints.
fn non_resource(path: &str, headers: &HeaderMap) -> Option<Response> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let aggregated = discovery::wants_aggregated(accept);
    let ok_json = |v: serde_json::Value| json(200, "application/json", v.to_string());
    Some(match path {
        "/version" => ok_json(discovery::version()),
        "/api" if aggregated => json(
            200,
            discovery::AGGREGATED_CONTENT_TYPE,
            discovery::aggregated(true).to_string(),
        ),
        "/api" => ok_json(discovery::api_versions()),
        "/apis" if aggregated => json(
            200,
            discovery::AGGREGATED_CONTENT_TYPE,
            discovery::aggregated(false).to_string(),
        ),
        "/apis" => ok_json(discovery::api_group_list()),
        "/api/v1" => ok_json(discovery::resource_list("", "v1")?),
        "/openapi/v3" => ok_json(openapi::index()),
        "/healthz" | "/livez" | "/readyz" => json(200, "text/plain; charset=utf-8", "ok"),
        _ => {
            if let Some(gv) = path.strip_prefix("/openapi/v3/") {
                let parts: Vec<&str> = gv.split('/').collect();
                let doc = match parts.as_slice() {
                    ["api", v] => openapi::group_version_document("", v),
                    ["apis", g, v] => openapi::group_version_document(g, v),
                    _ => None,
                };
                return Some(match doc {
                    Some(d) => ok_json(d),
                    None => negotiate::error(
                        &ApiError::not_found("", "", "")
                            .with_message(format!("no OpenAPI document for {gv}")),
                    ),
                });
            }
            let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            match parts.as_slice() {
                ["apis", g] => match discovery::api_group(g) {
                    Some(d) => ok_json(d),
                    None => negotiate::error(&ApiError::not_found("", "", "").with_message(format!("the server could not find the requested resource (group {g})"))),
                },
                ["apis", g, v] => match discovery::resource_list(g, v) {
                    Some(d) => ok_json(d),
                    None => negotiate::error(&ApiError::not_found("", "", "").with_message(format!("the server could not find the requested resource (group-version {g}/{v})"))),
                },
                _ => return None,
            }
        }
    })
}

async fn handle(
    state: &Arc<ApiState>,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
    user: &UserInfo,
) -> Response {
    if info.verb == Verb::Get && info.subresource == "log" {
        return log::proxy(state, info, query)
            .await
            .unwrap_or_else(|e| negotiate::error(&e));
    }
    let seat = match take_seat(state, info, user).await {
        Ok(seat) => seat,
        Err(e) => return negotiate::error(&e),
    };
    let kind = if info.verb.is_mutating() {
        "mutating"
    } else {
        "readOnly"
    };
    let gauge = state.metrics.inflight.with_label_values(&[kind]);
    gauge.inc();
    let result = match info.verb {
        Verb::Get => read::get(state, info, query, headers),
        Verb::List => read::list(state, info, query, headers).await,
        Verb::Watch => watch::watch(state.clone(), info, query, headers),
        _ => match read_body(state, body).await {
            Ok(bytes) => write::mutate(state, info, query, headers, bytes, user).await,
            Err(e) => Err(e),
        },
    };
    gauge.dec();
    drop(seat);
    match result {
        Ok(resp) => resp,
        Err(e) => negotiate::error(&e),
    }
}

/// What a running request holds of the apiserver's concurrency, given back when dropped.
enum Seat<'a> {
    /// A seat of its priority level (API Priority and Fairness).
    Level { _held: crate::flowcontrol::Seat },
    /// A slot of the read-only or mutating in-flight limit.
    InFlight {
        _held: tokio::sync::SemaphorePermit<'a>,
    },
}

/// The request's seat, waiting for one under API Priority and Fairness; `None`
/// for a watch, which runs for minutes and takes none. 429 when refused.
async fn take_seat<'a>(
    state: &'a ApiState,
    info: &RequestInfo,
    user: &UserInfo,
) -> Result<Option<Seat<'a>>, ApiError> {
    if info.verb == Verb::Watch {
        return Ok(None);
    }
    if let Some(flow) = &state.flow_control {
        let schema = crate::flowcontrol::FlowSchema::classify(user, info);
        return flow
            .admit(schema)
            .await
            .map(|s| Some(Seat::Level { _held: s }));
    }
    let limit = if info.verb.is_mutating() {
        &state.mutating
    } else {
        &state.readonly
    };
    limit
        .try_acquire()
        .map(|p| Some(Seat::InFlight { _held: p }))
        .map_err(|_| crate::flowcontrol::too_many_requests())
}

/// Observes one store call in `etcd_request_duration_seconds{operation,type}`.
pub(crate) fn observe_storage(
    state: &ApiState,
    operation: &str,
    r: &kubernel_api::resources::Resource,
    started: Instant,
) {
    state
        .metrics
        .storage_duration
        .with_label_values(&[operation, &r.qualified_plural()])
        .observe(started.elapsed().as_secs_f64());
}

async fn read_body(state: &ApiState, body: Body) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let limit = state.config.max_request_body_bytes;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        total += chunk.len();
        if total <= limit {
            buf.extend_from_slice(&chunk);
        } else if total > limit.saturating_mul(16) {
            // Past this, stop draining: the client gets the 413 or a closed connection.
            break;
        }
    }
    // An oversized body is drained (up to 16 times the limit) before answering, so the
    // client reads the 413 instead of a broken pipe.
    if total > limit {
        return Err(ApiError::too_large(format!(
            "Request entity too large: limit is {limit}"
        )));
    }
    state.metrics.body_size.observe(total as f64);
    Ok(Bytes::from(buf))
}
