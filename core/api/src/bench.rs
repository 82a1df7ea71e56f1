//! Messages of the bench driver plugin that measures the bus from inside a plugin.

use serde::{Deserialize, Serialize};

use crate::Message;

/// How the driver exercises its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriveMode {
    /// Synchronous `echo.Echo` requests, one at a time, each timed.
    Request,
    /// Fire-and-forget `echo.Add` sends through the target's mailbox, then one request
    /// that waits for them all to be handled.
    Send,
}

/// Runs `count` operations against `target` and reports what was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drive {
    /// Target plugin name.
    pub target: String,
    /// Number of messages.
    pub count: u64,
    /// What to do.
    pub mode: DriveMode,
}

/// Measurements of one [`Drive`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriveReport {
    /// Messages that succeeded.
    pub ok: u64,
    /// Messages that failed.
    pub failed: u64,
    /// Wall time of the whole run, nanoseconds.
    pub elapsed_ns: u64,
    /// Per-request latencies in nanoseconds, sorted (empty in `Send` mode).
    pub latencies_ns: Vec<u64>,
}

impl Message for Drive {
    const KIND: &'static str = "bench.Drive";
    type Reply = DriveReport;
}
