//! Control groups for containers, on either hierarchy: cgroup v2 (one unified tree) or
//! cgroup v1 (one tree per controller). Each container gets `gatehouse/<name>`.

use super::error::{NativeError, Result};
use std::path::{Path, PathBuf};

use crate::limits::Limits;

/// The v1 controllers a container is placed in.
/// The v1 hierarchies a container gets a cgroup in: the controllers gatehouse limits or
/// reads, and systemd's named hierarchy (`name=systemd`, mounted at `systemd`), which a
/// container booting systemd is given to manage.
const V1_CONTROLLERS: &[&str] = &[
    "memory", "pids", "cpu", "cpuacct", "blkio", "freezer", "systemd",
];

/// The v1 hierarchy a container's own init manages.
const SYSTEMD_HIERARCHY: &str = "systemd";
const CPU_PERIOD_US: u64 = 100_000;
/// A session's cgroup is `session-<id>` inside its container's.
const SESSION_PREFIX: &str = "session-";

/// Whether `id` may name a session's cgroup: 1 to 64 ASCII letters, digits and `-`.
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The cgroup of one container.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Directories making up this cgroup (one for v2, one per controller for v1).
    dirs: Vec<(String, PathBuf)>,
    v2: bool,
}

impl Cgroup {
    /// The cgroup for container `name` under the host's hierarchy at `root`
    /// (normally `/sys/fs/cgroup`).
    pub fn for_container(root: &Path, name: &str) -> Self {
        if root.join("cgroup.controllers").exists() {
            Cgroup {
                dirs: vec![("unified".into(), root.join("gatehouse").join(name))],
                v2: true,
            }
        } else {
            let dirs = V1_CONTROLLERS
                .iter()
                .filter(|c| root.join(c).join("cgroup.procs").exists())
                .map(|c| (c.to_string(), root.join(c).join("gatehouse").join(name)))
                .collect();
            Cgroup { dirs, v2: false }
        }
    }

    /// Creates the directories and applies `limits`.
    pub fn create(&self, limits: &Limits) -> Result<()> {
        if self.v2 {
            if let Some((_, dir)) = self.dirs.first() {
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent).map_err(NativeError::io("create", parent))?;
                    // Enable the controllers for our subtree; both levels.
                    if let Some(root) = parent.parent() {
                        let _ = write(&root.join("cgroup.subtree_control"), "+memory +pids +cpu");
                    }
                    let _ = write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu");
                }
            }
        }
        for (_, dir) in &self.dirs {
            std::fs::create_dir_all(dir).map_err(NativeError::io("create", dir))?;
        }
        self.apply(limits)
    }

    /// Applies `limits` (also to a running container).
    pub fn apply(&self, limits: &Limits) -> Result<()> {
        for (file, value) in self.limit_files(limits) {
            write(&file, &value)?;
        }
        Ok(())
    }

    fn limit_files(&self, limits: &Limits) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let quota = limits
            .cpus
            .map(|c| ((c * CPU_PERIOD_US as f64).round() as u64).max(1000));
        for (controller, dir) in &self.dirs {
            match (self.v2, controller.as_str()) {
                (true, _) => {
                    out.push((dir.join("memory.max"), opt(limits.memory)));
                    out.push((dir.join("pids.max"), opt(limits.pids)));
                    out.push((
                        dir.join("cpu.max"),
                        format!("{} {CPU_PERIOD_US}", opt(quota)),
                    ));
                }
                (false, "memory") => out.push((
                    dir.join("memory.limit_in_bytes"),
                    limits.memory.map_or("-1".into(), |m| m.to_string()),
                )),
                (false, "pids") => out.push((dir.join("pids.max"), opt(limits.pids))),
                (false, "cpu") => {
                    out.push((dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string()));
                    out.push((
                        dir.join("cpu.cfs_quota_us"),
                        quota.map_or("-1".into(), |q| q.to_string()),
                    ));
                }
                _ => {}
            }
        }
        out
    }

    /// Moves process `pid` into this cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The cgroup of one session inside this container's, on the hierarchy that tracks
    /// processes (v2's, or v1's freezer): everything the session starts stays in it, also
    /// what it leaves running (`setsid nohup …`), so that those can be found and killed.
    /// `id` must be a valid session tag (see [`valid_session_id`]).
    pub fn session(&self, id: &str) -> Cgroup {
        let dirs = self
            .dirs
            .iter()
            .filter(|(c, _)| self.v2 || c == "freezer")
            .map(|(c, d)| (c.clone(), d.join(format!("{SESSION_PREFIX}{id}"))))
            .collect();
        Cgroup { dirs, v2: self.v2 }
    }

    /// Makes a session's directories (no limits of their own: the container's apply).
    pub fn create_session(&self) -> Result<()> {
        for (_, dir) in &self.dirs {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(NativeError::io("create", dir)(e)),
            }
        }
        Ok(())
    }

    /// Moves `pid` into this (container's) cgroup on every hierarchy but those `session`
    /// (a session cgroup of it) covers, where it goes straight into `session`'s: one
    /// migration per hierarchy (each costs a wait for the kernel on cgroup v1).
    pub fn add_with_session(&self, pid: i32, session: &Cgroup) -> Result<()> {
        for (controller, dir) in &self.dirs {
            if !session.dirs.iter().any(|(c, _)| c == controller) {
                write(&dir.join("cgroup.procs"), &pid.to_string())?;
            }
        }
        session.enter_session(pid)
    }

    /// Makes a session's directories and moves `pid` into them. Another session's end
    /// removes every empty session directory, this one too if it comes between the two
    /// steps: then they are made again.
    pub fn enter_session(&self, pid: i32) -> Result<()> {
        let mut last = NativeError::Failed("the session's cgroup kept vanishing".into());
        for _ in 0..10 {
            self.create_session()?;
            match self.add(pid) {
                Ok(()) => return Ok(()),
                Err(e) if self.dirs.iter().any(|(_, d)| !d.exists()) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Kills every process in this cgroup; returns how many there were. On v2 with
    /// `cgroup.kill`; on v1 frozen first, so that nothing forks away while it is read.
    pub fn kill(&self) -> Result<usize> {
        let dir = self
            .dir_of("freezer")
            .ok_or_else(|| NativeError::Failed("no freezer controller".into()))?;
        let procs = || -> Vec<i32> {
            std::fs::read_to_string(dir.join("cgroup.procs"))
                .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
                .unwrap_or_default()
        };
        let found = procs();
        if found.is_empty() {
            return Ok(0);
        }
        if self.v2 && dir.join("cgroup.kill").exists() {
            write(&dir.join("cgroup.kill"), "1")?;
            return Ok(found.len());
        }
        self.freeze(true)?;
        for pid in procs() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.freeze(false)?;
        Ok(found.len())
    }

    /// Removes the directories of sessions no process is left in.
    pub fn remove_empty_sessions(&self) {
        for (_, dir) in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(SESSION_PREFIX) {
                    // A session cgroup with processes refuses (EBUSY); it stays.
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
    }

    /// Removes the directories (they must be empty of processes), sessions' and those
    /// the container's own init made inside first.
    pub fn remove(&self) {
        self.remove_empty_sessions();
        for (_, dir) in &self.dirs {
            if let Err(e) = remove_tree(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
                }
            }
        }
    }

    /// Hands the hierarchy the container's init manages (v1's `name=systemd`, or the
    /// container's directory of v2's unified tree) to the container's root `uid`: its
    /// directory and the files that move processes and pass controllers down, so the init
    /// can make cgroups under it. The limits stay the host's.
    pub fn delegate(&self, uid: u32) -> Result<()> {
        let owner = Some(nix::unistd::Uid::from_raw(uid));
        let group = Some(nix::unistd::Gid::from_raw(uid));
        // What systemd's `Delegate=yes` hands over: the directory (to make cgroups in) and
        // the files that move processes and pass controllers down; never the limits.
        let files: &[&str] = if self.v2 {
            &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"]
        } else {
            &["cgroup.procs", "tasks"]
        };
        let delegated = self
            .dirs
            .iter()
            .filter(|(c, _)| self.v2 || c == SYSTEMD_HIERARCHY);
        for (_, dir) in delegated {
            let paths = std::iter::once(dir.clone()).chain(files.iter().map(|f| dir.join(f)));
            for path in paths {
                nix::unistd::chown(&path, owner, group)
                    .map_err(NativeError::sys_at("chown", &path))?;
            }
        }
        Ok(())
    }

    /// What the container's `/sys/fs/cgroup` shows: on a v1 host each hierarchy's name,
    /// the container's directory in it, and whether it is writable inside (only the
    /// delegated one); on a v2 host the container's own directory of the unified tree.
    pub fn view(&self) -> CgroupView {
        if self.v2 {
            return CgroupView::Unified(
                self.dirs
                    .first()
                    .map(|(_, d)| d.clone())
                    .unwrap_or_default(),
            );
        }
        CgroupView::PerController(
            self.dirs
                .iter()
                .map(|(c, d)| (c.clone(), d.clone(), c == SYSTEMD_HIERARCHY))
                .collect(),
        )
    }

    /// Whether any of the directories still exists.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|(_, d)| d.exists())
    }
}

/// What a container booting its own init sees at `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupView {
    /// A v1 host: a tmpfs with, per hierarchy, its name, the container's directory in it,
    /// and whether it is writable inside.
    PerController(Vec<(String, PathBuf, bool)>),
    /// A v2 host: the container's own directory of the unified tree, bound whole.
    Unified(PathBuf),
}

/// What a container's cgroup reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Memory in use, bytes.
    pub memory: Option<u64>,
    /// Processes.
    pub pids: Option<u64>,
    /// CPU time used, microseconds.
    pub cpu_usec: Option<u64>,
}

impl Cgroup {
    fn dir_of(&self, controller: &str) -> Option<&PathBuf> {
        self.dirs
            .iter()
            .find(|(c, _)| self.v2 || c == controller)
            .map(|(_, d)| d)
    }

    fn read_number(&self, controller: &str, file: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir_of(controller)?.join(file)).ok()?;
        text.trim().parse().ok()
    }

    /// Freezes (`true`) or thaws every process of the container, and waits until the
    /// kernel reports the new state.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let (file, value, done) = if self.v2 {
            ("cgroup.freeze", if frozen { "1" } else { "0" }, None)
        } else {
            (
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
                Some(if frozen { "FROZEN" } else { "THAWED" }),
            )
        };
        let dir = self
            .dir_of("freezer")
            .ok_or_else(|| NativeError::Failed("no freezer controller".into()))?;
        write(&dir.join(file), value)?;
        if let Some(done) = done {
            for _ in 0..200 {
                if std::fs::read_to_string(dir.join(file)).is_ok_and(|s| s.trim() == done) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            return Err(NativeError::Failed(format!(
                "the container did not reach {done}"
            )));
        }
        Ok(())
    }

    /// Current usage, as far as the hierarchy reports it.
    pub fn usage(&self) -> CgroupUsage {
        if self.v2 {
            let cpu = self
                .dir_of("cpu")
                .and_then(|d| std::fs::read_to_string(d.join("cpu.stat")).ok())
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        l.strip_prefix("usage_usec ")
                            .and_then(|v| v.trim().parse().ok())
                    })
                });
            CgroupUsage {
                memory: self.read_number("memory", "memory.current"),
                pids: self.read_number("pids", "pids.current"),
                cpu_usec: cpu,
            }
        } else {
            CgroupUsage {
                memory: self.read_number("memory", "memory.usage_in_bytes"),
                pids: self.read_number("pids", "pids.current"),
                cpu_usec: self
                    .read_number("cpuacct", "cpuacct.usage")
                    .map(|ns| ns / 1000),
            }
        }
    }
}

/// Removes a cgroup directory and every cgroup under it, deepest first (a cgroup
/// filesystem holds only directories and kernel files, never links).
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_tree(&e.path());
            }
        }
    }
    std::fs::remove_dir(dir)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("max".into(), |v| v.to_string())
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(NativeError::io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_on_the_hierarchy_that_tracks_processes() {
        let tmp = tempfile::tempdir().unwrap();
        for c in V1_CONTROLLERS {
            std::fs::create_dir_all(tmp.path().join(c)).unwrap();
            std::fs::write(tmp.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let cg = Cgroup::for_container(tmp.path(), "web01");
        let s = cg.session("abc-1");
        assert_eq!(
            s.dirs,
            [(
                "freezer".to_string(),
                tmp.path().join("freezer/gatehouse/web01/session-abc-1")
            )]
        );
        std::fs::create_dir_all(tmp.path().join("freezer/gatehouse/web01")).unwrap();
        s.create_session().unwrap();
        s.create_session().unwrap();
        assert_eq!(s.kill().unwrap(), 0);
        cg.remove_empty_sessions();
        assert!(!s.exists());
        for bad in ["", "../x", "a/b", &"x".repeat(65)] {
            assert!(!valid_session_id(bad), "{bad}");
        }
        assert!(valid_session_id("7f3a-0001"));
    }

    #[test]
    fn v1_and_v2_limit_files() {
        let tmp = tempfile::tempdir().unwrap();
        for c in ["memory", "pids", "cpu"] {
            std::fs::create_dir_all(tmp.path().join(c)).unwrap();
            std::fs::write(tmp.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let cg = Cgroup::for_container(tmp.path(), "web01");
        assert!(!cg.v2);
        let limits = Limits {
            memory: Some(1 << 30),
            cpus: Some(1.5),
            pids: Some(512),
            disk: None,
        };
        cg.create(&limits).unwrap();
        let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(
            read("memory/gatehouse/web01/memory.limit_in_bytes"),
            "1073741824"
        );
        assert_eq!(read("cpu/gatehouse/web01/cpu.cfs_quota_us"), "150000");
        assert_eq!(read("pids/gatehouse/web01/pids.max"), "512");

        let v2root = tempfile::tempdir().unwrap();
        std::fs::write(v2root.path().join("cgroup.controllers"), "memory pids cpu").unwrap();
        let cg = Cgroup::for_container(v2root.path(), "web01");
        assert!(cg.v2);
        cg.create(&Limits::default()).unwrap();
        let read = |p: &str| std::fs::read_to_string(v2root.path().join(p)).unwrap();
        assert_eq!(read("gatehouse/web01/memory.max"), "max");
        assert_eq!(read("gatehouse/web01/cpu.max"), "max 100000");
    }
}
