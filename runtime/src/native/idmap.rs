//! Id-mapped mounts: the image layer, stored once with the image's id range, is seen by
//! each container with its own range (as LXD's `security.idmap.isolated`), so one
//! container's root is nobody to another's files, and no container's ids own the image.

use super::error::NativeError;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

/// A user namespace that maps ids `from`… to `to`… (`count` of them), held by its
/// descriptor: what an id-mapped mount is given to map its files' owners. Made by a
/// short-lived child that enters a new user namespace, whose maps are then written, and
/// which is killed once its namespace is held. Must be called single-threaded.
pub fn userns(from: u32, to: u32, count: u32) -> Result<OwnedFd, NativeError> {
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(NativeError::step("pipe"))?;
    let (hold_r, hold_w) = nix::unistd::pipe().map_err(NativeError::step("pipe"))?;
    // SAFETY: the caller is single-threaded; the child makes raw calls and exits.
    let child = match unsafe { nix::unistd::fork() }.map_err(NativeError::step("fork"))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = File::from(ready_w).write_all(if ok { b"u" } else { b"e" });
            // Wait until the parent holds the namespace (or goes away).
            let _ = File::from(hold_r).read(&mut [0u8; 1]);
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(hold_r);
    let result = (|| -> Result<OwnedFd, NativeError> {
        let mut byte = [0u8; 1];
        File::from(ready_r)
            .read_exact(&mut byte)
            .map_err(NativeError::step("id map helper"))?;
        if byte[0] != b'u' {
            return Err("id map helper: cannot make a user namespace".into());
        }
        let map = format!("{from} {to} {count}\n");
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{}/{file}", child.as_raw());
            std::fs::write(&path, &map)
                .map_err(NativeError::step(format!("cannot write {path}")))?;
        }
        let path = format!("/proc/{}/ns/user", child.as_raw());
        File::open(&path)
            .map(OwnedFd::from)
            .map_err(NativeError::step(format!("cannot open {path}")))
    })();
    drop(hold_w);
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    result
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Binds `source` onto `target` with its owners mapped through `userns` (see
/// [`userns`]): `open_tree` clones the tree, `mount_setattr` maps it, `move_mount`
/// attaches it. Read-only as well: the image layer is never written through it.
pub fn bind(
    source: &std::path::Path,
    target: &std::path::Path,
    userns: &OwnedFd,
) -> nix::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let src = CString::new(source.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let dst = CString::new(target.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: a path string and flags; the result is a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    if tree < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: open_tree returned a descriptor we now own.
    let tree = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(tree as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: `attr` is a valid mount_attr of the size given; the path is empty.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: descriptors and path strings that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}
