//! Engine errors, classified by who can fix them.

use rdkafka::error::KafkaError;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's: a configuration or certificate problem. Retrying cannot help (exit code 2).
    #[error("{0}")]
    Config(String),
    /// The cluster's: unreachable, leader moving, timeouts. Retried with back-off.
    #[error("{0}")]
    Retriable(String),
    /// A client is unusable (e.g. the idempotent producer hit a fatal error); the flow is
    /// restarted from its stored progress.
    #[error("{0}")]
    Fatal(String),
    /// Long-lived clients stopped answering while new ones connect: the flow starts again with
    /// new clients.
    #[error("{0}")]
    Restart(String),
    /// Another instance with the same `transactional.id` took over the flow's transactions
    /// (exactly-once mode): this one stops copying the flow rather than fence it back.
    #[error("{0}")]
    Fenced(String),
    /// A bug in kmirror.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A client could not be created: almost always an unknown or invalid property.
    pub fn client(what: &str, e: &KafkaError) -> Self {
        Error::Config(format!("cannot create the {what}: {e}"))
    }

    /// Whether the operator must act (no retry).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Config(_))
    }
}
