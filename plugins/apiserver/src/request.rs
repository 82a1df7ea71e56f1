//! Request routing: turns an API path and method into a `RequestInfo` (verb, resource, namespace, name).
//!
//! Follows kube-apiserver's `RequestInfoFactory`: `/api/v1/...` and
//! `/apis/<group>/<version>/...`, with `namespaces/<ns>/` selecting the namespace,
//! except that `namespaces/<name>/status` and `/finalize` are subresources of the
//! namespace itself.

use kubernel_api::resources::{self, Resource};

use crate::status::ApiError;

/// The verb of an API request, as RBAC and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl Verb {
    /// Lowercase name (`get`, `list`, ... `deletecollection`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    /// The upstream metrics verb (`GET`/`LIST`/`WATCH`/`POST`/`PUT`/`PATCH`/`DELETE`/`DELETECOLLECTION`... as kube-apiserver reports it).
    pub fn metrics_name(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::List => "LIST",
            Verb::Watch => "WATCH",
            Verb::Create => "POST",
            Verb::Update => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
            Verb::DeleteCollection => "DELETECOLLECTION",
        }
    }

    /// True for verbs that change state.
    pub fn is_mutating(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

/// A routed resource request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The verb.
    pub verb: Verb,
    /// The resource.
    pub resource: &'static Resource,
    /// Subresource (`status`, `scale`, ...), empty for the resource itself.
    pub subresource: String,
    /// Namespace from the path, empty when none.
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
}

impl RequestInfo {
    /// The storage key of the named object.
    pub fn key(&self) -> String {
        object_key(self.resource, &self.namespace, &self.name)
    }

    /// The storage prefix of the collection (one namespace, or all of them).
    pub fn collection_prefix(&self) -> String {
        if self.resource.namespaced && !self.namespace.is_empty() {
            format!("{}/{}/", self.resource.storage_prefix(), self.namespace)
        } else {
            format!("{}/", self.resource.storage_prefix())
        }
    }

    /// `namespace` or `cluster` (all namespaces) or `resource` (one object), for metrics.
    pub fn scope(&self) -> &'static str {
        if !self.name.is_empty() {
            "resource"
        } else if !self.namespace.is_empty() && self.resource.namespaced {
            "namespace"
        } else {
            "cluster"
        }
    }
}

/// The storage key of an object.
pub fn object_key(resource: &Resource, namespace: &str, name: &str) -> String {
    if resource.namespaced {
        format!("{}/{namespace}/{name}", resource.storage_prefix())
    } else {
        format!("{}/{name}", resource.storage_prefix())
    }
}

/// Routes an API path (after `/api/v1` or `/apis/<g>/<v>`, already split).
pub fn route(
    method: &axum::http::Method,
    group: &str,
    version: &str,
    parts: &[&str],
    watch: bool,
) -> Result<RequestInfo, ApiError> {
    let mut parts = parts;
    let mut namespace = "";
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = parts[1];
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts = &parts[2..];
        }
    }
    let Some(plural) = parts.first() else {
        return Err(ApiError::not_found(group, "", ""));
    };
    let resource = resources::find(group, version, plural).ok_or_else(|| {
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let mut e = ApiError::not_found(group, plural, "");
        e.message = format!("the server could not find the requested resource ({gv} {plural})");
        e
    })?;
    let name = parts.get(1).copied().unwrap_or("");
    let subresource = parts.get(2).copied().unwrap_or("");
    if parts.len() > 3 || (!subresource.is_empty() && resource.subresource(subresource).is_none()) {
        return Err(ApiError::not_found(group, plural, name));
    }
    if !resource.namespaced && parts.first() != Some(&"namespaces") {
        namespace = "";
    }
    if *plural == "namespaces" {
        namespace = "";
    }
    let collection = name.is_empty();
    let verb = match (method.as_str(), collection) {
        ("GET" | "HEAD", false) => Verb::Get,
        ("GET" | "HEAD", true) if watch => Verb::Watch,
        ("GET" | "HEAD", true) => Verb::List,
        ("POST", _) => Verb::Create,
        ("PUT", false) => Verb::Update,
        ("PATCH", false) => Verb::Patch,
        ("DELETE", false) => Verb::Delete,
        ("DELETE", true) => Verb::DeleteCollection,
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m} {plural})"
            )))
        }
    };
    Ok(RequestInfo {
        verb,
        resource,
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}
