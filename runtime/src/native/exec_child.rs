//! The two forked processes that start a session process inside a running container.
//! The intermediate joins the container's cgroup and namespaces and forks; the final
//! process (now in the container's PID namespace, re-parented to the supervisor, which
//! is a child subreaper) sets up its terminal or pipes, becomes the login and execs the
//! shell. Both run in a fork of the single-threaded supervisor.

use super::error::NativeError;
use super::handshake::Handshake;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};

use super::cgroups::{self, Cgroup};
use super::passwd;
use super::protocol::ExecRequest;
use seccompiler::BpfProgram;

/// The child's ends of its standard streams.
pub enum ChildStdio {
    /// A terminal, allocated inside the container; the master goes back to the
    /// supervisor over this socket (`ok` with the fd, or `E<message>`).
    Pty {
        /// The child's end of a socket pair.
        sock: OwnedFd,
        /// Initial columns and rows.
        size: (u16, u16),
    },
    /// Read end of stdin, write ends of stdout and stderr.
    Pipes(OwnedFd, OwnedFd, OwnedFd),
}

/// Namespaces joined, in order: the user namespace first, the mount namespace last.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Runs in the intermediate process; reports `P<pid>` or `E<message>` on `report`.
pub fn intermediate(
    init_pid: i32,
    cgroup: &Cgroup,
    stdio: ChildStdio,
    req: &ExecRequest,
    seccomp: &BpfProgram,
    report: OwnedFd,
) -> ! {
    let mut report = File::from(report);
    let session = match &req.session {
        Some(id) if cgroups::valid_session_id(id) => Ok(Some(cgroup.session(id))),
        Some(_) => Err(NativeError::from("invalid session id")),
        None => Ok(None),
    };
    match session.and_then(|own| enter(init_pid, cgroup, own.as_ref())) {
        Ok(()) => {}
        Err(e) => {
            let _ = report.write_all(&Handshake::Failed(e.to_string()).encode());
            exit(1)
        }
    }
    // SAFETY: we are single-threaded (a fork of the single-threaded supervisor).
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(report);
            final_process(stdio, req, seccomp)
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = report.write_all(&Handshake::Started(child.as_raw()).encode());
            exit(0)
        }
        Err(e) => {
            let _ = report.write_all(&Handshake::Failed(format!("cannot fork: {e}")).encode());
            exit(1)
        }
    }
}

/// Joins the container: its cgroup (and `session`'s inside it, if given), then its
/// namespaces, root and root user.
pub(super) fn enter(
    init_pid: i32,
    cgroup: &Cgroup,
    session: Option<&Cgroup>,
) -> Result<(), NativeError> {
    let me = std::process::id() as i32;
    match session {
        Some(own) => cgroup.add_with_session(me, own)?,
        None => cgroup.add(me)?,
    }
    let proc = format!("/proc/{init_pid}");
    let mut fds = Vec::new();
    for (ns, flag) in NAMESPACES {
        let path = format!("{proc}/ns/{ns}");
        let f = File::open(&path).map_err(NativeError::step(format!("cannot open {path}")))?;
        fds.push((f, *flag, *ns));
    }
    let root = File::open(format!("{proc}/root")).map_err(NativeError::step("cannot open root"))?;
    for (f, flag, ns) in &fds {
        nix::sched::setns(f, *flag)
            .map_err(NativeError::step(format!("cannot join {ns} namespace")))?;
    }
    nix::unistd::fchdir(root.as_raw_fd()).map_err(NativeError::step("fchdir"))?;
    nix::unistd::chroot(".").map_err(NativeError::step("chroot"))?;
    nix::unistd::chdir("/").map_err(NativeError::step("chdir"))?;
    become_container_root()
}

/// Switches to uid/gid 0 of the container's user namespace, so that a later change to
/// an unprivileged login drops every capability as it would on a normal host.
pub fn become_container_root() -> Result<(), NativeError> {
    let root_g = Gid::from_raw(0);
    let root_u = Uid::from_raw(0);
    nix::unistd::setresgid(root_g, root_g, root_g).map_err(NativeError::step("setresgid"))?;
    nix::unistd::setresuid(root_u, root_u, root_u).map_err(NativeError::step("setresuid"))
}

fn final_process(stdio: ChildStdio, req: &ExecRequest, seccomp: &BpfProgram) -> ! {
    reset_signals();
    if let Err(e) = nix::unistd::setsid() {
        fail_early(&stdio, &format!("setsid: {e}"));
    }
    let passwd_text = passwd::read_account_file("/etc/passwd").unwrap_or_default();
    let group_text = passwd::read_account_file("/etc/group").unwrap_or_default();
    let entry = match passwd::lookup(&passwd_text, &req.login) {
        Some(e) => e,
        None => fail_early(
            &stdio,
            &format!("no account '{}' in this container", req.login),
        ),
    };
    if let Err(e) = connect_stdio(stdio, &entry, &group_text) {
        // Whatever stderr is by now, it is the best place for the message.
        let _ = writeln!(std::io::stderr(), "gatehouse: {e}");
        exit(126);
    }
    let e = become_login_and_exec(req, &entry, &group_text, seccomp);
    // stderr now goes to the client.
    let _ = writeln!(std::io::stderr(), "gatehouse: {e}");
    exit(127)
}

/// Reports an error before stdio is connected, through the channel that exists.
fn fail_early(stdio: &ChildStdio, message: &str) -> ! {
    match stdio {
        ChildStdio::Pty { sock, .. } => {
            let line = Handshake::Failed(message.to_string()).encode();
            let _ = super::protocol::send_with_fds(sock.as_raw_fd(), &line, &[]);
        }
        ChildStdio::Pipes(_, _, stderr) => {
            let _ = nix::unistd::write(stderr, format!("gatehouse: {message}\n").as_bytes());
        }
    }
    exit(126)
}

fn reset_signals() {
    // Default signal handling: Rust ignores SIGPIPE, the supervisor blocks others.
    for sig in [
        libc::SIGPIPE,
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
    ] {
        // SAFETY: resetting dispositions in a single-threaded child before exec.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

fn dup_onto(from: RawFd, to: RawFd) -> Result<(), NativeError> {
    // SAFETY: dup2 onto the standard descriptors.
    if unsafe { libc::dup2(from, to) } < 0 {
        Err(format!("dup2: {}", std::io::Error::last_os_error()).into())
    } else {
        Ok(())
    }
}

/// Makes fds 0-2 the terminal or the pipes, and closes everything else.
fn connect_stdio(
    stdio: ChildStdio,
    entry: &passwd::PasswdEntry,
    group_text: &str,
) -> Result<(), NativeError> {
    match stdio {
        ChildStdio::Pty { sock, size } => {
            let (master, slave) = match allocate_terminal(entry, group_text, size) {
                Ok(pair) => pair,
                Err(e) => fail_early(&ChildStdio::Pty { sock, size }, &e.to_string()),
            };
            let ready = Handshake::Ready.encode();
            super::protocol::send_with_fds(sock.as_raw_fd(), &ready, &[master.as_raw_fd()])
                .map_err(NativeError::step("cannot hand over the terminal"))?;
            drop(master);
            // SAFETY: TIOCSCTTY on our new session's terminal.
            if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
                return Err(format!("TIOCSCTTY: {}", std::io::Error::last_os_error()).into());
            }
            for fd in 0..3 {
                dup_onto(slave.as_raw_fd(), fd)?;
            }
        }
        ChildStdio::Pipes(stdin, stdout, stderr) => {
            dup_onto(stdin.as_raw_fd(), 0)?;
            dup_onto(stdout.as_raw_fd(), 1)?;
            dup_onto(stderr.as_raw_fd(), 2)?;
        }
    }
    // SAFETY: close every descriptor above stderr; nothing of the host leaks in.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    Ok(())
}

/// A terminal from the container's devpts, owned by the login like sshd does it.
fn allocate_terminal(
    entry: &passwd::PasswdEntry,
    group_text: &str,
    size: (u16, u16),
) -> Result<(OwnedFd, OwnedFd), NativeError> {
    let (master, slave) = super::pty::allocate()?;
    let tty_gid = passwd::group_id(group_text, "tty").unwrap_or(entry.gid);
    nix::unistd::fchown(
        slave.as_raw_fd(),
        Some(Uid::from_raw(entry.uid)),
        Some(Gid::from_raw(tty_gid)),
    )
    .map_err(NativeError::step("cannot give the terminal to the login"))?;
    nix::sys::stat::fchmod(
        slave.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .map_err(NativeError::step("cannot set terminal permissions"))?;
    super::pty::set_size(master.as_raw_fd(), size.0, size.1, 0, 0)?;
    Ok((master, slave))
}

fn become_login_and_exec(
    req: &ExecRequest,
    entry: &passwd::PasswdEntry,
    group_text: &str,
    seccomp: &BpfProgram,
) -> String {
    if let Err(e) = super::confine::apply(seccomp) {
        return e.to_string();
    }
    let gids: Vec<Gid> = passwd::groups(group_text, &req.login, entry.gid)
        .into_iter()
        .map(Gid::from_raw)
        .collect();
    if let Err(e) = nix::unistd::setgroups(&gids) {
        return format!("setgroups: {e}");
    }
    if let Err(e) = nix::unistd::setgid(Gid::from_raw(entry.gid)) {
        return format!("setgid: {e}");
    }
    if let Err(e) = nix::unistd::setuid(Uid::from_raw(entry.uid)) {
        return format!("setuid: {e}");
    }
    if nix::unistd::chdir(entry.home.as_str()).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    let path = if entry.uid == 0 {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    } else {
        "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
    };
    let mut env = vec![
        ("HOME".to_string(), entry.home.clone()),
        ("USER".to_string(), req.login.clone()),
        ("LOGNAME".to_string(), req.login.clone()),
        ("SHELL".to_string(), entry.shell.clone()),
        ("PATH".to_string(), path.to_string()),
    ];
    if let Some((term, _, _)) = &req.pty {
        env.push(("TERM".to_string(), term.clone()));
    }
    for (k, v) in &req.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    let base = entry.shell.rsplit('/').next().unwrap_or("sh").to_string();
    let (program, argv): (String, Vec<String>) = match (&req.sftp, &req.argv, &req.command) {
        (Some(server), _, _) => match sftp_server(*server) {
            Some(path) => (path.to_string(), vec!["sftp-server".into()]),
            None => match crate::sftp::serve_stdio() {
                Ok(()) => exit(0),
                Err(e) => return format!("sftp: {e}"),
            },
        },
        (None, Some(argv), _) if argv.first().is_some_and(|p| p.starts_with('/')) => {
            (argv[0].clone(), argv.clone())
        }
        (None, Some(_), _) => return "a program run directly needs an absolute path".into(),
        (None, None, Some(cmd)) => (entry.shell.clone(), vec![base, "-c".into(), cmd.clone()]),
        (None, None, None) => (entry.shell.clone(), vec![format!("-{base}")]),
    };
    let to_c = |s: String| CString::new(s).map_err(|_| "argument contains a NUL byte".to_string());
    let prog = match to_c(program.clone()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let argv: Result<Vec<CString>, String> = argv.into_iter().map(to_c).collect();
    let envp: Result<Vec<CString>, String> = env
        .into_iter()
        .map(|(k, v)| to_c(format!("{k}={v}")))
        .collect();
    match (argv, envp) {
        (Ok(argv), Ok(envp)) => match nix::unistd::execve(&prog, &argv, &envp) {
            Err(e) => format!("cannot run {program}: {e}"),
            Ok(never) => match never {},
        },
        (Err(e), _) | (_, Err(e)) => e,
    }
}

/// The image's own SFTP server, if it has one and `server` lets it be used.
fn sftp_server(server: crate::api::SftpServer) -> Option<&'static str> {
    if server == crate::api::SftpServer::Builtin {
        return None;
    }
    crate::sftp::IMAGE_SERVERS
        .iter()
        .copied()
        .find(|p| nix::unistd::access(*p, nix::unistd::AccessFlags::X_OK).is_ok())
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing of the forked copy.
    unsafe { libc::_exit(code) }
}
