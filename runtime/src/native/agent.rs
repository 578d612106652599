//! A listening socket inside a container for a forwarded SSH agent (`ssh -A`): a forked
//! child joins the container (namespaces, root, cgroup), makes a private directory under
//! the container's `/tmp` owned by the login, becomes the login and binds
//! `agent.sock` there, then hands the listening socket back. The gateway accepts on it
//! and carries each connection to the client's agent. Everything happens inside the
//! container's root, so no path a container user controls can lead outside it.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::exit;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Uid};

use super::cgroups::Cgroup;
use super::{exec_child, passwd, protocol};

/// A listening socket for `login` inside the container of `init_pid`, and its path there.
pub fn listener_in(
    init_pid: i32,
    cgroup: &Cgroup,
    login: &str,
) -> Result<(OwnedFd, String), String> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    // SAFETY: the supervisor is single-threaded; the child sets up one socket and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            let sent = match make(init_pid, cgroup, login) {
                Ok((listener, path)) => protocol::send_with_fds(
                    theirs.as_raw_fd(),
                    format!("S{path}\n").as_bytes(),
                    &[listener.as_raw_fd()],
                ),
                Err(e) => {
                    protocol::send_with_fds(theirs.as_raw_fd(), format!("E{e}\n").as_bytes(), &[])
                }
            };
            exit(i32::from(sent.is_err()))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            let received = protocol::recv_line_with_fds(&ours);
            let _ = waitpid(child, None);
            let mut r = received?;
            let line = String::from_utf8_lossy(&r.line).into_owned();
            match line.strip_prefix('S') {
                Some(path) if !r.fds.is_empty() => Ok((r.fds.remove(0), path.to_string())),
                _ => Err(line.strip_prefix('E').unwrap_or(&line).to_string()),
            }
        }
        Err(e) => Err(format!("cannot fork: {e}")),
    }
}

/// In the child: join the container, make the directory, become the login, bind.
fn make(init_pid: i32, cgroup: &Cgroup, login: &str) -> Result<(UnixListener, String), String> {
    exec_child::enter(init_pid, cgroup)?;
    let mut text = String::new();
    std::fs::File::open("/etc/passwd")
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    let entry = passwd::lookup(&text, login)
        .ok_or_else(|| format!("no account '{login}' in the container"))?;
    let mut random = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let tag: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let dir = format!("/tmp/gatehouse-agent-{tag}");
    // mkdir does not follow a final symlink; we are inside the container's root.
    nix::unistd::mkdir(
        dir.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o700),
    )
    .map_err(|e| format!("mkdir {dir}: {e}"))?;
    let (uid, gid) = (Uid::from_raw(entry.uid), Gid::from_raw(entry.gid));
    nix::unistd::chown(dir.as_str(), Some(uid), Some(gid))
        .map_err(|e| format!("chown {dir}: {e}"))?;
    nix::unistd::setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    let path = format!("{dir}/agent.sock");
    let listener = UnixListener::bind(&path).map_err(|e| format!("bind {path}: {e}"))?;
    Ok((listener, path))
}
