//! Advisory file locks (flock) that serialise work across processes: image shifting,
//! address allocation, and a supervisor's claim on its container.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Result, RuntimeError};

/// An exclusive lock, held until dropped.
pub type Lock = Flock<File>;

fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| RuntimeError::io("cannot open", path, e))
}

/// Takes the exclusive lock on `path` (created if missing), waiting for other holders.
pub fn lock(path: &Path) -> Result<Lock> {
    Flock::lock(open(path)?, FlockArg::LockExclusive)
        .map_err(|(_, e)| RuntimeError::io("cannot lock", path, e.into()))
}

/// Takes the lock if nobody holds it: `Ok(None)` when it is held elsewhere.
pub fn try_lock(path: &Path) -> Result<Option<Lock>> {
    match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(RuntimeError::io("cannot lock", path, e.into())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exclusive_between_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let held = super::lock(&p).unwrap();
        assert!(super::try_lock(&p).unwrap().is_none());
        drop(held);
        assert!(super::try_lock(&p).unwrap().is_some());
    }
}
