//! The supervisor: one small, single-threaded process per running container (a re-exec
//! of the gatehouse binary, `gatehouse __supervise`). It creates the container's init in
//! new namespaces, owns it, serves the gateway on a unix socket (ping, exec, stop), reaps
//! session processes and reports their exit status, and outlives gateway restarts.

use super::error::NativeError;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::cgroups::Cgroup;
use super::console::{self, Console};
use super::exec_child::{self, ChildStdio};
use super::handshake::Handshake;
use super::layout::ContainerLayout;
use super::protocol::{self, Control, ExecRequest, Reply, Request};
use super::rootfs::{self, Layers};
use super::syscall::LinuxSyscall;
use super::{init, net, netsetup};
use crate::limits::Limits;
use crate::names::is_user_name;
use crate::network::NetworkConfig;
use std::net::Ipv4Addr;

/// Exit code of `__supervise` when another supervisor holds the container.
pub const EXIT_BUSY: i32 = 3;
const CLONE_STACK: usize = 8 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace period for processes when the container stops on its own (signal, idle).
const STOP_GRACE_MS: u64 = 10_000;

/// What a supervisor needs to start its container.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Container name (hostname).
    pub name: String,
    /// The container's state directory.
    pub layout: ContainerLayout,
    /// The image's root filesystem.
    pub image_rootfs: PathBuf,
    /// Resource limits.
    pub limits: Limits,
    /// The host's cgroup root (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// The container's cgroup name under `gatehouse/` (unique per state directory).
    pub cgroup_name: String,
    /// Host uid/gid of root inside; 65,536 ids from here are mapped.
    pub id_base: u32,
    /// Stop after this long without sessions (`None`: never).
    pub idle_stop: Option<Duration>,
    /// The container network and this container's address on it.
    pub network: Option<(NetworkConfig, Ipv4Addr)>,
    /// The container's `/etc/hosts` and, on a network with DNS, `/etc/resolv.conf`.
    pub etc: EtcFiles,
    /// Which init it boots.
    pub boot: Boot,
    /// The `__supervise` words this supervisor was started with: a reboot inside starts
    /// the container again with them.
    pub relaunch: Vec<std::ffi::OsString>,
    /// What its processes may do beyond the default confinement.
    pub confinement: super::confine::Profile,
}

/// The init a container boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// The built-in init ([`init::run`]).
    Builtin,
    /// The image's `/sbin/init` (systemd), with `container=gatehouse` in its environment.
    Image,
}

/// What the environment variable `container` says to an init that reads it (systemd's
/// container interface).
const CONTAINER_ENV: &std::ffi::CStr = c"container=gatehouse";

/// The files under `/etc` the init writes at each start.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    /// `/etc/hosts`.
    pub hosts: String,
    /// `/etc/resolv.conf`, when the network answers DNS (a symbolic link there, such as
    /// systemd-resolved's, is replaced by the file).
    pub resolv: Option<String>,
}

/// Entry point of `gatehouse __supervise`: starts a detached supervisor and returns once
/// the container can run processes (0), another supervisor holds it ([`EXIT_BUSY`]), or
/// it failed (1, with the reason on stderr). Must be called in a single-threaded process.
pub fn launch(cfg: SupervisorConfig) -> i32 {
    let lock = match crate::lockfile::try_lock(&cfg.layout.lock()) {
        Ok(Some(l)) => l,
        Ok(None) => return EXIT_BUSY,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let (ready_r, ready_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pipe: {e}");
            return 1;
        }
    };
    // SAFETY: called before any thread exists in this process.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(ready_r);
            let code = match detach(&cfg.layout.log()) {
                Ok(()) => Supervisor::run(cfg, lock, ready_w),
                Err(e) => {
                    let _ =
                        File::from(ready_w).write_all(&Handshake::Failed(e.to_string()).encode());
                    1
                }
            };
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(ready_w);
            // Not `drop`: unlocking would release the supervisor's lock too (flock
            // belongs to the open file, which both processes share). Exiting closes ours.
            std::mem::forget(lock);
            let mut msg = Vec::new();
            let _ = File::from(ready_r).read_to_end(&mut msg);
            match Handshake::expect_ready(&msg, "the supervisor") {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}; see {}", cfg.layout.log().display());
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("fork: {e}");
            1
        }
    }
}

/// The signals the supervisor takes through its signalfd.
fn handled_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask
}

/// The supervisor's socket, root's only, non-blocking.
fn listen(sock: &Path) -> Result<UnixListener, NativeError> {
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock)
        .map_err(|e| format!("cannot listen on {}: {e}", sock.display()))?;
    let _ = std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600));
    listener
        .set_nonblocking(true)
        .map_err(NativeError::step("non-blocking socket"))?;
    Ok(listener)
}

/// New session, stdin from /dev/null, stdout and stderr to the log.
fn detach(log: &Path) -> Result<(), NativeError> {
    nix::unistd::setsid().map_err(NativeError::step("setsid"))?;
    let null = File::open("/dev/null").map_err(NativeError::step("/dev/null"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    // SAFETY: dup2 onto the standard descriptors.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    Ok(())
}

/// What one poll found ready, part by part.
struct Events {
    signal: bool,
    listener: bool,
    conns: Vec<PollFlags>,
    console: Option<PollFlags>,
    viewers: Vec<PollFlags>,
}

/// A connection from the gateway.
struct Conn {
    stream: UnixStream,
    /// The session process this connection controls.
    pid: Option<i32>,
    /// Waits for the container to stop.
    stop_waiter: bool,
    buf: Vec<u8>,
}

struct Supervisor {
    cfg: SupervisorConfig,
    /// The seccomp filter every session installs.
    seccomp: seccompiler::BpfProgram,
    cgroup: Cgroup,
    init_pid: i32,
    since: DateTime<Utc>,
    conns: Vec<Conn>,
    /// Session processes (host pids) still running.
    sessions: HashSet<i32>,
    /// Set once a stop has begun; exec is refused from then on.
    stopping: bool,
    /// When init gets SIGKILL if it has not exited.
    kill_at: Option<Instant>,
    /// Since when no session has run (for idle stop).
    idle_since: Option<Instant>,
    /// How init ended, once it has.
    init_ended: Option<WaitStatus>,
    /// The mount namespace the supervisor was started in.
    host_mounts: Option<File>,
    /// The CPUs it was started with (see [`super::cpus`]).
    host_cpus: Option<nix::sched::CpuSet>,
    /// The container's `/dev/console`.
    console: Console,
}

impl Supervisor {
    fn run(cfg: SupervisorConfig, lock: Flock<File>, ready: OwnedFd) -> i32 {
        let mut ready = File::from(ready);
        log(&format!(
            "supervisor {} starting container {}",
            std::process::id(),
            cfg.name
        ));
        let mask = handled_signals();
        // The mount namespace it was started in (the host's): a reboot's new supervisor
        // starts there, not in the private one this one makes for the container.
        let host_mounts = File::open("/proc/self/ns/mnt").ok();
        // And the CPUs it may run on before it keeps to the container's share.
        let host_cpus = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok();
        // The seccomp filter, compiled once: the init and every session install it.
        type Ready = (
            SignalFd,
            Cgroup,
            (i32, Console),
            UnixListener,
            seccompiler::BpfProgram,
        );
        let setup = || -> Result<Ready, NativeError> {
            nix::sys::prctl::set_child_subreaper(true).map_err(NativeError::step("subreaper"))?;
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
                .map_err(NativeError::step("sigprocmask"))?;
            let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                .map_err(NativeError::step("signalfd"))?;
            let cgroup = Cgroup::for_container(&cfg.cgroup_root, &cfg.cgroup_name);
            cgroup.create(&cfg.limits)?;
            // Before the init and every session are made: they inherit it.
            super::cpus::confine_self(&cfg.name, cfg.limits.cpus)?;
            let seccomp = super::confine::filter(cfg.confinement)?;
            let init_pid = start_container(
                &cfg,
                &cgroup,
                &seccomp,
                &[lock.as_raw_fd(), ready.as_raw_fd(), sfd.as_raw_fd()],
            )?;
            let listener = listen(&cfg.layout.socket())?;
            Ok((sfd, cgroup, init_pid, listener, seccomp))
        };
        let (sfd, cgroup, (init_pid, console), listener, seccomp) = match setup() {
            Ok(v) => v,
            Err(e) => {
                log(&format!("start failed: {e}"));
                let _ = ready.write_all(&Handshake::Failed(e.to_string()).encode());
                Cgroup::for_container(&cfg.cgroup_root, &cfg.cgroup_name).remove();
                return 1;
            }
        };
        let _ = ready.write_all(&Handshake::Ready.encode());
        drop(ready);
        log(&format!(
            "container {} running, init pid {init_pid}",
            cfg.name
        ));
        let mut sup = Supervisor {
            cfg,
            seccomp,
            cgroup,
            init_pid,
            since: Utc::now(),
            conns: Vec::new(),
            sessions: HashSet::new(),
            stopping: false,
            kill_at: None,
            idle_since: Some(Instant::now()),
            init_ended: None,
            host_mounts,
            host_cpus,
            console,
        };
        sup.serve(&sfd, &listener);
        sup.finish();
        drop(lock);
        if sup.rebooted() {
            sup.relaunch();
        }
        0
    }

    /// Whether init ended by asking for a reboot (`reboot` inside): the kernel ends a
    /// PID namespace's init that calls reboot(2) with SIGHUP (SIGINT for halt or power
    /// off). A stop the supervisor began is never a reboot.
    fn rebooted(&self) -> bool {
        !self.stopping
            && matches!(
                self.init_ended,
                Some(WaitStatus::Signaled(_, Signal::SIGHUP, _))
            )
    }

    /// Starts the container again with a new supervisor (once this one let go of it),
    /// unless it rebooted too often lately (a boot that fails and reboots at once would
    /// otherwise loop for ever): then it stays stopped until started again.
    fn relaunch(&self) {
        let now = Utc::now().timestamp();
        let file = self.cfg.layout.reboots();
        let recent = recent_reboots(&std::fs::read_to_string(&file).unwrap_or_default(), now);
        if recent.len() >= MAX_REBOOTS {
            log(&format!(
                "container {} rebooted {} times within {REBOOT_WINDOW_SECS} s; left stopped",
                self.cfg.name,
                recent.len()
            ));
            let _ = std::fs::remove_file(&file);
            return;
        }
        let kept: String = recent
            .iter()
            .chain([&now])
            .map(|t| format!("{t}\n"))
            .collect();
        let _ = std::fs::write(&file, kept);
        log(&format!("container {} rebooting", self.cfg.name));
        let back = match &self.host_mounts {
            Some(ns) => nix::sched::setns(ns, CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string()),
            None => Err("it was not open".into()),
        };
        if let Err(e) = back {
            log(&format!("cannot return to the host's mount namespace: {e}"));
            return;
        }
        // The next supervisor picks the container's CPUs afresh (its limit may have
        // changed) from all it was given.
        if let Some(cpus) = &self.host_cpus {
            let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), cpus);
        }
        let started = std::process::Command::new("/proc/self/exe")
            .arg("__supervise")
            .args(&self.cfg.relaunch)
            .stdin(std::process::Stdio::null())
            .spawn();
        if let Err(e) = started {
            log(&format!("cannot start the container again: {e}"));
        }
    }

    /// The event loop; returns when the container's init has exited.
    fn serve(&mut self, sfd: &SignalFd, listener: &UnixListener) {
        loop {
            let Some(events) = self.wait(sfd, listener) else {
                continue;
            };
            self.console.on_events(events.console, &events.viewers);
            if let Some(t) = self.kill_at {
                if Instant::now() >= t {
                    log("init did not stop in time; killing the container");
                    let _ = kill(Pid::from_raw(self.init_pid), Signal::SIGKILL);
                    self.kill_at = None;
                }
            }
            if self.idle_deadline().is_some_and(|t| Instant::now() >= t) {
                log("no sessions for the idle time; stopping");
                self.begin_stop(STOP_GRACE_MS);
            }
            if events.signal {
                while let Ok(Some(info)) = sfd.read_signal() {
                    if info.ssi_signo == libc::SIGCHLD as u32 {
                        if self.reap() {
                            return;
                        }
                    } else {
                        self.begin_stop(STOP_GRACE_MS);
                    }
                }
            }
            // Connections first (indices shift when new ones are accepted).
            let mut closed = Vec::new();
            for i in (0..self.conns.len()).rev() {
                if !events.conns[i].is_empty() && !self.read_control(i) {
                    closed.push(i);
                }
            }
            for i in closed {
                let conn = self.conns.remove(i);
                if let Some(pid) = conn.pid {
                    // The gateway went away: hang up the session like sshd would.
                    let _ = kill(Pid::from_raw(-pid), Signal::SIGHUP);
                    let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
                    // Still running until reaped.
                }
            }
            if events.listener {
                while let Ok((stream, _)) = listener.accept() {
                    self.handle_new(stream);
                }
            }
        }
    }

    /// Polls everything the supervisor serves until something is ready or a deadline
    /// passes; `None` when poll was interrupted or failed (try again).
    fn wait(&self, sfd: &SignalFd, listener: &UnixListener) -> Option<Events> {
        let now = Instant::now();
        let deadlines = [self.kill_at, self.idle_deadline(), self.console.deadline()];
        let timeout = match deadlines.into_iter().flatten().min() {
            Some(t) => {
                PollTimeout::try_from(t.saturating_duration_since(now)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let (master, viewers) = self.console.interest(now);
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            self.conns
                .iter()
                .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
        );
        fds.extend(
            master
                .iter()
                .chain(&viewers)
                .map(|(fd, f)| PollFd::new(*fd, *f)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return None,
            Err(e) => {
                log(&format!("poll: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                return None;
            }
        }
        let mut revents = fds
            .iter()
            .map(|fd| fd.revents().unwrap_or(PollFlags::empty()));
        let signal = revents.next().is_some_and(|r| !r.is_empty());
        let listener = revents.next().is_some_and(|r| !r.is_empty());
        let conns = revents.by_ref().take(self.conns.len()).collect();
        let console = master.map(|_| revents.next().unwrap_or(PollFlags::empty()));
        Some(Events {
            signal,
            listener,
            conns,
            console,
            viewers: revents.collect(),
        })
    }

    /// Reaps children; returns true when init is gone.
    fn reap(&mut self) -> bool {
        let mut init_gone = false;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(pid) = status.pid().map(Pid::as_raw) else {
                        continue;
                    };
                    if pid == self.init_pid {
                        log(&format!("init exited: {status:?}"));
                        self.init_ended = Some(status);
                        init_gone = true;
                        continue;
                    }
                    let reply = match status {
                        WaitStatus::Exited(_, code) => Reply::Exited {
                            code: Some(code),
                            signal: None,
                            core_dumped: false,
                        },
                        WaitStatus::Signaled(_, sig, core) => Reply::Exited {
                            code: None,
                            signal: Some(sig as i32),
                            core_dumped: core,
                        },
                        _ => continue,
                    };
                    if self.sessions.remove(&pid) && self.sessions.is_empty() {
                        self.idle_since = Some(Instant::now());
                    }
                    if let Some(i) = self.conns.iter().position(|c| c.pid == Some(pid)) {
                        let mut conn = self.conns.remove(i);
                        let _ = conn.stream.write_all(&protocol::encode(&reply));
                    }
                }
            }
        }
        init_gone
    }

    /// When the container is due to stop for want of sessions.
    fn idle_deadline(&self) -> Option<Instant> {
        match (self.cfg.idle_stop, self.idle_since, self.stopping) {
            (Some(after), Some(since), false) => Some(since + after),
            _ => None,
        }
    }

    fn begin_stop(&mut self, grace_ms: u64) {
        if !self.stopping {
            self.stopping = true;
            log("stopping container");
            // SIGRTMIN+3: systemd halts on it (SIGTERM would make it re-execute itself);
            // the built-in init takes it too.
            // SAFETY: kill(2) with a pid we own (our child) and a valid signal number.
            unsafe { libc::kill(self.init_pid, libc::SIGRTMIN() + 3) };
            self.kill_at =
                Some(Instant::now() + Duration::from_millis(grace_ms.clamp(100, 300_000)));
        }
    }

    /// Reads control lines from an exec connection; false when it is closed.
    fn read_control(&mut self, i: usize) -> bool {
        let conn = &mut self.conns[i];
        let mut buf = [0u8; 1024];
        match conn.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => conn.buf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        while let Some(pos) = conn.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = conn.buf.drain(..=pos).collect();
            match (
                protocol::decode::<Control>(&line[..line.len() - 1]),
                conn.pid,
            ) {
                (Ok(Control::Signal { signal }), Some(pid)) => {
                    if let Ok(sig) = Signal::try_from(signal) {
                        let _ = kill(Pid::from_raw(pid), sig);
                    }
                }
                _ => return false,
            }
        }
        conn.buf.len() <= protocol::MAX_LINE
    }

    fn handle_new(&mut self, mut stream: UnixStream) {
        let request = match read_request(&mut stream) {
            Ok(r) => r,
            Err(e) => return refuse(&mut stream, "request", &e),
        };
        match request {
            Request::Ping => {
                let reply = Reply::Pong {
                    init_pid: self.init_pid,
                    since: self.since,
                };
                let _ = stream.write_all(&protocol::encode(&reply));
            }
            Request::Stop { grace_ms } => {
                self.begin_stop(grace_ms);
                let _ = stream.set_nonblocking(true);
                self.conns.push(Conn {
                    stream,
                    pid: None,
                    stop_waiter: true,
                    buf: Vec::new(),
                });
            }
            Request::Socket => match super::netsock::socket_in(self.init_pid) {
                Ok(fd) => send_fd(&stream, &Reply::Socket, &fd),
                Err(e) => refuse(&mut stream, "socket", &e),
            },
            Request::AgentListener { login } if is_user_name(&login) => {
                match super::agent::listener_in(self.init_pid, &self.cgroup, &login) {
                    Ok((fd, path)) => send_fd(&stream, &Reply::AgentListener { path }, &fd),
                    Err(e) => refuse(&mut stream, "agent socket", &e),
                }
            }
            Request::AgentListener { .. } => refuse(
                &mut stream,
                "agent socket",
                &NativeError::from("invalid login name"),
            ),
            Request::Console { cols, rows } => self.attach_console(stream, cols, rows),
            Request::Exec(req) => match self.spawn(&req) {
                Ok((pid, fds)) => self.started(stream, pid, fds),
                Err(e) => refuse(&mut stream, "exec", &e),
            },
        }
    }

    /// Attaches a viewer to the console: the master's descriptor (for its window size)
    /// goes with the reply, the history and the output follow.
    fn attach_console(&mut self, mut stream: UnixStream, cols: u16, rows: u16) {
        if !self.console.has_room() {
            let full = NativeError::from("too many viewers on this console");
            return refuse(&mut stream, "console", &full);
        }
        match self.console.master_for_resize() {
            Ok(fd) => send_fd(&stream, &Reply::Console, &fd),
            Err(e) => return refuse(&mut stream, "console", &NativeError::from(e.to_string())),
        }
        self.console.attach(stream, cols, rows);
    }

    /// Tells the gateway a session's process started (with its descriptors) and follows
    /// it on this connection.
    fn started(&mut self, stream: UnixStream, pid: i32, fds: Vec<OwnedFd>) {
        let raw: Vec<_> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let line = protocol::encode(&Reply::Started { pid });
        if protocol::send_with_fds(stream.as_raw_fd(), &line, &raw).is_err() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
            return;
        }
        drop(fds);
        let _ = stream.set_nonblocking(true);
        self.sessions.insert(pid);
        self.idle_since = None;
        self.conns.push(Conn {
            stream,
            pid: Some(pid),
            stop_waiter: false,
            buf: Vec::new(),
        });
    }

    /// Starts a session process; returns its pid and the gateway's ends of its stdio.
    fn spawn(&mut self, req: &ExecRequest) -> Result<(i32, Vec<OwnedFd>), NativeError> {
        if self.stopping {
            return Err(protocol::STOPPING.into());
        }
        if !is_user_name(&req.login) {
            return Err(
                format!("invalid login name '{}'", crate::names::shorten(&req.login)).into(),
            );
        }
        let (child, ours, pty_sock) = session_stdio(req)?;
        let (rep_r, rep_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(NativeError::step("pipe"))?;
        // SAFETY: the supervisor is single-threaded.
        let intermediate = match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                drop(rep_r);
                drop(ours);
                exec_child::intermediate(
                    self.init_pid,
                    &self.cgroup,
                    child,
                    req,
                    &self.seccomp,
                    rep_w,
                )
            }
            Ok(ForkResult::Parent { child: pid }) => pid,
            Err(e) => return Err(format!("fork: {e}").into()),
        };
        drop(child);
        drop(rep_w);
        let mut report = Vec::new();
        let _ = File::from(rep_r).read_to_end(&mut report);
        let _ = waitpid(intermediate, None);
        let pid = match Handshake::decode(&report, "the exec helper")? {
            Handshake::Started(pid) => pid,
            Handshake::Failed(why) => return Err(NativeError::Failed(why)),
            other => return Err(format!("the exec helper sent {other:?}").into()),
        };
        let Some(sock) = pty_sock else {
            return Ok((pid, ours));
        };
        // The process allocates its terminal inside the container and sends the master.
        let _ = sock.set_read_timeout(Some(REQUEST_TIMEOUT));
        let got = protocol::recv_line_with_fds(&sock).map_err(NativeError::step("terminal"))?;
        match (
            Handshake::expect_ready(&got.line, "the session"),
            got.fds.into_iter().next(),
        ) {
            (Ok(()), Some(master)) => Ok((pid, vec![master])),
            (Ok(()), None) => Err("the session sent no terminal".into()),
            (Err(e), _) => Err(e),
        }
    }

    /// After init exited: tell stop waiters, clean up, and return.
    fn finish(&mut self) {
        // Everything in the PID namespace died with init; collect the remains.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.sessions.is_empty() && Instant::now() < deadline {
            let _ = self.reap();
            std::thread::sleep(Duration::from_millis(10));
            self.sessions
                .retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
        }
        let _ = std::fs::remove_file(self.cfg.layout.socket());
        for conn in &mut self.conns {
            if conn.stop_waiter {
                let _ = conn.stream.set_nonblocking(false);
                let _ = conn.stream.write_all(&protocol::encode(&Reply::Stopped));
            }
        }
        for _ in 0..50 {
            self.cgroup.remove();
            if !self.cgroup.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.cfg.network.is_some() {
            super::firewall::forget_veth(&netsetup::host_veth(&self.cfg.cgroup_name));
        }
        log(&format!("container {} stopped", self.cfg.name));
    }
}

/// Reboots within this many seconds count towards [`MAX_REBOOTS`].
const REBOOT_WINDOW_SECS: i64 = 60;
/// A container that rebooted this often within the window is left stopped.
const MAX_REBOOTS: usize = 5;

/// The reboot times in `text` (one a line) within the window before `now`.
fn recent_reboots(text: &str, now: i64) -> Vec<i64> {
    text.lines()
        .filter_map(|l| l.trim().parse::<i64>().ok())
        .filter(|t| *t <= now && now - t < REBOOT_WINDOW_SECS)
        .collect()
}

/// The standard streams of a session's process: a socket pair its terminal's master comes
/// back on, or three pipes. Returns the child's side, the gateway's ends, and the socket.
fn session_stdio(
    req: &ExecRequest,
) -> Result<(ChildStdio, Vec<OwnedFd>, Option<UnixStream>), NativeError> {
    match &req.pty {
        Some((_, cols, rows)) => {
            let (mine, theirs) = socket::socketpair(
                socket::AddressFamily::Unix,
                socket::SockType::Stream,
                None,
                socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(NativeError::step("socketpair"))?;
            let child = ChildStdio::Pty {
                sock: theirs,
                size: (*cols, *rows),
            };
            Ok((child, vec![], Some(UnixStream::from(mine))))
        }
        None => {
            let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(NativeError::step("pipe"));
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let child = ChildStdio::Pipes(in_r, out_w, err_w);
            Ok((child, vec![in_w, out_r, err_r], None))
        }
    }
}

/// Answers a request with an error, and logs it.
fn refuse(stream: &mut UnixStream, what: &str, e: &NativeError) {
    log(&format!("{what} failed: {e}"));
    let message = e.to_string();
    let _ = stream.write_all(&protocol::encode(&Reply::Error { message }));
}

/// Answers a request with `reply` and the descriptor it made.
fn send_fd(stream: &UnixStream, reply: &Reply, fd: &OwnedFd) {
    let line = protocol::encode(reply);
    let _ = protocol::send_with_fds(stream.as_raw_fd(), &line, &[fd.as_raw_fd()]);
}

fn read_request(stream: &mut UnixStream) -> Result<Request, NativeError> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Err("connection closed before a request".into()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("cannot read request: {e}").into()),
        }
        if line.len() > protocol::MAX_LINE {
            return Err("request too long".into());
        }
    }
    protocol::decode(&line)
}

/// Creates the container's init in new namespaces; returns its host pid once its root
/// filesystem is ready; the init installs `seccomp`. `close` lists descriptors the init
/// must not keep.
fn start_container(
    cfg: &SupervisorConfig,
    cgroup: &Cgroup,
    seccomp: &seccompiler::BpfProgram,
    close: &[i32],
) -> Result<(i32, Console), NativeError> {
    let layers = mount_layers(cfg)?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(NativeError::step("pipe"))?;
    let (done_r, done_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(NativeError::step("pipe"))?;
    let guest = Guest {
        name: cfg.name.clone(),
        etc: cfg.etc.clone(),
        boot: cfg.boot,
    };
    let layers_root = layers.merged.clone();
    let close: Vec<i32> = close.to_vec();
    let (go_raw, go_w_raw, done_r_raw, done_w_raw) = (
        go_r.as_raw_fd(),
        go_w.as_raw_fd(),
        done_r.as_raw_fd(),
        done_w.as_raw_fd(),
    );
    let child_main = Box::new(move || -> isize {
        // SAFETY: in the cloned child, closing descriptors it must not keep.
        unsafe {
            for fd in close.iter().chain([&go_w_raw, &done_r_raw]) {
                libc::close(*fd);
            }
        }
        container_init(go_raw, done_w_raw, &layers.merged, &guest, seccomp)
    });
    let mut stack = vec![0u8; CLONE_STACK];
    // No new mount namespace yet: the init makes its own once its /proc, /sys and /dev
    // are mounted in ours, so that they are locked in it (see `rootfs::mount_system`).
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    // SAFETY: single-threaded process; the child runs on its own copy of the stack.
    let pid = unsafe { nix::sched::clone(child_main, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(NativeError::step("cannot create namespaces"))?;
    drop(go_r);
    drop(done_w);
    let placed = place(cfg, cgroup, pid.as_raw(), &layers_root)
        .and_then(|()| console::open(&LinuxSyscall, &layers_root, cfg.id_base));
    let mut go = File::from(go_w);
    let console = match placed {
        Ok(c) => c,
        Err(e) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(e);
        }
    };
    let _ = go.write_all(&Handshake::Go.encode());
    drop(go);
    let mut result = Vec::new();
    let _ = File::from(done_r).read_to_end(&mut result);
    match Handshake::expect_ready(&result, "the container's init") {
        Ok(()) => Ok((pid.as_raw(), console)),
        Err(e) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            Err(e)
        }
    }
}

/// The container's layers, its overlay mounted in a mount namespace of the supervisor's
/// own (the container's starts as a copy of it), over the image id-mapped into the
/// container's range.
fn mount_layers(cfg: &SupervisorConfig) -> Result<Layers, NativeError> {
    let layout = &cfg.layout;
    // A disk of its own that is not mounted has no layer on it: never make one on the
    // host's filesystem instead (the runtime mounts the disk before starting us).
    if super::disk::exists(&layout.dir) && !super::disk::is_mounted(&layout.dir) {
        return Err(NativeError::Failed(format!(
            "the container's disk {} is not mounted",
            super::disk::image(&layout.dir).display()
        )));
    }
    for dir in [
        layout.upper(),
        layout.work(),
        layout.rootfs(),
        layout.lower(),
    ] {
        std::fs::create_dir_all(&dir).map_err(NativeError::io("create", &dir))?;
    }
    // The container's own layer is its root directory: owned by root inside.
    std::os::unix::fs::lchown(layout.upper(), Some(cfg.id_base), Some(cfg.id_base))
        .map_err(NativeError::io("chown", layout.upper()))?;
    let layers = Layers {
        lower: layout.lower(),
        upper: layout.upper(),
        work: layout.work(),
        merged: layout.rootfs(),
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(NativeError::step("mount namespace"))?;
    let ids = super::idmap::userns(crate::images::ID_BASE, cfg.id_base, crate::images::ID_RANGE)?;
    rootfs::mount_overlay(&LinuxSyscall, &layers, Some((&cfg.image_rootfs, &ids)))?;
    // After mount_overlay made this namespace a slave: nothing propagates back.
    super::disk::let_go_of_others(&layout.dir).map_err(|e| NativeError::Failed(e.to_string()))?;
    Ok(layers)
}

/// Puts the new init `pid` in place before it goes on: its id maps, its cgroup, its
/// network, and its system mounts under `root`.
fn place(
    cfg: &SupervisorConfig,
    cgroup: &Cgroup,
    pid: i32,
    root: &Path,
) -> Result<(), NativeError> {
    map_ids(pid, cfg.id_base)?;
    cgroup.add(pid)?;
    if let Some((net, addr)) = &cfg.network {
        netsetup::connect(net, pid, &netsetup::host_veth(&cfg.cgroup_name), *addr)?;
    }
    // An init of the image's (systemd) manages cgroups of its own under the container's.
    let view = if cfg.boot == Boot::Image {
        cgroup.delegate(cfg.id_base)?;
        Some(cgroup.view())
    } else {
        None
    };
    mount_system(pid, root, cfg.id_base, view.as_ref())
}

/// Mounts the container's `/proc`, `/sys`, `/dev` and `/run` (see
/// [`rootfs::mount_system`]) from a child of the supervisor that joins the init's pid and
/// network namespaces, keeping the host's user and mount namespaces: `/proc` is mounted
/// from inside the pid namespace it shows, `/sys` from the network namespace it shows.
fn mount_system(
    init: i32,
    root: &Path,
    id_base: u32,
    cgroups: Option<&super::cgroups::CgroupView>,
) -> Result<(), NativeError> {
    let open = |ns: &str| {
        File::open(format!("/proc/{init}/ns/{ns}")).map_err(NativeError::step(format!(
            "cannot open the container's {ns} namespace"
        )))
    };
    let (pid_ns, net_ns) = (open("pid")?, open("net")?);
    super::forked::job_in_child(|| {
        nix::sched::setns(&pid_ns, CloneFlags::CLONE_NEWPID).map_err(NativeError::step(
            "cannot join the container's pid namespace",
        ))?;
        nix::sched::setns(&net_ns, CloneFlags::CLONE_NEWNET).map_err(NativeError::step(
            "cannot join the container's network namespace",
        ))?;
        // Joining a pid namespace places only the children made afterwards in it.
        super::forked::job_in_child(|| {
            rootfs::mount_system(&LinuxSyscall, root, id_base)?;
            rootfs::mount_lxcfs(&LinuxSyscall, root);
            rootfs::mount_cgroups(&LinuxSyscall, root, cgroups)
        })
    })
}

/// Maps ids 0-65535 inside the new user namespace of `pid` to `base`… on the host.
/// setgroups stays allowed: sudo and login inside need it.
fn map_ids(pid: i32, base: u32) -> Result<(), NativeError> {
    let map = format!("0 {base} {}\n", crate::images::ID_RANGE);
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &map).map_err(NativeError::step(format!("cannot write {path}")))?;
    }
    Ok(())
}

/// The body of the container's first process.
fn container_init(
    go: i32,
    done: i32,
    root: &Path,
    guest: &Guest,
    seccomp: &seccompiler::BpfProgram,
) -> isize {
    let (name, etc) = (guest.name.as_str(), &guest.etc);
    // SAFETY: these descriptors were handed to us by the parent and are ours to own.
    let (mut go, mut done) = unsafe {
        use std::os::fd::FromRawFd;
        (File::from_raw_fd(go), File::from_raw_fd(done))
    };
    // The supervisor's `Go` is the only thing it writes; anything else (or its death)
    // means there is nothing to set up.
    let mut line = [0u8; 2];
    if go.read_exact(&mut line).is_err()
        || !matches!(
            Handshake::decode(&line, "the supervisor"),
            Ok(Handshake::Go)
        )
    {
        return 1;
    }
    drop(go);
    let setup = || -> Result<(), NativeError> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(NativeError::step("pdeathsig"))?;
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(NativeError::step("cgroup namespace"))?;
        // Unprivileged ICMP sockets, so ping works without file capabilities: written
        // through the host's /proc (ours is read-only), for our network namespace, in
        // our user namespace's group ids.
        let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 65535");
        // Our own mount namespace, copied from the supervisor's and owned by our user
        // namespace: every mount in it, /proc's masks included, is locked.
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)
            .map_err(NativeError::step("mount namespace"))?;
        // Reach the root with the credentials we were cloned with (host uid 0, full
        // capabilities in the new user namespace), so a state directory whose parents
        // only root may enter still works; then finish it as the container's root.
        rootfs::enter_root(&LinuxSyscall, root)?;
        exec_child::become_container_root()?;
        rootfs::finish(&LinuxSyscall, Path::new("."), name)?;
        // Credential changes clear the parent-death signal: set it again.
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(NativeError::step("pdeathsig"))?;
        // Inside now: these paths resolve within the container.
        write_etc(name, etc);
        net::loopback_up()?;
        standard_streams_to_console()?;
        super::confine::apply(seccomp)?;
        hide_command_line();
        let _ = nix::sys::prctl::set_name(c"init");
        let _ = nix::sys::prctl::set_dumpable(false);
        Ok(())
    };
    match setup() {
        Ok(()) => {
            let _ = done.write_all(&Handshake::Ready.encode());
            drop(done);
            match guest.boot {
                Boot::Builtin => init::run(),
                Boot::Image => exec_image_init(),
            }
        }
        Err(e) => {
            let _ = done.write_all(&Handshake::Failed(e.to_string()).encode());
            1
        }
    }
}

/// Writes the container's `/etc/hostname`, `/etc/hosts` and (with DNS) `/etc/resolv.conf`,
/// from inside it (a link there, such as systemd-resolved's, is replaced by the file).
fn write_etc(name: &str, etc: &EtcFiles) {
    let _ = std::fs::write("/etc/hostname", format!("{name}\n"));
    let _ = std::fs::write("/etc/hosts", &etc.hosts);
    if let Some(resolv) = &etc.resolv {
        if std::fs::symlink_metadata("/etc/resolv.conf").is_ok_and(|m| m.is_symlink()) {
            let _ = std::fs::remove_file("/etc/resolv.conf");
        }
        let _ = std::fs::write("/etc/resolv.conf", resolv);
    }
}

/// Points the standard descriptors at the container's `/dev/console` (the host's log is
/// not the init's), not as the controlling terminal: a Ctrl-C typed there must not
/// reach the init.
fn standard_streams_to_console() -> Result<(), NativeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let console = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")
        .map_err(NativeError::step("/dev/console"))?;
    // SAFETY: dup2 onto the standard descriptors of a descriptor we own.
    unsafe {
        for fd in 0..3 {
            libc::dup2(console.as_raw_fd(), fd);
        }
    }
    Ok(())
}

/// What the container's init is told: its name, its `/etc` files, which init to be.
struct Guest {
    name: String,
    etc: EtcFiles,
    boot: Boot,
}

/// Replaces the container's first process with the image's `/sbin/init`, as the
/// container's root with the confinement already in place; returns only if it cannot.
fn exec_image_init() -> isize {
    let path = c"/sbin/init";
    let env = [CONTAINER_ENV];
    // Signals blocked for the built-in init must not stay blocked in systemd.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let err = nix::unistd::execve(path, &[path], &env);
    log(&format!("cannot run the image's /sbin/init: {err:?}"));
    127
}

/// Makes PID 1's command line read `/sbin/init` and empties its environment: the init is
/// a copy of the supervisor, whose arguments name host paths. Called once the container's
/// own `/proc` is in place.
fn hide_command_line() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // The fields after the command name's closing parenthesis start at field 3;
    // arg_start, arg_end, env_start and env_end are fields 48 to 51 (proc(5)).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<usize> = rest
        .split_whitespace()
        .skip(45)
        .take(4)
        .filter_map(|f| f.parse().ok())
        .collect();
    let [arg_start, arg_end, env_start, env_end] = fields[..] else {
        return;
    };
    for (start, end, text) in [
        (arg_start, arg_end, &b"/sbin/init"[..]),
        (env_start, env_end, &b""[..]),
    ] {
        if end <= start || end - start > 1 << 20 {
            continue;
        }
        // SAFETY: [start, end) is this process's own argument (or environment) area,
        // writable on its stack, as proc(5) reports it; the init reads neither again.
        let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
        area.fill(0);
        let n = text.len().min(area.len() - 1);
        area[..n].copy_from_slice(&text[..n]);
    }
}

fn log(msg: &str) {
    eprintln!("{} {msg}", Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recent_reboots_count() {
        let text = "100\n150\ngarbage\n\n159\n999\n";
        assert_eq!(recent_reboots(text, 160), vec![150, 159]);
        assert_eq!(recent_reboots("", 160), Vec::<i64>::new());
    }
}
