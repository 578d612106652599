//! The runtime's error type.

use std::path::PathBuf;

/// Errors from the runtime crate. Messages are written for the person who reads them:
/// what failed, on which input, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A name failed validation.
    #[error("invalid {kind} name '{name}': must be {rule}")]
    InvalidName {
        /// What kind of name (container, user, image).
        kind: &'static str,
        /// The offending name, shortened and escaped.
        name: String,
        /// The rule it broke.
        rule: &'static str,
    },
    /// No container of that name exists.
    #[error("no container named '{0}'")]
    NoSuchContainer(String),
    /// Starting it would break a placement rule.
    #[error("{0}")]
    Placement(String),
    /// A container of that name exists already.
    #[error("container '{0}' exists already")]
    ContainerExists(String),
    /// No image of that name exists.
    #[error("no image named '{0}' (build one with `gatehouse image build {0}` or import one)")]
    NoSuchImage(String),
    /// An image of that name exists already.
    #[error("image '{0}' exists already (delete it first with `gatehouse image delete {0}`)")]
    ImageExists(String),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A state file could not be parsed.
    #[error("corrupt state file {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The container could not be started.
    #[error("container '{name}' failed to start: {reason}")]
    StartFailed {
        /// The container.
        name: String,
        /// Why.
        reason: String,
    },
    /// Talking to a container's supervisor failed.
    #[error("container '{name}': {reason}")]
    Supervisor {
        /// The container.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The container is stopping and takes no new sessions; start it again afterwards.
    #[error("container '{0}' is stopping")]
    Stopping(String),
    /// A tool such as debootstrap failed or is missing.
    #[error("{0}")]
    Tool(String),
    /// A request was invalid (bad limit value, bad archive, …).
    #[error("{0}")]
    Invalid(String),
    /// The container engine (LXD) is unreachable or refused an operation.
    #[error("LXD: {0}")]
    Engine(String),
}

impl RuntimeError {
    /// Wraps an I/O error with what was being done and on which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Result with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
