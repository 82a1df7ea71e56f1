//! The Kubernetes REST API carried over the kernel bus, for plugins in the apiserver's process.
//!
//! A request is the HTTP request a client would send, minus the connection: the
//! apiserver runs it through the same handler chain as an HTTP request and
//! answers the HTTP response, either on the calling thread ([`ApiRequest`]) or
//! later, to the caller's mailbox ([`ApiCall`], answered by an [`ApiCallDone`]).
//!
//! A watch is an [`ApiWatch`] request with the path and query of an HTTP watch.
//! Once answered 200, the apiserver sends the watch's lines to the requesting
//! plugin's mailbox as [`ApiWatchEvents`] (each a chunk of the HTTP body:
//! newline-delimited `{"type":...,"object":...}` lines), then one [`ApiWatchEnded`]
//! when the watch ends: its `timeoutSeconds` passed, the watcher sent an
//! [`ApiWatchStop`], the store dropped it (it fell too far behind), or the
//! apiserver stopped. The watcher then re-watches from the last `resourceVersion`
//! it saw, as over HTTP. Mailboxes are unbounded: a watcher that stops handling
//! its messages should stop its watches.

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
    /// Request body (encoded as one byte string: postcard's wire form of a
    /// `Vec<u8>` either way, without a call per byte).
    #[serde(with = "serde_bytes")]
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
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// `Warning` headers.
    pub warnings: Vec<String>,
}

impl Message for ApiRequest {
    const KIND: &'static str = "api.Request";
    type Reply = ApiResponse;
}

/// An API request answered later: the apiserver (`@apiserver`) acknowledges it at
/// once and sends the response to the sender's mailbox as an [`ApiCallDone`] with
/// the same `id`. For callers that must not hold a thread while it runs; an
/// [`ApiRequest`] is answered on the calling thread instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCall {
    /// Chosen by the caller, unique among its open calls; tags the answer.
    pub id: u64,
    /// The request, as in an [`ApiRequest`].
    pub request: ApiRequest,
}

impl Message for ApiCall {
    const KIND: &'static str = "api.Call";
    type Reply = ();
}

/// The apiserver's answer to an [`ApiCall`], sent to the caller's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCallDone {
    /// The call's [`ApiCall::id`].
    pub id: u64,
    /// The response, as to an [`ApiRequest`].
    pub response: ApiResponse,
}

impl Message for ApiCallDone {
    const KIND: &'static str = "api.CallDone";
    type Reply = ();
}

/// Starts a watch whose events the apiserver sends to the requesting plugin (`@apiserver`).
///
/// Answered with the HTTP status of the watch request: 200 and an empty body when
/// it started, else the `Status` a client would get over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiWatch {
    /// Chosen by the watcher, unique among its open watches; tags its events and its end.
    pub id: String,
    /// Path and query of the watch, as over HTTP, e.g.
    /// `/api/v1/namespaces/default/pods?watch=true&resourceVersion=42&timeoutSeconds=300`
    /// (`watch=true` is added when missing).
    pub path: String,
    /// `Accept` (empty for JSON events; `application/json;as=Table;v=v1;g=meta.k8s.io`
    /// for Table events).
    pub accept: String,
}

impl Message for ApiWatch {
    const KIND: &'static str = "api.Watch";
    type Reply = ApiResponse;
}

/// Lines of one bus watch, sent by the apiserver to the watcher, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiWatchEvents {
    /// The watch's [`ApiWatch::id`].
    pub id: String,
    /// One or more watch lines, each `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}\n`.
    #[serde(with = "serde_bytes")]
    pub lines: Vec<u8>,
}

impl Message for ApiWatchEvents {
    const KIND: &'static str = "api.WatchEvents";
    type Reply = ();
}

/// The last message of a bus watch, sent by the apiserver to the watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiWatchEnded {
    /// The watch's [`ApiWatch::id`].
    pub id: String,
    /// Why: `stopped` (an [`ApiWatchStop`]), or `closed` (its timeout passed, it
    /// fell behind, or the apiserver is stopping: re-watch to go on).
    pub reason: String,
}

impl Message for ApiWatchEnded {
    const KIND: &'static str = "api.WatchEnded";
    type Reply = ();
}

/// Stops a bus watch of the sending plugin (`@apiserver`); answers whether it was
/// running. Its [`ApiWatchEnded`] follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiWatchStop {
    /// The watch's [`ApiWatch::id`].
    pub id: String,
}

impl Message for ApiWatchStop {
    const KIND: &'static str = "api.WatchStop";
    type Reply = bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same fields with `Vec<u8>` encoded element by element, as before.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct PlainEvents {
        id: String,
        lines: Vec<u8>,
    }

    #[test]
    fn byte_fields_should_keep_the_wire_form_of_a_byte_vector() {
        let lines: Vec<u8> = (0..=255u8)
            .chain(b"{\"type\":\"ADDED\"}\n".iter().copied())
            .collect();
        let new = ApiWatchEvents {
            id: "w-1".into(),
            lines: lines.clone(),
        };
        let old = PlainEvents {
            id: "w-1".into(),
            lines,
        };
        let bytes = crate::codec::encode(ApiWatchEvents::KIND, &new).expect("encode");
        assert_eq!(
            bytes,
            crate::codec::encode(ApiWatchEvents::KIND, &old).expect("encode")
        );
        let back: PlainEvents = crate::codec::decode(ApiWatchEvents::KIND, &bytes).expect("decode");
        assert_eq!(back, old);
        let back: ApiWatchEvents =
            crate::codec::decode(ApiWatchEvents::KIND, &bytes).expect("decode");
        assert_eq!(back, new);
    }
}
