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
