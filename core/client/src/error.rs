//! What can go wrong talking to the apiserver, and whether retrying helps.

/// A client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The apiserver answered with a Kubernetes `Status` error. Retrying helps for
    /// 409 Conflict (after re-reading), 429 and 5xx; see [`ClientError::is_retryable`].
    #[error("{method} {path}: {code} {reason}: {message}")]
    Api {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
        /// HTTP status code.
        code: u16,
        /// `Status.reason`, e.g. `NotFound`, `AlreadyExists`, `Conflict`.
        reason: String,
        /// `Status.message`.
        message: String,
    },
    /// The apiserver could not be reached or the connection broke. Retrying helps.
    #[error("{method} {path}: {source}")]
    Transport {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The apiserver of this process could not be asked over the kernel bus (it is
    /// restarting, or did not answer in time). Retrying helps.
    #[error("{method} {path}: over the bus: {message}")]
    Bus {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
        /// What the kernel or the transport said.
        message: String,
    },
    /// A body could not be encoded or decoded. Retrying does not help.
    #[error("{what}: {source}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// Underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The client configuration is unusable (no server, unreadable kubeconfig). Retrying does not help.
    #[error("client config: {0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status code when the apiserver answered, else `None`.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// True for 409 with reason `AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, ClientError::Api { code: 409, reason, .. } if reason == "AlreadyExists")
    }

    /// True for 409 with reason `Conflict` (stale resourceVersion).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Api { code: 409, reason, .. } if reason == "Conflict")
    }

    /// True when the same request may succeed later unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Bus { .. } => true,
            ClientError::Api { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }
}
