//! A disk of a container's own (`container create|set --disk 10G`): an ext4 filesystem in
//! a sparse image file, `containers/<name>/disk.ext4`, loop-mounted at
//! `containers/<name>/disk/` in the host's mount namespace, holding the container's
//! writable layer (`disk/upper`) and overlayfs's work directory (`disk/work`).
//!
//! The container's writes land on that filesystem only, so it cannot grow past its size:
//! filling it fails with ENOSPC inside while the host, other containers and recordings
//! keep their space; overlayfs reports the upper filesystem to `statfs`, so `df /` inside
//! shows the disk's size and use. The record (`container.json`), snapshots and the
//! supervisor's files stay beside it on the host's filesystem.
//!
//! The image is made by `mkfs.ext4`, attached and mounted by `mount -o loop` (which frees
//! the loop device when the last mount of it goes), grown online by `losetup -c` and
//! `resize2fs`: e2fsprogs and util-linux, the tools every Linux admin knows. Only the
//! kernel's ext4 driver ever writes the image (the container writes files, never the
//! image), and the image lives in the state directory, which only root may enter.
//!
//! Fail-safe: a container with an image whose filesystem is not mounted has no
//! `disk/upper` to write to, and [`ensure_mounted`] mounts it (or refuses) before any
//! start, snapshot or backup, so the layer never lands on the host's filesystem by mistake.

use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::api::DiskUsage;
use crate::error::{Result, RuntimeError};

/// The smallest disk: ext4's journal and metadata need a few MiB of it.
pub const MIN_SIZE: u64 = 64 << 20;

/// The image of the disk of the container whose directory is `dir`.
pub fn image(dir: &Path) -> PathBuf {
    dir.join("disk.ext4")
}

/// Where the disk of the container whose directory is `dir` is mounted.
pub fn mount_point(dir: &Path) -> PathBuf {
    dir.join("disk")
}

/// Whether the container in `dir` has a disk of its own.
pub fn exists(dir: &Path) -> bool {
    image(dir).is_file()
}

fn tool(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Tool(format!("container disk: {what}: {e}"))
}

/// Runs a tool, its standard error becoming the error when it fails.
fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| tool(&format!("cannot run {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(tool(program, err.trim()))
    }
}

/// Checks a requested size.
pub fn check_size(bytes: u64) -> Result<()> {
    if bytes < MIN_SIZE {
        return Err(RuntimeError::Invalid(format!(
            "a container's disk must be at least {} MiB",
            MIN_SIZE >> 20
        )));
    }
    Ok(())
}

/// Takes the container's disk lock: mounting, growing and making a disk take turns, so
/// nothing mounts an image while a tool writes it.
fn turn(dir: &Path) -> Result<crate::lockfile::Lock> {
    crate::lockfile::lock(&dir.join("disk.lock"))
}

/// Makes the disk of the container in `dir`, `bytes` large, and mounts it. Fails if it
/// has one already.
pub fn create(dir: &Path, bytes: u64) -> Result<()> {
    check_size(bytes)?;
    let _turn = turn(dir)?;
    let img = image(dir);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&img)
        .map_err(|e| RuntimeError::io("cannot create", &img, e))?;
    let made = file
        .set_len(bytes)
        .map_err(|e| RuntimeError::io("cannot size", &img, e))
        .and_then(|()| {
            // No reserved blocks (the whole size is the container's), lazy initialisation
            // (a 10G disk is made in a blink), and no discard of a sparse file.
            let opts = "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0";
            run(
                "mkfs.ext4",
                &["-q".as_ref(), "-F".as_ref(), "-m".as_ref(), "0".as_ref()]
                    .into_iter()
                    .chain(["-E".as_ref(), opts.as_ref(), img.as_os_str()])
                    .collect::<Vec<&std::ffi::OsStr>>(),
            )
        })
        .and_then(|()| mount(dir));
    if made.is_err() {
        let _ = unmount(dir);
        let _ = std::fs::remove_file(&img);
    }
    made
}

/// Whether the container in `dir` has its disk mounted (its mount point is another
/// filesystem than the directory holding it).
pub fn is_mounted(dir: &Path) -> bool {
    match (
        std::fs::symlink_metadata(dir),
        std::fs::symlink_metadata(mount_point(dir)),
    ) {
        (Ok(d), Ok(m)) => m.is_dir() && d.dev() != m.dev(),
        _ => false,
    }
}

/// Mounts the disk of the container in `dir` unless it is mounted; `false` when the
/// container has no disk.
pub fn ensure_mounted(dir: &Path) -> Result<bool> {
    if !exists(dir) {
        return Ok(false);
    }
    if is_mounted(dir) {
        return Ok(true);
    }
    let _turn = turn(dir)?;
    mount(dir)?;
    Ok(true)
}

/// Mounts the disk of the container in `dir` unless it is mounted (its turn taken).
fn mount(dir: &Path) -> Result<()> {
    if is_mounted(dir) {
        return Ok(());
    }
    let point = mount_point(dir);
    std::fs::create_dir_all(&point).map_err(|e| RuntimeError::io("cannot create", &point, e))?;
    run(
        "mount",
        &[
            "-t".as_ref(),
            "ext4".as_ref(),
            "-o".as_ref(),
            "loop,nodev".as_ref(),
            image(dir).as_os_str(),
            point.as_os_str(),
        ],
    )?;
    if !is_mounted(dir) {
        return Err(tool("mount", format!("{} is not mounted", point.display())));
    }
    Ok(())
}

/// Unmounts the disk of the container in `dir` if it is mounted (the loop device goes
/// with its last mount).
pub fn unmount(dir: &Path) -> Result<()> {
    if !is_mounted(dir) {
        return Ok(());
    }
    let point = mount_point(dir);
    nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| tool(&format!("cannot unmount {}", point.display()), e))?;
    if is_mounted(dir) {
        return Err(tool(
            "unmount",
            format!("{} is still mounted", point.display()),
        ));
    }
    Ok(())
}

/// In a supervisor's own mount namespace (already a slave of the host's, so nothing
/// propagates back): lets go of the copies of the other containers' disks it was made
/// with, so that a disk unmounted on the host is mounted nowhere and can be grown, and
/// a deleted one frees its space. `dir` is the supervisor's container's directory.
pub fn let_go_of_others(dir: &Path) -> Result<()> {
    // As the mount table names it: no symbolic link on the way.
    let dir = std::fs::canonicalize(dir).map_err(|e| RuntimeError::io("cannot read", dir, e))?;
    let (Some(all), Some(own)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| RuntimeError::io("cannot read", Path::new("/proc/self/mountinfo"), e))?;
    let prefix = format!("{}/", escape(&all.to_string_lossy()));
    let keep = format!("{prefix}{}/", escape(&own.to_string_lossy()));
    let mut others: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix) && !format!("{p}/").starts_with(&keep))
        .collect();
    others.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in others {
        let point = unescape(point);
        nix::mount::umount2(Path::new(&point), nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| tool(&format!("cannot let go of {point}"), e))?;
    }
    Ok(())
}

/// A path as `/proc/self/mountinfo` writes it (space, tab, newline, backslash octal).
fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// The path a `/proc/self/mountinfo` field names.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts and removes the disk of the container in `dir`, if it has one.
pub fn remove(dir: &Path) -> Result<()> {
    unmount(dir)?;
    let img = image(dir);
    match std::fs::remove_file(&img) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RuntimeError::io("cannot remove", &img, e))
        }
        _ => Ok(()),
    }
}

/// The size and use of the mounted disk of the container in `dir`.
pub fn usage(dir: &Path) -> Option<DiskUsage> {
    if !is_mounted(dir) {
        return None;
    }
    let st = nix::sys::statvfs::statvfs(&mount_point(dir)).ok()?;
    let frag = st.fragment_size() as u64;
    let size = (st.blocks() as u64).saturating_mul(frag);
    let free = (st.blocks_free() as u64).saturating_mul(frag);
    Some(DiskUsage {
        used: size.saturating_sub(free),
        size,
    })
}

/// The size of the image of the container in `dir`.
pub fn size(dir: &Path) -> Result<u64> {
    let img = image(dir);
    std::fs::metadata(&img)
        .map(|m| m.len())
        .map_err(|e| RuntimeError::io("cannot read", &img, e))
}

/// Grows the disk of the stopped container in `dir` to `bytes`: unmounted, checked
/// (`e2fsck -f -p`, which `resize2fs` asks for), the image lengthened, the filesystem
/// grown (`resize2fs` on the image) and mounted again. Offline, because growing a
/// mounted ext4 needs CAP_SYS_RESOURCE, which a gateway in a container may lack. A disk
/// does not shrink.
pub fn grow(dir: &Path, bytes: u64) -> Result<()> {
    if !check_change(dir, bytes)? {
        return Ok(());
    }
    let _turn = turn(dir)?;
    unmount(dir)?;
    let img = image(dir);
    let grown = released(&img)
        .and_then(|()| fsck(&img))
        .and_then(|()| {
            OpenOptions::new()
                .write(true)
                .open(&img)
                .and_then(|f| f.set_len(bytes))
                .map_err(|e| RuntimeError::io("cannot grow", &img, e))
        })
        .and_then(|()| run("resize2fs", &["-f".as_ref(), img.as_os_str()]));
    // Mounted again whatever happened: a failed resize leaves the old size.
    let mounted = mount(dir);
    grown.and(mounted)
}

/// Waits (up to 2 s) until no loop device is backed by `img` any more: the filesystem is
/// mounted nowhere (in no mount namespace), so tools may write the image.
fn released(img: &Path) -> Result<()> {
    let img = std::fs::canonicalize(img).map_err(|e| RuntimeError::io("cannot read", img, e))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while backed_by(&img) {
        if std::time::Instant::now() > deadline {
            return Err(tool(
                "busy",
                format!("{} is still mounted somewhere; try again", img.display()),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Whether a loop device is backed by the file `img` (an absolute, canonical path).
fn backed_by(img: &Path) -> bool {
    let Ok(devices) = std::fs::read_dir("/sys/block") else {
        return false;
    };
    devices.flatten().any(|d| {
        std::fs::read_to_string(d.path().join("loop/backing_file"))
            .is_ok_and(|b| Path::new(b.trim_end()) == img)
    })
}

/// Checks that the container in `dir` may have a disk of `bytes` (no smaller than the
/// one it has); whether that changes anything.
pub fn check_change(dir: &Path, bytes: u64) -> Result<bool> {
    check_size(bytes)?;
    if !exists(dir) {
        return Ok(true);
    }
    let now = size(dir)?;
    if bytes < now {
        return Err(RuntimeError::Invalid(format!(
            "a container's disk does not shrink ({} MiB now)",
            now >> 20
        )));
    }
    Ok(bytes != now)
}

/// Checks (and repairs what is safe to) the unmounted filesystem in `img`.
fn fsck(img: &Path) -> Result<()> {
    let out = Command::new("e2fsck")
        .args(["-f", "-p"])
        .arg(img)
        .output()
        .map_err(|e| tool("cannot run e2fsck", e))?;
    // 0: clean; 1: errors corrected.
    match out.status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(tool(
            "e2fsck",
            String::from_utf8_lossy(&out.stderr).trim().to_string()
                + String::from_utf8_lossy(&out.stdout).trim(),
        )),
    }
}

/// Gives the container in `dir`, which has no disk, one of `bytes`, moving its writable
/// layer (`upper/`) onto it. The container must be stopped.
pub fn adopt(dir: &Path, bytes: u64) -> Result<()> {
    create(dir, bytes)?;
    let from = dir.join("upper");
    let moved = if from.exists() {
        let to = mount_point(dir).join("upper");
        // cp -a as root keeps owners, modes, xattrs (overlayfs's too) and whiteouts.
        run("cp", &["-a".as_ref(), from.as_os_str(), to.as_os_str()])
    } else {
        Ok(())
    };
    if let Err(e) = moved {
        let _ = remove(dir);
        return Err(e);
    }
    for old in ["upper", "work"] {
        let path = dir.join(old);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| RuntimeError::io("cannot remove", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_round_trip() {
        let p = "/var/lib/state dir/a\\b\tc";
        assert_eq!(escape(p), "/var/lib/state\\040dir/a\\134b\\011c");
        assert_eq!(unescape(&escape(p)), p);
    }

    #[test]
    fn small_disks_are_refused() {
        assert!(check_size(1 << 20).is_err());
        assert!(check_size(MIN_SIZE).is_ok());
    }

    #[test]
    fn no_image_no_disk() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(!exists(tmp.path()));
        assert!(!is_mounted(tmp.path()));
        assert!(!ensure_mounted(tmp.path()).unwrap());
        assert_eq!(usage(tmp.path()), None);
        remove(tmp.path()).unwrap();
    }

    #[test]
    fn a_plain_directory_at_the_mount_point_is_not_a_mount() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(mount_point(tmp.path())).unwrap();
        assert!(!is_mounted(tmp.path()));
    }
}
