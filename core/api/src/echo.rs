//! Messages of the echo/counter plugin used by kernel tests, examples and benchmarks.

use serde::{Deserialize, Serialize};

use crate::Message;

/// Returns its text unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// Text to echo.
    pub text: String,
}

impl Message for Echo {
    const KIND: &'static str = "echo.Echo";
    type Reply = Echo;
}

/// Adds to the plugin's counter; replies with the new total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Add {
    /// Amount to add.
    pub n: u64,
}

impl Message for Add {
    const KIND: &'static str = "echo.Add";
    type Reply = u64;
}

/// Reads the plugin's counter and identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetCount;

/// Answer to [`GetCount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Current counter value.
    pub total: u64,
    /// Number of `Add` messages handled.
    pub adds: u64,
    /// Version of the plugin build that answered.
    pub version: String,
}

impl Message for GetCount {
    const KIND: &'static str = "echo.GetCount";
    type Reply = Count;
}

/// Makes the plugin panic with the given message (a test of the supervisor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panic {
    /// Panic message.
    pub message: String,
}

impl Message for Panic {
    const KIND: &'static str = "echo.Panic";
    type Reply = ();
}

/// Makes the plugin panic in its shared (concurrent) handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPanic {
    /// Panic message.
    pub message: String,
}

impl Message for SharedPanic {
    const KIND: &'static str = "echo.SharedPanic";
    type Reply = ();
}

/// Asks the plugin to forward an [`Echo`] to another plugin and return its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// Target plugin name, or `@kind`.
    pub target: String,
    /// Text to echo there.
    pub text: String,
}

impl Message for Forward {
    const KIND: &'static str = "echo.Forward";
    type Reply = Echo;
}

/// An event the counter plugin subscribes to: every subscriber adds `n` to its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Amount every subscriber adds.
    pub n: u64,
}

impl Message for Broadcast {
    const KIND: &'static str = "echo.Broadcast";
    type Reply = ();
}
