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
    /// The container engine (LXD) is unreachable, or its answer unreadable.
    #[error("LXD: {0}")]
    Engine(String),
    /// LXD answered a request, or finished an operation, with an error.
    #[error("LXD: {0}")]
    Lxd(LxdError),
}

/// An error LXD answered with: its codes and message, and what kind of refusal it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LxdError {
    /// The HTTP status of the answer (none for a failed operation).
    pub status: Option<u16>,
    /// LXD's `error_code` (or the operation's `status_code`).
    pub code: u16,
    /// LXD's message.
    pub message: String,
}

/// What an [`LxdError`] refuses, for the callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LxdRefusal {
    /// The object (instance, image, alias, operation) does not exist.
    NotFound,
    /// The client is not trusted, or not in this project.
    Forbidden,
    /// The instance is busy with another operation (another gateway starting it).
    Busy,
    /// The instance is running already.
    AlreadyRunning,
    /// Anything else.
    Other,
}

impl LxdError {
    /// The kind of refusal. By code where LXD gives one; LXD 5.0 answers "busy" and
    /// "already running" with a plain 400, so those are told by its fixed (never
    /// translated) messages, here and nowhere else.
    pub fn refusal(&self) -> LxdRefusal {
        let m = self.message.to_ascii_lowercase();
        match (self.code, self.status) {
            (404, _) | (_, Some(404)) => LxdRefusal::NotFound,
            (403, _) | (_, Some(403)) => LxdRefusal::Forbidden,
            _ if m.contains("already running") => LxdRefusal::AlreadyRunning,
            _ if m.contains("busy") => LxdRefusal::Busy,
            _ if m.contains("not found") => LxdRefusal::NotFound,
            _ => LxdRefusal::Other,
        }
    }
}

impl LxdError {
    /// Whether the missing object is an image (or its alias): LXD names it only in the
    /// message.
    pub fn is_missing_image(&self) -> bool {
        self.refusal() == LxdRefusal::NotFound
            && self.message.to_ascii_lowercase().contains("image")
    }
}

impl std::fmt::Display for LxdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.refusal() {
            LxdRefusal::NotFound => write!(f, "not found: {}", self.message),
            LxdRefusal::Forbidden => write!(
                f,
                "{} (the daemon does not trust this gateway's certificate: \
                 `lxc config trust add` it, or check the project)",
                self.message
            ),
            _ => f.write_str(&self.message),
        }
    }
}

impl RuntimeError {
    /// What LXD refused, if this is an error LXD answered with.
    pub fn lxd_refusal(&self) -> Option<LxdRefusal> {
        match self {
            RuntimeError::Lxd(e) => Some(e.refusal()),
            _ => None,
        }
    }
}

/// Result with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn lxd(status: Option<u16>, code: u16, message: &str) -> LxdError {
        LxdError {
            status,
            code,
            message: message.into(),
        }
    }

    #[test]
    fn lxd_refusals_are_told_by_code_first() {
        assert_eq!(
            lxd(Some(404), 404, "Instance not found").refusal(),
            LxdRefusal::NotFound
        );
        assert_eq!(
            lxd(None, 400, "Image alias not found").refusal(),
            LxdRefusal::NotFound
        );
        assert_eq!(
            lxd(Some(403), 403, "not authorized").refusal(),
            LxdRefusal::Forbidden
        );
        let busy = "Instance is busy running a \"start\" operation";
        assert_eq!(lxd(None, 400, busy).refusal(), LxdRefusal::Busy);
        let running = "The instance is already running";
        assert_eq!(
            lxd(Some(400), 400, running).refusal(),
            LxdRefusal::AlreadyRunning
        );
        assert_eq!(
            lxd(Some(500), 500, "disk full").refusal(),
            LxdRefusal::Other
        );
        let e = RuntimeError::Lxd(lxd(Some(404), 404, "Instance not found"));
        assert_eq!(e.to_string(), "LXD: not found: Instance not found");
        assert_eq!(e.lxd_refusal(), Some(LxdRefusal::NotFound));
        assert_eq!(RuntimeError::Engine("down".into()).lxd_refusal(), None);
        assert!(lxd(None, 400, "Image alias not found").is_missing_image());
        assert!(!lxd(Some(404), 404, "Storage pool not found").is_missing_image());
    }
}
