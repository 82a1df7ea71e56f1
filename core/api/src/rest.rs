//! The Kubernetes REST API carried over the kernel bus, for plugins in the apiserver's process.
//!
//! A request is the HTTP request a client would send, minus the connection: the
//! apiserver runs it through the same handler chain as an HTTP request and
//! answers the HTTP response. Watches are not carried yet; use HTTP for them.

use serde::{Deserialize, Serialize};

use crate::Message;

/// An API request sent to the apiserver plugin (`@apiserver`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    /// HTTP method: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/default/pods?labelSelector=app%3Dweb`.
    pub path: String,
    /// `Content-Type` of `body` (empty for none).
    pub content_type: String,
    /// `Accept` (empty for JSON).
    pub accept: String,
    /// Request body.
    pub body: Vec<u8>,
}

/// The apiserver's answer to an [`ApiRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: String,
    /// Response body (an object, a list, a Table or a `Status`).
    pub body: Vec<u8>,
    /// `Warning` headers.
    pub warnings: Vec<String>,
}

impl Message for ApiRequest {
    const KIND: &'static str = "api.Request";
    type Reply = ApiResponse;
}
