//! What `free`, `top` and `uptime` read, seen from the container: Debian's LXCFS (what
//! LXD and LXC use) serves `/proc/meminfo`, `cpuinfo`, `stat`, `uptime`, … computed from
//! the reader's container (its PID namespace's init and that init's cgroups), and the
//! supervisor binds those files over the container's `/proc` when it mounts it.
//!
//! LXCFS is one daemon for the host, mounted at `/var/lib/lxcfs`; the runtime starts it
//! (detached, in the host's mount namespace) when a container starts and it is not
//! running or no longer answers. Without the `lxcfs` program containers see the host's
//! figures, as before.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where LXCFS is mounted.
pub const DIR: &str = "/var/lib/lxcfs";

/// The `/proc` files LXCFS serves that a container's `/proc` takes from it.
pub const PROC_FILES: &[&str] = &[
    "cpuinfo",
    "meminfo",
    "stat",
    "uptime",
    "diskstats",
    "swaps",
    "loadavg",
];

/// Where the runtime keeps LXCFS's lock and log.
const RUN_DIR: &str = "/run/gatehouse";

/// Whether a working LXCFS is mounted at [`DIR`] in this mount namespace: listed in the
/// mount table and answering (a crashed or killed LXCFS leaves a mount that fails every
/// access with ENOTCONN).
pub fn mounted() -> bool {
    listed() && std::fs::metadata(Path::new(DIR).join("proc/meminfo")).is_ok()
}

/// Whether LXCFS is listed as mounted at [`DIR`], working or not.
fn listed() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| is_lxcfs_at(l, DIR))
}

/// Whether a mountinfo line is LXCFS mounted at `dir`.
fn is_lxcfs_at(line: &str, dir: &str) -> bool {
    let mut fields = line.split(' ');
    let point = fields.nth(4);
    let fstype = fields.skip_while(|f| *f != "-").nth(1);
    point == Some(dir) && fstype == Some("fuse.lxcfs")
}

/// Starts LXCFS unless a working one is mounted, and waits (up to 3 s) for its mount;
/// whether it is there. Called from the process that starts supervisors (the host's
/// mount namespace); gateways and CLIs starting containers at once take turns (a lock),
/// so one LXCFS runs. A dead one's mount is lazily unmounted first. What LXCFS says goes
/// to `/run/gatehouse/lxcfs.log`.
pub fn ensure() -> bool {
    if mounted() {
        return true;
    }
    if std::fs::create_dir_all(RUN_DIR).is_err() {
        return false;
    }
    let Ok(_turn) = crate::lockfile::lock(&Path::new(RUN_DIR).join("lxcfs.lock")) else {
        return false;
    };
    if mounted() {
        return true; // another process started it while we waited
    }
    while listed() {
        tracing::warn!("LXCFS at {DIR} does not answer; unmounting it and starting it again");
        if nix::mount::umount2(DIR, nix::mount::MntFlags::MNT_DETACH).is_err() {
            return false;
        }
    }
    // Only now: a dead mount answers ENOTCONN to the look this takes.
    if std::fs::create_dir_all(DIR).is_err() {
        return false;
    }
    let started = start();
    if !started {
        tracing::warn!("LXCFS did not start (see {RUN_DIR}/lxcfs.log): containers see the host's /proc figures");
    }
    started
}

/// Runs LXCFS detached and waits for its mount.
fn start() -> bool {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(RUN_DIR).join("lxcfs.log"));
    let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
        Err(_) => (Stdio::null(), Stdio::null()),
    };
    // `setsid -f` detaches it (its own session, its parent the host's init).
    // `--enable-cfs` shows CPU quotas as CPUs, `-l` the load; a pid file of our own, so
    // a stale system LXCFS holding the default one does not keep ours from starting.
    let pidfile = format!("{RUN_DIR}/lxcfs.pid");
    let started = Command::new("setsid")
        .args(["-f", "lxcfs", "--enable-cfs", "-l", "-p", &pidfile, DIR])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status();
    if !started.is_ok_and(|s| s.success()) {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if mounted() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The LXCFS files to bind over a container's `/proc` (`proc_dir`): (source, target),
/// for the files LXCFS has and the container's `/proc` has too.
pub fn proc_binds(proc_dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    PROC_FILES
        .iter()
        .map(|f| (Path::new(DIR).join("proc").join(f), proc_dir.join(f)))
        .filter(|(from, to)| from.exists() && to.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_lxcfs_mount_in_mountinfo() {
        let line = "512 30 0:55 / /var/lib/lxcfs rw,nosuid,nodev,relatime shared:300 - fuse.lxcfs lxcfs rw,user_id=0,group_id=0,allow_other";
        assert!(is_lxcfs_at(line, DIR));
        let other = "512 30 0:55 / /var/lib/lxcfs rw,relatime - tmpfs tmpfs rw";
        assert!(!is_lxcfs_at(other, DIR));
        let elsewhere = "512 30 0:55 / /mnt rw - fuse.lxcfs lxcfs rw";
        assert!(!is_lxcfs_at(elsewhere, DIR));
    }
}
