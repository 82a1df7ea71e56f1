//! The audit log: one `audit.k8s.io/v1` `Event` per request, as kube-apiserver's log backend.
//!
//! Off unless `audit_log_path` is set. Every request still gets an audit ID, sent
//! back in the `Audit-Id` response header. A [`Record`] follows the request through
//! the handler chain (authenticated, routed, authorized, its body read) and becomes
//! the event when the response is ready: `ResponseComplete`, or `ResponseStarted`
//! for a watch (whose response is a stream). The policy ([`policy`]) decides the
//! level; the [`writer`] appends lines off the request path.

pub mod policy;
pub mod writer;

use std::net::SocketAddr;

use axum::body::{Body, HttpBody as _};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use kubernel_sdk::prometheus::IntCounter;
use serde_json::{json, Map, Value};

pub use policy::{Decision, Level, Policy};

use crate::auth::rbac::Attributes;
use crate::auth::UserInfo;
use crate::config::ApiServerConfig;
use crate::metrics::Metrics;
use writer::LogWriter;

/// The response header that carries a request's audit ID (upstream's name).
pub const AUDIT_ID_HEADER: &str = "Audit-Id";

/// Error bodies up to this size are read back for the event's `responseStatus`.
const STATUS_BODY_BYTES: u64 = 64 * 1024;

/// Response bodies up to this size are logged at `RequestResponse`; larger ones and
/// streams (watches, log follows) are not.
const RESPONSE_BODY_BYTES: u64 = 3 * 1024 * 1024;

/// The audit log of a running apiserver: its policy and writer.
#[derive(Debug)]
pub struct Auditor {
    policy: Option<Policy>,
    log: LogWriter,
    events: IntCounter,
}

impl Auditor {
    /// The auditor `config` asks for, or none when `audit_log_path` is unset; a bad
    /// policy or an unwritable log is an error naming the key and the file.
    pub fn start(config: &ApiServerConfig, metrics: &Metrics) -> Result<Option<Auditor>, String> {
        let Some(path) = &config.audit_log_path else {
            if let Some(policy) = &config.audit_policy_file {
                return Err(format!(
                    "config: key audit_policy_file: {} is set but audit_log_path is not; set both to turn the audit log on",
                    policy.display()
                ));
            }
            return Ok(None);
        };
        let policy = match &config.audit_policy_file {
            Some(file) => Some(Policy::load(file)?),
            None => None,
        };
        let log = LogWriter::open(
            path,
            config.audit_log_buffer_size,
            metrics.audit_errors.with_label_values(&["log"]),
        )?;
        tracing::info!(path = %path.display(), policy = ?config.audit_policy_file, "audit log on");
        Ok(Some(Auditor {
            policy,
            log,
            events: metrics.audit_events.clone(),
        }))
    }

    /// What to log of a request (every request at `Metadata` without a policy file).
    fn decide(&self, user: Option<&UserInfo>, attrs: &Attributes) -> Decision {
        match &self.policy {
            Some(p) => p.decide(user, attrs),
            None => Decision::at(Level::Metadata),
        }
    }
}

/// One request's audit event in the making.
#[derive(Debug)]
pub struct Record {
    /// The audit ID (a UUID), also in the `Audit-Id` response header.
    pub id: String,
    received: jiff::Timestamp,
    uri: String,
    method: String,
    user_agent: Option<String>,
    source_ips: Vec<String>,
    user: Option<UserInfo>,
    attrs: Option<Attributes>,
    api_version: String,
    decision: Option<Decision>,
    authorization: Option<(&'static str, String)>,
    request_object: Option<Value>,
}

impl Record {
    /// Starts the record of a request as it arrives.
    pub fn begin(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Record {
        Record {
            id: crate::objects::new_uid(),
            received: jiff::Timestamp::now(),
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()),
            method: method.as_str().to_ascii_lowercase(),
            user_agent: headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            source_ips: source_ips(headers, peer),
            user: None,
            attrs: None,
            api_version: String::new(),
            decision: None,
            authorization: None,
            request_object: None,
        }
    }

    /// The request's user is known.
    pub fn authenticated(&mut self, user: &UserInfo) {
        self.user = Some(user.clone());
    }

    /// The request is routed: what it asks (`api_version` empty for non-resource
    /// requests); the policy gives its level.
    pub fn routed(&mut self, auditor: Option<&Auditor>, attrs: &Attributes, api_version: &str) {
        self.decision = auditor.map(|a| a.decide(self.user.as_ref(), attrs));
        self.attrs = Some(attrs.clone());
        self.api_version = api_version.to_string();
    }

    /// The authorizers' decision, with the reason of the one that decided.
    pub fn authorized(&mut self, allowed: bool, reason: impl Into<String>) {
        let decision = if allowed { "allow" } else { "forbid" };
        self.authorization = Some((decision, reason.into()));
    }

    /// Whether the handler chain should read the body of this write for the record:
    /// at level `Request` and above (`requestObject`), and for a create at
    /// `Metadata` (the new object's name completes `objectRef`, as upstream).
    pub fn wants_body(&self) -> bool {
        let level = self.decision.as_ref().map_or(Level::None, |d| d.level);
        let verb = self.attrs.as_ref().map_or("", |a| a.verb.as_str());
        level >= Level::Request || (level == Level::Metadata && verb == "create")
    }

    /// The request body, as JSON.
    pub fn request_object(&mut self, mut object: Value) {
        if let Some(attrs) = &mut self.attrs {
            if attrs.name.is_empty() {
                if let Some(name) = object["metadata"]["name"].as_str() {
                    attrs.name = name.to_string();
                }
            }
        }
        let Some(decision) = &self.decision else {
            return;
        };
        if decision.level < Level::Request {
            return;
        }
        if decision.omit_managed_fields {
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        }
        self.request_object = Some(object);
    }

    /// Ends the record with the response: sets the `Audit-Id` header and, when the
    /// policy logs this request, queues its event.
    pub async fn finish(mut self, auditor: Option<&Auditor>, response: Response) -> Response {
        let mut response = response;
        if let Ok(id) = HeaderValue::from_str(&self.id) {
            response.headers_mut().insert(AUDIT_ID_HEADER, id);
        }
        let Some(auditor) = auditor else {
            return response;
        };
        let attrs = self.attrs.clone().unwrap_or_else(|| Attributes {
            verb: self.method.clone(),
            path: self.uri.split('?').next().unwrap_or("").to_string(),
            ..Attributes::default()
        });
        let decision = match self.decision.take() {
            Some(d) => d,
            None => auditor.decide(self.user.as_ref(), &attrs),
        };
        let stage = if attrs.verb == "watch" {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        if !decision.logs(stage) {
            return response;
        }
        let code = response.status().as_u16();
        let mut status = json!({ "metadata": {}, "code": code });
        let annotations = response.extensions_mut().remove::<Annotations>();
        // Read back a whole (not streamed) body: a failure's Status, and at
        // `RequestResponse` the response object.
        let limit = if decision.level >= Level::RequestResponse {
            RESPONSE_BODY_BYTES
        } else if code >= 400 {
            STATUS_BODY_BYTES
        } else {
            0
        };
        let mut response_object = None;
        if response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n > 0 && n <= limit)
        {
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, limit as usize)
                .await
                .unwrap_or_default();
            if let Ok(sent) = serde_json::from_slice::<Value>(&bytes) {
                if code >= 400 {
                    for key in ["status", "message", "reason", "details"] {
                        if let Some(v) = sent.get(key) {
                            status[key] = v.clone();
                        }
                    }
                }
                if decision.level >= Level::RequestResponse {
                    response_object = Some(sent);
                }
            }
            response = Response::from_parts(parts, Body::from(bytes));
        }
        let mut event = self.event(&attrs, &decision, stage, status);
        if let (Some(object), Value::Object(e)) = (response_object, &mut event) {
            e.insert("responseObject".into(), object);
        }
        if let (Some(Annotations(added)), Value::Object(e)) = (annotations, &mut event) {
            let all = e
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            for (key, value) in added {
                all[key] = json!(value);
            }
        }
        auditor.events.inc();
        auditor.log.write(event.to_string());
        response
    }

    /// The `audit.k8s.io/v1` `Event`.
    fn event(&self, attrs: &Attributes, decision: &Decision, stage: &str, status: Value) -> Value {
        let mut e = Map::new();
        e.insert("kind".into(), json!("Event"));
        e.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
        e.insert("level".into(), json!(decision.level.as_str()));
        e.insert("auditID".into(), json!(self.id));
        e.insert("stage".into(), json!(stage));
        e.insert("requestURI".into(), json!(self.uri));
        e.insert("verb".into(), json!(attrs.verb));
        let mut user = Map::new();
        if let Some(u) = &self.user {
            user.insert("username".into(), json!(u.name));
            if !u.uid.is_empty() {
                user.insert("uid".into(), json!(u.uid));
            }
            user.insert("groups".into(), json!(u.groups));
        }
        e.insert("user".into(), Value::Object(user));
        if !self.source_ips.is_empty() {
            e.insert("sourceIPs".into(), json!(self.source_ips));
        }
        if let Some(agent) = &self.user_agent {
            e.insert("userAgent".into(), json!(agent));
        }
        if !attrs.resource.is_empty() {
            let mut r = Map::new();
            r.insert("resource".into(), json!(attrs.resource));
            for (key, value) in [
                ("namespace", &attrs.namespace),
                ("name", &attrs.name),
                ("apiGroup", &attrs.group),
                ("apiVersion", &self.api_version),
                ("subresource", &attrs.subresource),
            ] {
                if !value.is_empty() {
                    r.insert(key.into(), json!(value));
                }
            }
            e.insert("objectRef".into(), Value::Object(r));
        }
        e.insert("responseStatus".into(), status);
        if decision.level >= Level::Request {
            if let Some(object) = &self.request_object {
                e.insert("requestObject".into(), object.clone());
            }
        }
        e.insert(
            "requestReceivedTimestamp".into(),
            json!(micro_time(self.received)),
        );
        e.insert(
            "stageTimestamp".into(),
            json!(micro_time(jiff::Timestamp::now())),
        );
        if let Some((decision, reason)) = &self.authorization {
            e.insert(
                "annotations".into(),
                json!({
                    "authorization.k8s.io/decision": decision,
                    "authorization.k8s.io/reason": reason,
                }),
            );
        }
        Value::Object(e)
    }
}

/// Annotations a handler adds to its request's audit event (admission's, such as
/// PodSecurity's `audit-violations`), carried to the log in the response's extensions.
#[derive(Debug, Clone)]
pub struct Annotations(pub Vec<(String, String)>);

/// A timestamp as `metav1.MicroTime` (RFC 3339 with microseconds, UTC).
fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The client's addresses as upstream lists them: `X-Forwarded-For`, then
/// `X-Real-Ip`, then the connection's peer (each once).
fn source_ips(headers: &HeaderMap, peer: Option<SocketAddr>) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    let mut add = |ip: &str| {
        let ip = ip.trim();
        if ip.parse::<std::net::IpAddr>().is_ok() && !ips.iter().any(|i| i == ip) {
            ips.push(ip.to_string());
        }
    };
    if let Some(list) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        list.split(',').for_each(&mut add);
    }
    if let Some(ip) = headers.get("x-real-ip").and_then(|v| v.to_str().ok()) {
        add(ip);
    }
    if let Some(peer) = peer {
        add(&peer.ip().to_string());
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_should_make_an_upstream_event() {
        let uri: Uri = "/api/v1/namespaces/a/configmaps?fieldManager=kubectl-create"
            .parse()
            .expect("uri");
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("kubectl/v1.33.1"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.9, bad"));
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut r = Record::begin(&Method::POST, &uri, &headers, Some(peer));
        r.authenticated(&UserInfo {
            name: "alice".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
            extra: Vec::new(),
            bus: false,
        });
        let attrs = Attributes {
            verb: "create".into(),
            resource: "configmaps".into(),
            namespace: "a".into(),
            name: "c1".into(),
            ..Attributes::default()
        };
        r.decision = Some(Decision {
            level: Level::Request,
            omit_stages: Vec::new(),
            omit_managed_fields: true,
        });
        r.attrs = Some(attrs.clone());
        r.api_version = "v1".into();
        r.authorized(true, "RBAC: allowed");
        r.request_object(json!({"metadata": {"name": "c1", "managedFields": []}}));
        let d = r.decision.clone().expect("decision");
        let e = r.event(
            &attrs,
            &d,
            "ResponseComplete",
            json!({"metadata": {}, "code": 201}),
        );
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["level"], "Request");
        assert_eq!(e["auditID"].as_str().map(str::len), Some(36));
        assert_eq!(e["requestURI"], uri.to_string());
        assert_eq!(e["verb"], "create");
        assert_eq!(e["user"]["username"], "alice");
        assert_eq!(e["sourceIPs"], json!(["10.0.0.9", "127.0.0.1"]));
        assert_eq!(e["userAgent"], "kubectl/v1.33.1");
        assert_eq!(
            e["objectRef"],
            json!({"resource": "configmaps", "namespace": "a", "name": "c1", "apiVersion": "v1"})
        );
        assert_eq!(e["responseStatus"]["code"], 201);
        assert_eq!(e["requestObject"], json!({"metadata": {"name": "c1"}}));
        assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
        let ts = e["stageTimestamp"].as_str().expect("timestamp");
        assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
    }
}
