//! The native runtime's error: what failed in its kernel and file work, typed by kind,
//! with the path or call it concerns. Messages cross process boundaries (a forked child,
//! the container's init) as the text of a `Handshake::Failed`.

use std::path::PathBuf;

/// What went wrong setting up or serving a native container.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// A file or directory could not be used.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `mount proc on`…).
        what: String,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {errno}")]
    Sys {
        /// What was being done.
        what: String,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// A system call on a path failed.
    #[error("cannot {what} {}: {errno}", path.display())]
    SysAt {
        /// What was being done.
        what: String,
        /// The path involved.
        path: PathBuf,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// A step failed on an I/O error.
    #[error("{what}: {source}")]
    IoStep {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Nobody listens on the supervisor's socket: the container is not running.
    #[error("not running ({0})")]
    NotRunning(std::io::Error),
    /// The other end closed the connection before answering.
    #[error("the supervisor closed the connection")]
    Closed,
    /// The seccomp filter could not be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// What another process (a forked child, the container's init, a tool) reported,
    /// or a state the container was found in.
    #[error("{0}")]
    Failed(String),
}

impl NativeError {
    /// An I/O error on `path` while doing `what`.
    pub fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let (what, path) = (what.into(), path.into());
        move |source| NativeError::Io { what, path, source }
    }

    /// A failed system call, `what` saying which and why.
    pub fn sys(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Self {
        let what = what.into();
        move |errno| NativeError::Sys { what, errno }
    }

    /// A failed system call on `path`.
    pub fn sys_at(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(nix::errno::Errno) -> Self {
        let (what, path) = (what.into(), path.into());
        move |errno| NativeError::SysAt { what, path, errno }
    }
}

/// What a failed step can be caused by: a system call's errno, an I/O error, or the
/// text another process sent.
pub trait Cause {
    /// The error of step `what` that failed with this.
    fn in_step(self, what: String) -> NativeError;
}

impl Cause for nix::errno::Errno {
    fn in_step(self, what: String) -> NativeError {
        NativeError::Sys { what, errno: self }
    }
}

impl Cause for std::io::Error {
    fn in_step(self, what: String) -> NativeError {
        NativeError::IoStep { what, source: self }
    }
}

impl Cause for String {
    fn in_step(self, what: String) -> NativeError {
        NativeError::Failed(format!("{what}: {self}"))
    }
}

impl Cause for NativeError {
    fn in_step(self, what: String) -> NativeError {
        NativeError::Failed(format!("{what}: {self}"))
    }
}

impl Cause for serde_json::Error {
    fn in_step(self, what: String) -> NativeError {
        NativeError::Failed(format!("{what}: {self}"))
    }
}

impl Cause for tokio::task::JoinError {
    fn in_step(self, what: String) -> NativeError {
        NativeError::Failed(format!("{what}: {self}"))
    }
}

impl NativeError {
    /// The error of step `what`, whatever caused it.
    pub fn step<C: Cause>(what: impl Into<String>) -> impl FnOnce(C) -> Self {
        let what = what.into();
        move |cause| cause.in_step(what)
    }
}

impl From<&str> for NativeError {
    fn from(text: &str) -> Self {
        NativeError::Failed(text.to_string())
    }
}

/// Text from a process that could only send text (see `handshake.rs`).
impl From<String> for NativeError {
    fn from(text: String) -> Self {
        NativeError::Failed(text)
    }
}

/// For the handshakes, which carry the message as text.
impl From<NativeError> for String {
    fn from(e: NativeError) -> Self {
        e.to_string()
    }
}

/// The result of native runtime work.
pub type Result<T, E = NativeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_call_and_the_path() {
        let e = NativeError::io("write", "/sys/fs/cgroup/x/pids.max")(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        ));
        assert_eq!(
            e.to_string(),
            "cannot write /sys/fs/cgroup/x/pids.max: permission denied"
        );
        let e = NativeError::sys_at("mount proc on", "/r/proc")(nix::errno::Errno::EPERM);
        assert_eq!(
            e.to_string(),
            "cannot mount proc on /r/proc: EPERM: Operation not permitted"
        );
        let e = NativeError::sys("signalfd")(nix::errno::Errno::EMFILE);
        assert!(e.to_string().starts_with("signalfd: EMFILE"));
        assert_eq!(String::from(NativeError::from("x".to_string())), "x");
    }
}
