//! `Status`: the result of every plugin call, a code plus human-readable reasons.

use std::borrow::Cow;
use std::fmt;

/// What a plugin call decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// The plugin ran and has no objection.
    Success,
    /// An internal error: the pod is retried with backoff; never a reason to prefer a node.
    Error,
    /// The pod does not fit now; preemption may help.
    Unschedulable,
    /// The pod does not fit and preemption cannot help on this node.
    UnschedulableAndUnresolvable,
    /// A Permit plugin holds the pod until it is allowed or the timeout expires.
    Wait,
    /// The plugin has nothing to do for this pod (PreFilter/PreScore: skip its Filter/Score).
    Skip,
    /// The pod waits for something outside the scheduler (treated like Unschedulable).
    Pending,
}

impl Code {
    /// The upstream spelling, used as the `status` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Error => "Error",
            Code::Unschedulable => "Unschedulable",
            Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
            Code::Wait => "Wait",
            Code::Skip => "Skip",
            Code::Pending => "Pending",
        }
    }
}

/// A code, the reasons behind it, and the plugin that returned it.
///
/// A successful status allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: Vec<Cow<'static, str>>,
    plugin: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Status::success()
    }
}

impl Status {
    /// A status with a code and one reason.
    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Self {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: None,
        }
    }

    /// A status with a code and several reasons.
    pub fn with_reasons(code: Code, reasons: Vec<Cow<'static, str>>) -> Self {
        Status {
            code,
            reasons,
            plugin: None,
        }
    }

    /// Success.
    pub const fn success() -> Self {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// Skip: the plugin has nothing to do for this pod.
    pub const fn skip() -> Self {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// Unschedulable with `reason`.
    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::new(Code::Unschedulable, reason)
    }

    /// UnschedulableAndUnresolvable with `reason`.
    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// An internal error with `message`.
    pub fn error(message: impl Into<Cow<'static, str>>) -> Self {
        Status::new(Code::Error, message)
    }

    /// Records which plugin returned this status (the framework does it).
    pub fn with_plugin(mut self, plugin: &str) -> Self {
        if self.plugin.is_none() {
            self.plugin = Some(plugin.to_string());
        }
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The reasons, in order.
    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        self.reasons.iter().map(|r| r.as_ref())
    }

    /// The plugin that returned this status, if recorded.
    pub fn plugin(&self) -> Option<&str> {
        self.plugin.as_deref()
    }

    /// The reasons joined with `", "`.
    pub fn message(&self) -> String {
        self.reasons().collect::<Vec<_>>().join(", ")
    }

    /// True for [`Code::Success`].
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// True for [`Code::Skip`].
    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// True when the pod was rejected (Unschedulable, UnschedulableAndUnresolvable, Pending).
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable | Code::Pending
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plugin {
            Some(p) => write!(f, "{} ({p}): {}", self.code.as_str(), self.message()),
            None => write!(f, "{}: {}", self.code.as_str(), self.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_should_join_reasons_and_name_its_plugin() {
        let s = Status::with_reasons(
            Code::Unschedulable,
            vec!["Insufficient cpu".into(), "Insufficient memory".into()],
        )
        .with_plugin("NodeResourcesFit");
        assert_eq!(s.message(), "Insufficient cpu, Insufficient memory");
        assert!(s.is_rejected());
        assert_eq!(
            s.to_string(),
            "Unschedulable (NodeResourcesFit): Insufficient cpu, Insufficient memory"
        );
        assert!(Status::success().is_success());
    }
}
