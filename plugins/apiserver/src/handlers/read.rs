//! GET and LIST: one object, or a filtered, paginated collection, as JSON or a Table.

use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use kubernel_api::resources::table;
use serde_json::{json, Value};

use super::{ApiState, Query};
use crate::negotiate::{self, json, Output, TABLE_CONTENT_TYPE};
use crate::request::RequestInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause};
use crate::store::{ListOptions, StoreError, Stored};

/// Reads one object.
pub fn get(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, query.get("includeObject").map(String::as_str))?;
    let stored = fetch(state, info)?;
    if info.subresource == "scale" {
        return Ok(json(
            200,
            "application/json",
            super::write::to_scale(info, &stored.object)?.to_string(),
        ));
    }
    Ok(match output {
        Output::Json => json(200, "application/json", stored.json.clone()),
        Output::Table(include) => {
            let rv = stored.mod_revision.to_string();
            let t = table::table(
                info.resource,
                &[stored.object.as_ref()],
                include,
                &rv,
                "",
                None,
                jiff::Timestamp::now(),
            );
            json(200, TABLE_CONTENT_TYPE, t.to_string())
        }
    })
}

/// The stored object named by the request, or 404.
pub fn fetch(state: &ApiState, info: &RequestInfo) -> Result<Stored, ApiError> {
    let r = info.resource;
    let started = std::time::Instant::now();
    let found = state.store.get(&info.key());
    super::observe_storage(state, "get", r, started);
    found
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(r.group, r.plural, &info.name))
}

/// A continue token, as upstream encodes it: base64 of
/// `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key>\u0000"}`. The later pages
/// are read at `rv`, the revision of the first page; `rv` -1 (the token of an
/// expired list's 410) continues at the current revision.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

/// The token continuing a list at `rv` (-1: the current revision) after `last_key`.
fn encode_continue(rv: i64, last_key: &str) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: format!("{last_key}\u{0}"),
    };
    base64::engine::general_purpose::STANDARD.encode(json!(token).to_string())
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad(&format!("{token:?} is not base64")))?;
    let t: ContinueToken = serde_json::from_slice(&raw)
        .map_err(|_| bad(&format!("{token:?} is not a continue token")))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad(&format!(
            "server does not recognize this encoded key version {:?}",
            t.v
        )));
    }
    if t.rv == 0 || t.rv < -1 {
        return Err(bad(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    if t.start.is_empty() {
        return Err(bad("encoded start key empty (version meta.k8s.io/v1)"));
    }
    Ok(t)
}

/// Parsed list options shared by list, watch and deletecollection.
pub struct Filter {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector`.
    pub fn parse(info: &RequestInfo, query: &Query) -> Result<Filter, ApiError> {
        let labels =
            LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
        let fields = FieldSelector::parse(
            query.get("fieldSelector").map(String::as_str).unwrap_or(""),
            info.resource.kind,
        )?;
        Ok(Filter { labels, fields })
    }

    /// True when the object passes both selectors.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

/// Items of a collection matching the filter, one page at a time.
pub struct Page {
    /// Matching items.
    pub items: Vec<Stored>,
    /// Revision the list was read at.
    pub revision: u64,
    /// Continue token for the next page, empty on the last one.
    pub continue_token: String,
    /// Items after this page (before filtering) when known.
    pub remaining: Option<i64>,
}

/// Reads a page of the collection.
pub fn page(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    filter: &Filter,
) -> Result<Page, ApiError> {
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") => 0usize,
        Some(l) => l.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid limit {l:?}: must be a non-negative integer"
            ))
        })?,
    };
    let mut start_after = None;
    let token = query.get("continue").filter(|t| !t.is_empty());
    // The revision every page of this list is read at: the first page's, or the
    // one `resourceVersionMatch=Exact` asks for.
    let (mut at, not_older_than) = list_revision(query, token.is_some())?;
    if let Some(requested) = not_older_than {
        let current = state.store.revision();
        if requested > current {
            return Err(ApiError::too_large_resource_version(requested, current));
        }
    }
    if let Some(token) = token {
        let t = decode_continue(token)?;
        at = u64::try_from(t.rv).ok();
        start_after = Some(t.start.trim_end_matches('\u{0}').to_string());
    }
    // Where an expired continuation resumes: this request's first key.
    let resume = start_after.clone().unwrap_or_default();
    let prefix = info.collection_prefix();
    // A field selector on the name reads one key instead of the collection.
    if let (Some(name), true, None) = (
        filter.fields.pinned_name(),
        !info.resource.namespaced || !info.namespace.is_empty(),
        at,
    ) {
        let key = crate::request::object_key(info.resource, &info.namespace, name);
        let revision = state.store.revision();
        let items = state
            .store
            .get(&key)
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .filter(|s| filter.matches(&s.object))
            .into_iter()
            .collect();
        return Ok(Page {
            items,
            revision,
            continue_token: String::new(),
            remaining: None,
        });
    }
    let mut items = Vec::new();
    // With a limit, read the store in batches until the page is full of matches.
    let batch = if limit == 0 { 0 } else { limit.max(64) };
    loop {
        let opts = ListOptions {
            prefix: prefix.clone(),
            start_after: start_after.clone(),
            limit: Some(batch),
            revision: at,
        };
        let started = std::time::Instant::now();
        let res = state.store.list(&opts);
        super::observe_storage(state, "list", info.resource, started);
        let res = res.map_err(|e| match e {
            StoreError::Compacted { .. } if token.is_some() => {
                ApiError::continue_expired(encode_continue(-1, &resume))
            }
            StoreError::Compacted { .. } => {
                ApiError::expired("The resourceVersion for the provided list is too old.")
            }
            StoreError::FutureRevision { requested, current } => {
                ApiError::too_large_resource_version(requested, current)
            }
            other => ApiError::unavailable(other.to_string()),
        })?;
        at = Some(res.revision);
        let scanned = res.items.len();
        let mut last_key = None;
        for (i, s) in res.items.into_iter().enumerate() {
            last_key = Some(s.key.to_string());
            if filter.matches(&s.object) {
                items.push(s);
                if limit > 0 && items.len() == limit {
                    let unscanned = (scanned - i - 1) + res.remaining;
                    if unscanned == 0 {
                        break;
                    }
                    let last = last_key.unwrap_or_default();
                    let unfiltered = filter.labels.is_empty() && filter.fields.is_empty();
                    return Ok(Page {
                        items,
                        revision: res.revision,
                        continue_token: encode_continue(res.revision as i64, &last),
                        remaining: unfiltered.then_some(unscanned as i64),
                    });
                }
            }
        }
        if res.remaining == 0 || last_key.is_none() || (limit > 0 && items.len() == limit) {
            return Ok(Page {
                items,
                revision: res.revision,
                continue_token: String::new(),
                remaining: None,
            });
        }
        start_after = last_key;
    }
}

/// How long a list waits for the store to reach its continue token's revision or
/// its `resourceVersion` (another apiserver of the same etcd served the first
/// page or the object, and this one's watch cache is a little behind), as
/// upstream's cacher waits before answering `Too large resource version`.
const FRESHNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The list's `resourceVersion` and `resourceVersionMatch`, checked as upstream
/// checks them: the revision to read at for `Exact` (else the current state is
/// read), and the revision the current state must have reached for
/// `NotOlderThan` (the default; none for no `resourceVersion` or `"0"`).
fn list_revision(query: &Query, continued: bool) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|rv| !rv.is_empty());
    let rv_match = query
        .get("resourceVersionMatch")
        .map(String::as_str)
        .filter(|m| !m.is_empty());
    let mut causes = Vec::new();
    if let Some(m) = rv_match {
        let field = "resourceVersionMatch";
        if rv.is_none() {
            causes.push(Cause::forbidden(
                field,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if continued {
            causes.push(Cause::forbidden(
                field,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if m != "Exact" && m != "NotOlderThan" {
            causes.push(Cause::not_supported(
                field,
                &json!(m),
                &["Exact", "NotOlderThan", ""],
            ));
        }
        if m == "Exact" && rv == Some("0") {
            causes.push(Cause::forbidden(
                field,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if !causes.is_empty() {
        let mut e = ApiError::invalid("meta.k8s.io", "ListOptions.meta.k8s.io", "", causes);
        e.kind = "ListOptions".into();
        return Err(e);
    }
    let Some(rv) = rv.filter(|rv| *rv != "0") else {
        return Ok((None, None));
    };
    if continued {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    let revision: u64 = rv
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
    Ok(if rv_match == Some("Exact") {
        (Some(revision), None)
    } else {
        (None, Some(revision))
    })
}

/// Lists a collection.
pub async fn list(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, query.get("includeObject").map(String::as_str))?;
    // The revision the list must reflect: its continue token's, or its resourceVersion.
    let at_least = match query.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => decode_continue(token)
            .ok()
            .and_then(|t| u64::try_from(t.rv).ok()),
        None => query.get("resourceVersion").and_then(|rv| rv.parse().ok()),
    };
    if let Some(revision) = at_least {
        let deadline = std::time::Instant::now() + FRESHNESS_WAIT;
        while state.store.revision() < revision && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let filter = Filter::parse(info, query)?;
    let page = page(state, info, query, &filter)?;
    let r = info.resource;
    let rv = page.revision.to_string();
    Ok(match output {
        Output::Table(include) => {
            let objects: Vec<&Value> = page.items.iter().map(|s| s.object.as_ref()).collect();
            let t = table::table(
                r,
                &objects,
                include,
                &rv,
                &page.continue_token,
                page.remaining,
                jiff::Timestamp::now(),
            );
            json(200, TABLE_CONTENT_TYPE, t.to_string())
        }
        Output::Json => {
            let mut meta = json!({ "resourceVersion": rv });
            if !page.continue_token.is_empty() {
                meta["continue"] = json!(page.continue_token);
            }
            if let Some(n) = page.remaining {
                meta["remainingItemCount"] = json!(n);
            }
            let head = format!(
                "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
                r.list_kind,
                r.api_version(),
                meta
            );
            let mut body = Vec::with_capacity(
                head.len() + page.items.iter().map(|s| s.json.len() + 1).sum::<usize>() + 2,
            );
            body.extend_from_slice(head.as_bytes());
            for (i, s) in page.items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&s.json);
            }
            body.extend_from_slice(b"]}");
            json(200, "application/json", body)
        }
    })
}
