//! Containers for gatehouse: the [`Runtime`] trait the gateway talks to, the embedded
//! [`native`] runtime, root filesystem [`images`], and the container [`inventory`].

pub mod accounts;
pub mod affinity;
pub mod api;
pub mod atomic;
pub mod devices;
pub mod error;
pub mod guest_path;
pub mod image_store;
pub mod images;
pub mod inventory;
pub mod limits;
pub mod lockfile;
pub mod lxd;
pub mod names;
pub mod native;
pub mod network;
pub mod sftp;
pub mod signals;
pub mod tree;

#[doc(hidden)]
pub mod fuzzing;

pub use api::{
    Account, ContainerState, DiskUsage, ExecSpec, ExitStatus, Process, ProcessControl, PtySpec,
    Runtime, SftpServer, StartOutcome, Usage, WindowSize,
};
pub use error::{LxdError, LxdRefusal, Result, RuntimeError};
pub use inventory::{ContainerRecord, InitChoice, Inventory};
pub use limits::Limits;

/// For the unit tests that change file owners: whether they can (root); if not, says
/// the test is skipped, in one line.
#[cfg(test)]
pub(crate) fn test_needs_root(test: &str) -> bool {
    use std::io::Write;
    let root = nix::unistd::geteuid().is_root();
    if !root {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {test} needs root (it sets file owners)"
        );
    }
    !root
}
