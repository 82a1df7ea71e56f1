//! The `Plugin` trait a component implements, and the types of its message handler.

use std::time::Duration;

use kubernel_abi::Status;
use kubernel_api::{codec, CodecError, Message};
use serde::de::DeserializeOwned;

use crate::Context;

/// A kubernel component: created from its config, then fed messages one at a time.
///
/// The kernel calls every method with the instance's lock held. A plugin that does
/// I/O starts its own threads or async runtime in `init` and stops them in
/// `quiesce`/`shutdown`; it must not assume the kernel's runtime is visible.
pub trait Plugin: Sized + Send + 'static {
    /// The plugin's `[plugin.config]` table, deserialized (unknown keys are the
    /// plugin's choice: use `#[serde(deny_unknown_fields)]` to refuse them).
    type Config: DeserializeOwned;

    /// Creates the instance. An error here makes the kernel refuse the plugin.
    fn init(ctx: Context, config: Self::Config) -> Result<Self, PluginError>;

    /// Handles one message and returns its reply.
    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError>;

    /// The handler of the messages this plugin takes on many threads at once,
    /// without the instance's lock (asked once, after `init`). A plugin that serves
    /// requests which wait on I/O (the apiserver's `api.Request`) answers them
    /// here, so one slow request does not hold up the others.
    fn shared(&self) -> Option<std::sync::Arc<dyn SharedHandler>> {
        None
    }

    /// Stops taking new work and finishes in-flight work before `deadline` elapses;
    /// called before a snapshot for a hot swap and on shutdown.
    fn quiesce(&mut self, _deadline: Duration) -> Result<(), PluginError> {
        Ok(())
    }

    /// Resumes work after `quiesce` when a hot swap rolled back.
    fn resume(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Serializes the state a successor (after a swap or restart) needs.
    fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(Vec::new())
    }

    /// Loads a snapshot taken by a plugin whose state version is `from_version`.
    fn restore(&mut self, _state: &[u8], _from_version: u32) -> Result<(), PluginError> {
        Ok(())
    }

    /// Applies a changed config in place (the kernel's config file changed or an
    /// operator posted a new config). The default refuses with `UnknownKind`, which
    /// makes the kernel hot-swap the instance instead.
    fn reconfigure(&mut self, _config: Self::Config) -> Result<(), PluginError> {
        Err(PluginError::UnknownKind(
            kubernel_api::kernel::RECONFIGURE.to_string(),
        ))
    }

    /// Replaces extension `name` (e.g. a scheduler framework plugin) with the
    /// library at `path`; returns a line saying what changed. The default refuses
    /// with `UnknownKind`.
    fn swap_extension(
        &mut self,
        _name: &str,
        _path: &std::path::Path,
    ) -> Result<String, PluginError> {
        Err(PluginError::UnknownKind(
            kubernel_api::kernel::SWAP_EXTENSION.to_string(),
        ))
    }

    /// Updates gauges that are read rather than counted (object counts, sizes);
    /// called just before the kernel gathers this plugin's metrics.
    fn refresh_metrics(&mut self) {}

    /// Readiness for the kernel's `/readyz`: `Err(reason)` when not ready.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// Releases everything; the instance is dropped afterwards.
    fn shutdown(self) {}
}

/// A message delivered to a plugin.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Name of the sending plugin (`kernel` for the kernel itself).
    pub from: &'a str,
    /// Message kind.
    pub kind: &'a str,
    /// Encoded message.
    pub payload: &'a [u8],
}

impl Incoming<'_> {
    /// True when this message is an `M`.
    pub fn is<M: Message>(&self) -> bool {
        self.kind == M::KIND
    }

    /// Decodes the payload as an `M`.
    pub fn decode<M: Message>(&self) -> Result<M, PluginError> {
        Ok(codec::decode(M::KIND, self.payload)?)
    }

    /// Decodes an `M`, runs `f` on it and encodes its answer as the reply.
    pub fn reply<M: Message>(
        &self,
        f: impl FnOnce(M) -> Result<M::Reply, PluginError>,
    ) -> Result<Reply, PluginError> {
        let reply = f(self.decode::<M>()?)?;
        Reply::of::<M>(&reply)
    }
}

/// Messages a plugin handles concurrently, beside [`Plugin::handle`].
///
/// The kernel calls it on any thread, never during a call of the plugin's
/// exclusive methods (`handle`, `quiesce`, ...).
pub trait SharedHandler: Send + Sync + 'static {
    /// Handles `msg`, or returns `None` for a kind [`Plugin::handle`] takes.
    fn handle(&self, msg: &Incoming<'_>) -> Option<Result<Reply, PluginError>>;
}

/// An encoded reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply(pub Vec<u8>);

impl Reply {
    /// Encodes the reply to an `M`.
    pub fn of<M: Message>(reply: &M::Reply) -> Result<Reply, PluginError> {
        Ok(Reply(codec::encode(M::KIND, reply)?))
    }

    /// An empty reply, for messages that are only sent.
    pub fn empty() -> Reply {
        Reply(Vec::new())
    }
}

/// Why a plugin call failed; the variant decides the status the kernel sees.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin does not handle this message kind. Retrying does not help.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// The payload did not decode. Retrying the same bytes does not help.
    #[error(transparent)]
    BadMessage(#[from] CodecError),
    /// The request failed; the instance is fine. Retrying may help.
    #[error("{0}")]
    Failed(String),
    /// The instance is broken and must be restarted by the supervisor.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl PluginError {
    /// A [`PluginError::Failed`] from anything printable.
    pub fn failed(msg: impl std::fmt::Display) -> Self {
        PluginError::Failed(msg.to_string())
    }

    /// The ABI status for this error.
    pub fn status(&self) -> Status {
        match self {
            PluginError::UnknownKind(_) => Status::UNKNOWN_KIND,
            PluginError::BadMessage(_) => Status::BAD_MESSAGE,
            PluginError::Failed(_) => Status::ERROR,
            PluginError::Fatal(_) => Status::FATAL,
        }
    }
}

impl From<crate::RequestError> for PluginError {
    fn from(e: crate::RequestError) -> Self {
        PluginError::Failed(e.to_string())
    }
}
