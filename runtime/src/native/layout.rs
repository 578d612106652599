//! The files of one container under `state_dir/containers/<name>/`.

use std::path::PathBuf;

/// Paths of a container's state.
#[derive(Debug, Clone)]
pub struct ContainerLayout {
    /// The container's directory.
    pub dir: PathBuf,
}

impl ContainerLayout {
    /// The layout of the container directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ContainerLayout { dir: dir.into() }
    }
    /// The container's own writable layer (persistent): on its disk when it has one
    /// (see [`super::disk`]).
    pub fn upper(&self) -> PathBuf {
        self.layer_dir().join("upper")
    }
    /// Where the image is mounted, id-mapped to the container's range, as its lower
    /// layer (a mount point in the supervisor's mount namespace only).
    pub fn lower(&self) -> PathBuf {
        self.dir.join("lower")
    }
    /// Overlayfs work directory (on the same filesystem as [`Self::upper`]).
    pub fn work(&self) -> PathBuf {
        self.layer_dir().join("work")
    }
    /// The directory holding `upper` and `work`: the container's disk, or its directory.
    fn layer_dir(&self) -> PathBuf {
        if super::disk::exists(&self.dir) {
            super::disk::mount_point(&self.dir)
        } else {
            self.dir.clone()
        }
    }
    /// Mount point of the merged root (inside the container's mount namespace only).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// The supervisor's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("supervisor.sock")
    }
    /// Held (flock) by the supervisor for as long as it lives.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }
    /// The supervisor's log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// When the container rebooted lately (seconds since the epoch, one a line).
    pub fn reboots(&self) -> PathBuf {
        self.dir.join("reboots")
    }
}
