//! Builds a container's filesystem view: the overlay of its own upper layer on the
//! read-only image, a private `/proc` (with the dangerous files masked), a read-only
//! `/sys`, a minimal `/dev` with a private devpts, tmpfs `/run` and `/dev/shm` (all made
//! as host root in the supervisor's mount namespace, so they are locked in the
//! container's), then `pivot_root` in the container's first process.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::cgroups::CgroupView;
use super::error::{NativeError, Result};
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

/// Files under `/proc` hidden behind `/dev/null` (Docker's and LXC's list).
const MASKED_PROC_FILES: &[&str] = &[
    "kcore",
    "keys",
    "sysrq-trigger",
    "timer_list",
    "timer_stats",
    "latency_stats",
    "sched_debug",
];
/// Directories under `/proc` and `/sys` hidden behind an empty read-only tmpfs: hardware
/// the container has no business with, and the power meters (a side channel).
const MASKED_DIRS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];
/// Directories under `/proc` made read-only.
const READONLY_PROC_DIRS: &[&str] = &["sys", "bus", "irq", "fs"];

/// Mounts the container's overlay (its own layer over the image) in the supervisor's
/// private mount namespace, as real root, before the container's user namespace exists;
/// the container's mount namespace starts as a copy holding it.
/// With `image`, the image's tree is first bound at `layers.lower`, id-mapped through the
/// given user namespace (read-only and nodev as well).
/// The layers are named relative to their common directory, so the overlay's options in
/// the container's `/proc/self/mountinfo` show no host path.
pub fn mount_overlay(
    sys: &dyn Syscall,
    layers: &Layers,
    image: Option<(&Path, &std::os::fd::OwnedFd)>,
) -> Result<()> {
    make_rslave(sys)?;
    if let Some((tree, ids)) = image {
        sys.bind_idmapped(tree, &layers.lower, ids)
            .map_err(NativeError::sys_at(
                "map the image's ids onto",
                &layers.lower,
            ))?;
    }
    let dir = layers.merged.parent().ok_or_else(|| {
        NativeError::Failed(format!("no directory holds {}", layers.merged.display()))
    })?;
    // Each layer by its name relative to the container's directory (`upper`, or
    // `disk/upper` on a disk of its own): overlayfs's options stay short and need no
    // escaping, whatever the state directory's path.
    let name = |p: &Path| match p.strip_prefix(dir) {
        Ok(rel)
            if rel.components().count() >= 1
                && rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))) =>
        {
            Ok(rel.to_string_lossy().into_owned())
        }
        _ => Err(NativeError::Failed(format!(
            "the layer {} is not inside {}",
            p.display(),
            dir.display()
        ))),
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        name(&layers.lower)?,
        name(&layers.upper)?,
        name(&layers.work)?
    );
    sys.chdir(dir).map_err(NativeError::sys_at("enter", dir))?;
    // nodev: no device node in the container's files opens a host device, whatever its
    // root unmounts inside (the flag is locked in the container's mount namespace).
    let mounted = sys
        .mount(
            Some(Path::new("overlay")),
            &layers.merged,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(&data),
        )
        .map_err(NativeError::sys_at("mount overlay on", &layers.merged));
    sys.chdir(Path::new("/"))
        .map_err(NativeError::sys_at("enter", "/"))?;
    mounted
}

/// Inside the container's namespaces, still with the credentials it was cloned with
/// (host uid 0, so a state directory only root may enter is reachable): stops mount
/// propagation, binds the overlay at `root` onto itself (the overlay came from the
/// supervisor's namespace and is locked here; the bind is our own mount, which pivot_root
/// accepts), and moves into it. Everything after works relative to `.`.
pub fn enter_root(sys: &dyn Syscall, root: &Path) -> Result<()> {
    make_rslave(sys)?;
    sys.mount(
        Some(root),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(NativeError::sys_at("bind", root))?;
    sys.chdir(root).map_err(NativeError::sys_at("enter", root))
}

/// Mounts the container's `/proc` (dangerous parts masked or read-only), a read-only
/// `/sys`, a minimal `/dev` with a private devpts and `/dev/shm`, and `/run`, on the
/// overlay at `root`. Runs as host root in the supervisor's mount namespace, in a child
/// that joined the container's pid and network namespaces (whose `/proc` and `/sys` these
/// are): the container's mount namespace is made afterwards as a copy owned by its user
/// namespace, so every one of these mounts is locked there, and container root can
/// neither unmount a mask nor make a read-only mount writable. `id_base` is the host id
/// of the container's root, which owns the tmpfs mounts.
///
/// The mount points are the container's own directories: each is made a real directory
/// (a symlink planted in the container's layer, by a restore say, is refused), and no
/// process of the container runs yet that could change it.
pub fn mount_system(sys: &dyn Syscall, root: &Path, id_base: u32) -> Result<()> {
    for (dir, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
    ] {
        let what = "use the container's mount point (it must be a directory, not a link)";
        sys.real_dir(root, dir, mode)
            .map_err(NativeError::io(what, root.join(dir)))?;
    }
    mount_proc(sys, &root.join("proc"))?;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let sys_flags = nosuid_nodev_noexec | MsFlags::MS_RDONLY;
    mount(sys, "sysfs", &root.join("sys"), "sysfs", sys_flags, None)?;
    for dir in MASKED_DIRS {
        // Directories the kernel lacks are simply not there to mask.
        let data = Some("mode=555");
        let _ = sys.mount(
            Some(Path::new("tmpfs")),
            &root.join(dir),
            Some("tmpfs"),
            sys_flags,
            data,
        );
    }
    mount_dev(sys, &root.join("dev"), id_base)?;
    let run = format!("mode=755,uid={id_base},gid={id_base}");
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(
        sys,
        "tmpfs",
        &root.join("run"),
        "tmpfs",
        nosuid_nodev,
        Some(&run),
    )
}

/// The container's `/sys/fs/cgroup`, as an init like systemd expects it. On a v1 host:
/// a tmpfs with, for each hierarchy, the container's own cgroup bound in (name, host
/// directory, writable), read-only but for the one its init manages; the tmpfs itself
/// read-only once filled. On a v2 host: the container's own cgroup bound whole (what is
/// delegated in it is the container root's, its limits stay the host's). Called after
/// [`mount_system`] (the sysfs it sits on).
pub fn mount_cgroups(sys: &dyn Syscall, root: &Path, view: Option<&CgroupView>) -> Result<()> {
    let fs = root.join("sys/fs/cgroup");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match view {
        None => Ok(()),
        Some(CgroupView::Unified(dir)) => bind_restricted(sys, dir, &fs, flags),
        Some(CgroupView::PerController(views)) => {
            mount(sys, "tmpfs", &fs, "tmpfs", flags, Some("mode=755"))?;
            for (name, host, writable) in views {
                let target = fs.join(name);
                sys.mkdir_all(&target, 0o755)
                    .map_err(NativeError::io("create", &target))?;
                let restricted = if *writable {
                    flags
                } else {
                    flags | MsFlags::MS_RDONLY
                };
                bind_restricted(sys, host, &target, restricted)?;
            }
            let sealed = flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            let none: Option<&Path> = None;
            sys.mount(none, &fs, None, sealed, Some("mode=755"))
                .map_err(NativeError::sys_at("make read-only", &fs))
        }
    }
}

/// Binds `host` on `target`, then remounts the bind with `flags`.
fn bind_restricted(sys: &dyn Syscall, host: &Path, target: &Path, flags: MsFlags) -> Result<()> {
    sys.mount(Some(host), target, None, MsFlags::MS_BIND, None)
        .map_err(NativeError::sys_at(
            "bind the container's cgroup on",
            target,
        ))?;
    let none: Option<&Path> = None;
    let remount = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    sys.mount(none, target, None, remount, None)
        .map_err(NativeError::sys_at("restrict", target))
}

/// Binds LXCFS's files over the container's `/proc` (see [`super::lxcfs`]) when LXCFS
/// runs; a file that cannot be bound keeps the host's figures.
pub fn mount_lxcfs(sys: &dyn Syscall, root: &Path) {
    if !super::lxcfs::mounted() {
        return;
    }
    for (from, to) in super::lxcfs::proc_binds(&root.join("proc")) {
        let _ = sys.mount(Some(&from), &to, None, MsFlags::MS_BIND, None);
    }
}

/// `/proc` with the dangerous parts masked or read-only.
fn mount_proc(sys: &dyn Syscall, proc: &Path) -> Result<()> {
    let none: Option<&Path> = None;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(sys, "proc", proc, "proc", nosuid_nodev_noexec, None)?;
    for file in MASKED_PROC_FILES {
        // Files the kernel lacks are simply not there to mask.
        let _ = sys.mount(
            Some(Path::new("/dev/null")),
            &proc.join(file),
            None,
            MsFlags::MS_BIND,
            None,
        );
    }
    for dir in READONLY_PROC_DIRS {
        let target = proc.join(dir);
        let rec_bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        if sys
            .mount(Some(&target), &target, None, rec_bind, None)
            .is_ok()
        {
            let flags = rec_bind | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            sys.mount(none, &target, None, flags, None)
                .map_err(NativeError::sys_at("make read-only", &target))?;
        }
    }
    Ok(())
}

/// A minimal `/dev` on tmpfs: the host's harmless device nodes bound in (mknod is not
/// used), a private devpts whose terminals belong to the container's `tty` group (5), and
/// `/dev/shm`.
fn mount_dev(sys: &dyn Syscall, dev: &Path, id_base: u32) -> Result<()> {
    let owner = format!("uid={id_base},gid={id_base}");
    let dev_data = format!("mode=755,size=65536k,{owner}");
    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(sys, "tmpfs", dev, "tmpfs", nosuid_noexec, Some(&dev_data))?;
    for name in DEVICES {
        let target = dev.join(name);
        sys.touch(&target)
            .map_err(NativeError::io("create", &target))?;
        let source = Path::new("/dev").join(name);
        sys.mount(Some(&source), &target, None, MsFlags::MS_BIND, None)
            .map_err(NativeError::sys_at("bind", &target))?;
    }
    mkdir(sys, &dev.join("pts"), 0o755)?;
    let tty = id_base + 5;
    let pts_data = format!("newinstance,ptmxmode=0666,mode=0620,gid={tty}");
    mount(
        sys,
        "devpts",
        &dev.join("pts"),
        "devpts",
        nosuid_noexec,
        Some(&pts_data),
    )?;
    mkdir(sys, &dev.join("shm"), 0o1777)?;
    let shm_data = format!("mode=1777,size=65536k,{owner}");
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(
        sys,
        "shm",
        &dev.join("shm"),
        "tmpfs",
        nosuid_nodev,
        Some(&shm_data),
    )
}

/// Inside the container's namespaces, as its root, on the view [`mount_system`] made at
/// `root`: the usual links in `/dev`, `/run/lock`, the hostname, then `pivot_root`. Files
/// inside are written only after the pivot, so no symlink in the container can point
/// them at the host.
pub fn finish(sys: &dyn Syscall, root: &Path, hostname: &str) -> Result<()> {
    let dev = root.join("dev");
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        let link = dev.join(link);
        sys.symlink(Path::new(target), &link)
            .map_err(NativeError::io("create", &link))?;
    }
    mkdir(sys, &root.join("run/lock"), 0o1777)?;
    sys.sethostname(hostname)
        .map_err(NativeError::sys("cannot set the hostname"))?;
    sys.pivot_root(root)
        .map_err(NativeError::sys_at("pivot_root into", root))
}

/// Keeps host mount events from propagating into this mount namespace, and ours out.
fn make_rslave(sys: &dyn Syscall) -> Result<()> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None,
    )
    .map_err(NativeError::sys_at("make private", "/"))
}

fn mkdir(sys: &dyn Syscall, path: &Path, mode: u32) -> Result<()> {
    sys.mkdir_all(path, mode)
        .map_err(NativeError::io("create", path))
}

fn mount(
    sys: &dyn Syscall,
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    sys.mount(Some(Path::new(source)), target, Some(fstype), flags, data)
        .map_err(NativeError::sys_at(format!("mount {fstype} on"), target))
}

#[cfg(test)]
mod tests {
    use super::super::syscall::{Call, RecordingSyscall};
    use super::*;

    fn layers() -> Layers {
        Layers {
            lower: "/s/containers/web01/lower".into(),
            upper: "/s/containers/web01/upper".into(),
            work: "/s/containers/web01/work".into(),
            merged: "/s/containers/web01/rootfs".into(),
        }
    }

    /// The mounts a cgroup view makes: (source, target, flags) of each.
    fn cgroup_mounts(view: &CgroupView) -> Vec<(Option<PathBuf>, PathBuf, MsFlags)> {
        let sys = RecordingSyscall::default();
        mount_cgroups(&sys, Path::new("/r"), Some(view)).unwrap();
        sys.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Mount(src, t, _, f, _) => Some((src, t, f)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_v2_host_binds_the_containers_own_cgroup_writable_but_never_exec_or_dev() {
        let dir = PathBuf::from("/sys/fs/cgroup/gatehouse/web01");
        let mounts = cgroup_mounts(&CgroupView::Unified(dir.clone()));
        let target = PathBuf::from("/r/sys/fs/cgroup");
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        assert_eq!(mounts[0], (Some(dir), target.clone(), MsFlags::MS_BIND));
        let (_, t, f) = &mounts[1];
        assert_eq!(*t, target);
        assert!(f.contains(MsFlags::MS_REMOUNT | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV));
        assert!(!f.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn a_v1_host_gets_a_sealed_tmpfs_with_only_systemds_hierarchy_writable() {
        let view = CgroupView::PerController(vec![
            ("memory".into(), "/h/memory/gatehouse/w".into(), false),
            ("systemd".into(), "/h/systemd/gatehouse/w".into(), true),
        ]);
        let mounts = cgroup_mounts(&view);
        let remount_of = |t: &str| {
            mounts
                .iter()
                .rev()
                .find(|m| m.1 == Path::new(t) && m.2.contains(MsFlags::MS_REMOUNT))
                .map(|m| m.2)
                .unwrap()
        };
        assert!(remount_of("/r/sys/fs/cgroup/memory").contains(MsFlags::MS_RDONLY));
        assert!(!remount_of("/r/sys/fs/cgroup/systemd").contains(MsFlags::MS_RDONLY));
        assert!(remount_of("/r/sys/fs/cgroup").contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn builds_the_expected_view() {
        let sys = RecordingSyscall::default();
        let root = layers().merged;
        mount_overlay(&sys, &layers(), None).unwrap();
        mount_system(&sys, &root, 1_000_000).unwrap();
        enter_root(&sys, &root).unwrap();
        finish(&sys, &root, "web01").unwrap();
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
        // Named from the container's directory: no host path in its mountinfo.
        assert_eq!(
            overlay.3.as_deref(),
            Some("lowerdir=lower,upperdir=upper,workdir=work")
        );
        let at = calls
            .iter()
            .position(|c| matches!(c, Call::Mount(_, _, Some(t), _, _) if t == "overlay"));
        assert_eq!(
            calls[at.unwrap() - 1],
            Call::Chdir("/s/containers/web01".into())
        );
        // Every mount point is checked to be a real directory before it is used.
        for dir in ["proc", "sys", "dev", "run"] {
            let path = root.join(dir);
            let checked = calls.iter().position(|c| *c == Call::RealDir(path.clone()));
            let mounted = calls
                .iter()
                .position(|c| matches!(c, Call::Mount(_, t, Some(_), _, _) if *t == path));
            assert!(checked.unwrap() < mounted.unwrap(), "{dir}");
        }
        assert!(find("/s/containers/web01/rootfs/sys")
            .2
            .contains(MsFlags::MS_RDONLY));
        assert!(find("/s/containers/web01/rootfs/sys/firmware")
            .2
            .contains(MsFlags::MS_RDONLY));
        let pts = find("/s/containers/web01/rootfs/dev/pts");
        assert!(pts.3.as_deref().unwrap().contains("newinstance"));
        // The container's tty group, and its root owning the tmpfs mounts.
        assert!(pts.3.as_deref().unwrap().contains("gid=1000005"));
        for tmpfs in ["dev", "dev/shm", "run"] {
            let m = find(&format!("/s/containers/web01/rootfs/{tmpfs}"));
            assert!(
                m.3.as_deref().unwrap().contains("uid=1000000,gid=1000000"),
                "{tmpfs}"
            );
        }
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

    #[test]
    fn layers_outside_one_directory_are_refused() {
        let sys = RecordingSyscall::default();
        let mut l = layers();
        l.upper = "/elsewhere/upper".into();
        let e = mount_overlay(&sys, &l, None).unwrap_err();
        assert!(e.to_string().contains("not inside"), "{e}");
        l.upper = "/s/containers/web01/../other/upper".into();
        let e = mount_overlay(&sys, &l, None).unwrap_err();
        assert!(e.to_string().contains("not inside"), "{e}");
    }

    #[test]
    fn layers_on_a_disk_of_its_own_are_named_from_the_container_directory() {
        let sys = RecordingSyscall::default();
        let mut l = layers();
        l.upper = "/s/containers/web01/disk/upper".into();
        l.work = "/s/containers/web01/disk/work".into();
        mount_overlay(&sys, &l, None).unwrap();
        let calls = format!("{:?}", sys.calls());
        assert!(
            calls.contains("lowerdir=lower,upperdir=disk/upper,workdir=disk/work"),
            "{calls}"
        );
    }
}
