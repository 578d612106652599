//! Every kernel call that sets up a container goes through the [`Syscall`] trait, so the
//! set-up logic can be unit-tested without root against [`RecordingSyscall`]; the real
//! implementation is [`LinuxSyscall`].

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// The kernel calls used to build a container's filesystem view.
pub trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// `mkdir -p` with a mode for the last component.
    fn mkdir_all(&self, path: &Path, mode: u32) -> std::io::Result<()>;
    /// Makes `root/name` a directory unless it is one, and checks that it is a real
    /// directory beneath `root`, not a symlink (an error otherwise).
    fn real_dir(&self, root: &Path, name: &str, mode: u32) -> std::io::Result<()>;
    /// Creates an empty regular file (a bind-mount target) unless it exists.
    fn touch(&self, path: &Path) -> std::io::Result<()>;
    /// Creates a symbolic link, replacing nothing.
    fn symlink(&self, target: &Path, link: &Path) -> std::io::Result<()>;
    /// Writes a small file.
    fn write_file(&self, path: &Path, data: &[u8]) -> std::io::Result<()>;
    /// `pivot_root` into `new_root` and detach the old root.
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()>;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    /// `chdir(2)`.
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    /// Binds `source` onto `target` read-only, its owners mapped through the user
    /// namespace `userns` (an id-mapped mount).
    fn bind_idmapped(
        &self,
        source: &Path,
        target: &Path,
        userns: &std::os::fd::OwnedFd,
    ) -> nix::Result<()>;
}

/// The real kernel.
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn bind_idmapped(
        &self,
        source: &Path,
        target: &Path,
        userns: &std::os::fd::OwnedFd,
    ) -> nix::Result<()> {
        super::idmap::bind(source, target, userns)
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if path.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)?;
        // The umask trimmed the mode (a sticky 1777 would come out 1755): set it exactly.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn real_dir(&self, root: &Path, name: &str, mode: u32) -> std::io::Result<()> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(root, flags, Mode::empty())?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
        rustix::fs::openat2(&dir, name, flags | OFlags::NOFOLLOW, Mode::empty(), resolve)?;
        Ok(())
    }

    fn touch(&self, path: &Path) -> std::io::Result<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map(drop)
    }

    fn symlink(&self, target: &Path, link: &Path) -> std::io::Result<()> {
        match std::os::unix::fs::symlink(target, link) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::write(path, data)
    }

    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }
}

/// One recorded call, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A mount: source, target, fstype, flags, data.
    Mount(
        Option<PathBuf>,
        PathBuf,
        Option<String>,
        MsFlags,
        Option<String>,
    ),
    /// A directory created.
    Mkdir(PathBuf, u32),
    /// A directory made or found, checked to be no symlink.
    RealDir(PathBuf),
    /// A file created.
    Touch(PathBuf),
    /// A symlink: target, link.
    Symlink(PathBuf, PathBuf),
    /// A file written.
    Write(PathBuf, Vec<u8>),
    /// pivot_root into this directory.
    PivotRoot(PathBuf),
    /// The hostname set.
    Hostname(String),
    /// The working directory changed.
    Chdir(PathBuf),
    /// An id-mapped, read-only bind of the first path onto the second.
    BindIdmapped(PathBuf, PathBuf),
}

/// Records calls instead of making them.
#[derive(Default)]
pub struct RecordingSyscall {
    calls: std::cell::RefCell<Vec<Call>>,
}

impl RecordingSyscall {
    /// The calls made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn push(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

impl Syscall for RecordingSyscall {
    fn bind_idmapped(
        &self,
        source: &Path,
        target: &Path,
        _userns: &std::os::fd::OwnedFd,
    ) -> nix::Result<()> {
        self.push(Call::BindIdmapped(
            source.to_path_buf(),
            target.to_path_buf(),
        ));
        Ok(())
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.push(Call::Mount(
            source.map(Path::to_path_buf),
            target.to_path_buf(),
            fstype.map(str::to_owned),
            flags,
            data.map(str::to_owned),
        ));
        Ok(())
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> std::io::Result<()> {
        self.push(Call::Mkdir(path.to_path_buf(), mode));
        Ok(())
    }

    fn real_dir(&self, root: &Path, name: &str, _mode: u32) -> std::io::Result<()> {
        self.push(Call::RealDir(root.join(name)));
        Ok(())
    }

    fn touch(&self, path: &Path) -> std::io::Result<()> {
        self.push(Call::Touch(path.to_path_buf()));
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> std::io::Result<()> {
        self.push(Call::Symlink(target.to_path_buf(), link.to_path_buf()));
        Ok(())
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.push(Call::Write(path.to_path_buf(), data.to_vec()));
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        self.push(Call::PivotRoot(new_root.to_path_buf()));
        Ok(())
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.push(Call::Hostname(name.to_string()));
        Ok(())
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.push(Call::Chdir(path.to_path_buf()));
        Ok(())
    }
}
