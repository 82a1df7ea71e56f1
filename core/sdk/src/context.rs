//! `Context`: what a plugin instance can do with the kernel (messages, metrics, shutdown).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubernel_abi::{Bytes, HostVtable, OutBuf, Status};
use kubernel_api::{codec, CodecError, Message};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// A request or send to another plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The kernel or the target refused or failed the message; see
    /// [`RequestError::is_retryable`].
    #[error("{kind} to {target}: {}: {message}", status.name())]
    Rejected {
        /// Target plugin name or `@kind`.
        target: String,
        /// Message kind.
        kind: &'static str,
        /// Status returned.
        status: Status,
        /// Message from the kernel or the target.
        message: String,
    },
    /// The message or its reply could not be encoded/decoded. Retrying does not help.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl RequestError {
    /// True when the same request may succeed later (target restarting, timeout).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RequestError::Rejected { status, .. }
                if *status == Status::UNAVAILABLE || *status == Status::TIMEOUT
        )
    }
}

/// Handle to the kernel for one plugin instance; cheap to clone and `Send + Sync`.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    host: HostVtable,
    name: String,
    data_dir: PathBuf,
    shutdown: CancellationToken,
    registry: Registry,
}

impl Context {
    pub(crate) fn new(host: HostVtable, name: String, data_dir: PathBuf) -> Result<Self, String> {
        let registry = Registry::new();
        Ok(Context {
            inner: Arc::new(Inner {
                host,
                name,
                data_dir,
                shutdown: CancellationToken::new(),
                registry,
            }),
        })
    }

    /// This instance's name in the kernel config.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Directory where this plugin keeps its state (`<data_dir>/<name>`), created on demand.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The plugin's Prometheus registry; the kernel serves it on its `/metrics`
    /// with this instance's name added to every sample as `plugin` (as
    /// `kubernel_plugin` where a metric has a `plugin` label of its own, such as
    /// `scheduler_plugin_execution_duration_seconds`).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Cancelled when the instance is shut down (after a swap, restart or exit).
    pub fn shutdown_signal(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    pub(crate) fn cancel(&self) {
        self.inner.shutdown.cancel();
    }

    /// Sends a request to `target` (a plugin name or `@kind`) and waits for its reply.
    /// The current span's trace context, when spans are exported, goes along in the
    /// message envelope (as with `send` and `publish`).
    ///
    /// Requests run the target's handler on the calling thread; requests that form a
    /// cycle back into a plugin that is busy on this thread fail with `REENTRANT`.
    pub fn request<M: Message>(&self, target: &str, msg: &M) -> Result<M::Reply, RequestError> {
        let payload = codec::encode(M::KIND, msg)?;
        let mut out = Vec::new();
        let host = &self.inner.host;
        let (target_b, kind, payload_b) = (
            Bytes::from(target),
            Bytes::from(M::KIND),
            Bytes::new(&payload),
        );
        let out_buf = &mut OutBuf::new(&mut out);
        let status = match (crate::traceparent(), host.request_traced) {
            (Some(trace), Some(request)) => request(
                host.ctx,
                target_b,
                kind,
                payload_b,
                Bytes::from(trace.as_str()),
                out_buf,
            ),
            _ => (host.request)(host.ctx, target_b, kind, payload_b, out_buf),
        };
        if !status.is_ok() {
            return Err(self.rejected::<M>(target, status, &out));
        }
        Ok(codec::decode(M::KIND, &out)?)
    }

    /// Queues `msg` in `target`'s mailbox without waiting for it to be handled.
    pub fn send<M: Message>(&self, target: &str, msg: &M) -> Result<(), RequestError> {
        let payload = codec::encode(M::KIND, msg)?;
        let mut err = Vec::new();
        let host = &self.inner.host;
        let (target_b, kind, payload_b) = (
            Bytes::from(target),
            Bytes::from(M::KIND),
            Bytes::new(&payload),
        );
        let err_buf = &mut OutBuf::new(&mut err);
        let status = match (crate::traceparent(), host.send_traced) {
            (Some(trace), Some(send)) => send(
                host.ctx,
                target_b,
                kind,
                payload_b,
                Bytes::from(trace.as_str()),
                err_buf,
            ),
            _ => (host.send)(host.ctx, target_b, kind, payload_b, err_buf),
        };
        if status.is_ok() {
            Ok(())
        } else {
            Err(self.rejected::<M>(target, status, &err))
        }
    }

    /// Queues `msg` to every plugin subscribed to `M::KIND`.
    pub fn publish<M: Message>(&self, msg: &M) -> Result<(), RequestError> {
        let payload = codec::encode(M::KIND, msg)?;
        let host = &self.inner.host;
        let (kind, payload_b) = (Bytes::from(M::KIND), Bytes::new(&payload));
        let status = match (crate::traceparent(), host.publish_traced) {
            (Some(trace), Some(publish)) => {
                publish(host.ctx, kind, payload_b, Bytes::from(trace.as_str()))
            }
            _ => (host.publish)(host.ctx, kind, payload_b),
        };
        if status.is_ok() {
            Ok(())
        } else {
            Err(self.rejected::<M>("subscribers", status, b"publish refused"))
        }
    }

    /// Subscribes this instance to messages of kind `M::KIND` published by others.
    pub fn subscribe<M: Message>(&self) -> Result<(), RequestError> {
        let host = &self.inner.host;
        let status = (host.subscribe)(host.ctx, Bytes::from(M::KIND));
        if status.is_ok() {
            Ok(())
        } else {
            Err(self.rejected::<M>("kernel", status, b"subscribe refused"))
        }
    }

    fn rejected<M: Message>(&self, target: &str, status: Status, message: &[u8]) -> RequestError {
        RequestError::Rejected {
            target: target.to_string(),
            kind: M::KIND,
            status,
            message: String::from_utf8_lossy(message).into_owned(),
        }
    }

    pub(crate) fn host(&self) -> &HostVtable {
        &self.inner.host
    }
}
