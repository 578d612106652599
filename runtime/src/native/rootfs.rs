//! Builds a container's filesystem view inside its new mount namespace: the overlay of
//! its own upper layer on the read-only image, a private `/proc` (with the dangerous
//! files masked), a read-only `/sys`, a minimal `/dev` with a private devpts, tmpfs
//! `/run` and `/dev/shm`, then `pivot_root`. Runs in the container's first process.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::syscall::Syscall;

/// Where a container's layers live on the host.
#[derive(Debug, Clone)]
pub struct Layers {
    /// The image's root filesystem (read-only lower layer).
    pub lower: PathBuf,
    /// The container's own changes.
    pub upper: PathBuf,
    /// Overlayfs work directory (same filesystem as `upper`).
    pub work: PathBuf,
    /// The mount point of the merged root.
    pub merged: PathBuf,
}

/// Host device nodes bind-mounted into the container's `/dev` (mknod is not used).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Files under `/proc` hidden behind `/dev/null`.
const MASKED_PROC_FILES: &[&str] = &[
    "kcore",
    "keys",
    "sysrq-trigger",
    "timer_list",
    "latency_stats",
];
/// Directories under `/proc` made read-only.
const READONLY_PROC_DIRS: &[&str] = &["sys", "bus", "irq", "fs"];

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Mounts the container's overlay (its own layer over the image) in the supervisor's
/// private mount namespace, as real root, before the container's user namespace exists;
/// the container's mount namespace starts as a copy holding it.
/// With `image`, the image's tree is first bound at `layers.lower`, id-mapped through the
/// given user namespace (read-only and nodev as well).
pub fn mount_overlay(
    sys: &dyn Syscall,
    layers: &Layers,
    image: Option<(&Path, &std::os::fd::OwnedFd)>,
) -> Result<(), String> {
    make_rslave(sys)?;
    if let Some((tree, ids)) = image {
        sys.bind_idmapped(tree, &layers.lower, ids)
            .map_err(|e| err("cannot map the image's ids onto", &layers.lower, e))?;
    }

    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        layers.lower.display(),
        layers.upper.display(),
        layers.work.display()
    );
    // nodev: no device node in the container's files opens a host device, whatever its
    // root unmounts inside (the flag is locked in the container's mount namespace).
    sys.mount(
        Some(Path::new("overlay")),
        &layers.merged,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(&data),
    )
    .map_err(|e| err("cannot mount overlay on", &layers.merged, e))
}

/// Inside the container's namespaces, still with the credentials it was cloned with
/// (host uid 0, so a state directory only root may enter is reachable): stops mount
/// propagation, binds the overlay at `root` onto itself (the overlay came from the
/// supervisor's namespace and is locked here; the bind is our own mount, which pivot_root
/// accepts), and moves into it. Everything after works relative to `.`.
pub fn enter_root(sys: &dyn Syscall, root: &Path) -> Result<(), String> {
    make_rslave(sys)?;
    sys.mount(
        Some(root),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| err("cannot bind", root, e))?;
    sys.chdir(root).map_err(|e| err("cannot enter", root, e))
}

/// Inside the container's namespaces: sets up `/proc`, `/sys`, `/dev`, `/run` on the
/// mounted overlay at `root`, sets the hostname and pivots into it. Files inside are
/// written only after the pivot, so no symlink in the container can point them at the host.
pub fn build(sys: &dyn Syscall, root: &Path, hostname: &str) -> Result<(), String> {
    let none: Option<&Path> = None;
    let at = |p: &str| root.join(p);
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;

    // /proc with the dangerous parts masked or read-only.
    mkdir(sys, &at("proc"), 0o555)?;
    mount(sys, "proc", &at("proc"), "proc", nosuid_nodev_noexec, None)?;
    for file in MASKED_PROC_FILES {
        let target = at("proc").join(file);
        // Files the kernel lacks are simply not there to mask.
        let _ = sys.mount(
            Some(Path::new("/dev/null")),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        );
    }
    for dir in READONLY_PROC_DIRS {
        let target = at("proc").join(dir);
        if sys
            .mount(
                Some(&target),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .is_ok()
        {
            sys.mount(
                none,
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| err("cannot make read-only", &target, e))?;
        }
    }

    mkdir(sys, &at("sys"), 0o555)?;
    mount(
        sys,
        "sysfs",
        &at("sys"),
        "sysfs",
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?;

    // A minimal /dev on tmpfs.
    let dev = at("dev");
    mkdir(sys, &dev, 0o755)?;
    mount(
        sys,
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536k,uid=0,gid=0"),
    )?;
    for name in DEVICES {
        let target = dev.join(name);
        sys.touch(&target)
            .map_err(|e| err("cannot create", &target, e))?;
        let source = Path::new("/dev").join(name);
        sys.mount(Some(&source), &target, None, MsFlags::MS_BIND, None)
            .map_err(|e| err("cannot bind", &target, e))?;
    }
    mkdir(sys, &dev.join("pts"), 0o755)?;
    mount(
        sys,
        "devpts",
        &dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mkdir(sys, &dev.join("shm"), 0o1777)?;
    mount(
        sys,
        "shm",
        &dev.join("shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k,uid=0,gid=0"),
    )?;
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        let link = dev.join(link);
        sys.symlink(Path::new(target), &link)
            .map_err(|e| err("cannot create", &link, e))?;
    }

    mkdir(sys, &at("run"), 0o755)?;
    mount(
        sys,
        "tmpfs",
        &at("run"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755,uid=0,gid=0"),
    )?;
    mkdir(sys, &at("run/lock"), 0o1777)?;

    sys.sethostname(hostname)
        .map_err(|e| format!("cannot set hostname: {e}"))?;
    sys.pivot_root(root)
        .map_err(|e| err("cannot pivot_root into", root, e))
}

/// Keeps host mount events from propagating into this mount namespace, and ours out.
fn make_rslave(sys: &dyn Syscall) -> Result<(), String> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None,
    )
    .map_err(|e| err("cannot make private", Path::new("/"), e))
}

fn mkdir(sys: &dyn Syscall, path: &Path, mode: u32) -> Result<(), String> {
    sys.mkdir_all(path, mode)
        .map_err(|e| err("cannot create", path, e))
}

fn mount(
    sys: &dyn Syscall,
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    sys.mount(Some(Path::new(source)), target, Some(fstype), flags, data)
        .map_err(|e| err(&format!("cannot mount {fstype} on"), target, e))
}

#[cfg(test)]
mod tests {
    use super::super::syscall::{Call, RecordingSyscall};
    use super::*;

    fn layers() -> Layers {
        Layers {
            lower: "/s/images/debian-12/rootfs".into(),
            upper: "/s/containers/web01/upper".into(),
            work: "/s/containers/web01/work".into(),
            merged: "/s/containers/web01/rootfs".into(),
        }
    }

    #[test]
    fn builds_the_expected_view() {
        let sys = RecordingSyscall::default();
        mount_overlay(&sys, &layers(), None).unwrap();
        enter_root(&sys, &layers().merged).unwrap();
        build(&sys, &layers().merged, "web01").unwrap();
        let calls = sys.calls();
        // First the propagation change, last the pivot.
        assert!(matches!(&calls[0], Call::Mount(None, p, None, f, None)
            if p == Path::new("/") && f.contains(MsFlags::MS_SLAVE | MsFlags::MS_REC)));
        assert_eq!(
            calls.last(),
            Some(&Call::PivotRoot("/s/containers/web01/rootfs".into()))
        );
        let mounts: Vec<(PathBuf, Option<String>, MsFlags, Option<String>)> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount(_, t, ty, f, d) => Some((t.clone(), ty.clone(), *f, d.clone())),
                _ => None,
            })
            .collect();
        let find = |target: &str| {
            mounts
                .iter()
                .find(|m| m.0 == Path::new(target) && m.1.is_some())
                .unwrap_or_else(|| panic!("no mount on {target}"))
        };
        let overlay = find("/s/containers/web01/rootfs");
        assert_eq!(overlay.1.as_deref(), Some("overlay"));
        assert!(overlay.2.contains(MsFlags::MS_NODEV), "{:?}", overlay.2);
        assert!(overlay
            .3
            .as_deref()
            .unwrap()
            .contains("upperdir=/s/containers/web01/upper"));
        assert!(find("/s/containers/web01/rootfs/sys")
            .2
            .contains(MsFlags::MS_RDONLY));
        let pts = find("/s/containers/web01/rootfs/dev/pts");
        assert!(pts.3.as_deref().unwrap().contains("newinstance"));
        assert!(calls.contains(&Call::Hostname("web01".into())));
        // No host path other than the device nodes and /dev/null masks is mounted in.
        for c in &calls {
            if let Call::Mount(Some(src), _, None, f, _) = c {
                if f.contains(MsFlags::MS_BIND) && !f.contains(MsFlags::MS_REMOUNT) {
                    let s = src.to_string_lossy();
                    assert!(
                        s.starts_with("/dev/")
                            || s.starts_with("/s/containers/web01/rootfs/proc/")
                            || s == "/s/containers/web01/rootfs",
                        "unexpected bind of {s}"
                    );
                }
            }
        }
    }
}
