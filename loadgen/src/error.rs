//! The one error type of the tool: what failed, with enough context to act on it.

/// Why a run (or one backend's part of it) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong; the message says how.
    #[error("{0}")]
    Usage(String),
    /// A file, process or socket operation failed; `what` names the operation.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The system under test misbehaved (exited, answered an unexpected status, never
    /// drained its outbox): the measurement would be meaningless, so the backend stops.
    #[error("{0}")]
    Run(String),
    /// Ctrl-C: the run stops, and dropping it kills the server.
    #[error("interrupted")]
    Interrupted,
}

/// Wraps an `io::Error` with the operation that produced it, for `map_err`.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
