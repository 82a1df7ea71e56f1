//! Messages the kernel itself sends to every plugin.

use serde::{Deserialize, Serialize};

use crate::Message;

/// Asks a plugin whether it is ready to serve; answered by the SDK from `Plugin::ready`.
///
/// A ready plugin replies `()`; one that is not ready fails the request with
/// status `ERROR` and the reason as the message, so the kernel needs no decoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReady;

impl Message for CheckReady {
    const KIND: &'static str = "kernel.CheckReady";
    type Reply = ();
}

/// Kind of the message that hands a running plugin a changed `[plugin.config]`.
///
/// The payload is the new config table as JSON (not the postcard codec, so the
/// kernel needs no typed messages); the reply is empty. A plugin that cannot apply
/// a config in place answers `UNKNOWN_KIND`, and the kernel hot-swaps it instead.
pub const RECONFIGURE: &str = "kernel.Reconfigure";

/// Kind of the message that swaps one extension (e.g. a scheduler framework
/// plugin `.so`) inside a running component.
///
/// The payload is JSON `{"name": "<extension>", "path": "<library>"}`; the reply is
/// a UTF-8 line saying what changed. Components without extensions answer `UNKNOWN_KIND`.
pub const SWAP_EXTENSION: &str = "kernel.SwapExtension";
