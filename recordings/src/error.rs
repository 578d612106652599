//! The recordings crate's error type.

use std::path::PathBuf;

/// Errors reading or writing recordings and the audit log.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No such session.
    #[error("no recorded session '{0}'")]
    NoSuchSession(String),
}

impl RecordingError {
    /// Wraps an I/O error.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RecordingError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Result with [`RecordingError`].
pub type Result<T, E = RecordingError> = std::result::Result<T, E>;
