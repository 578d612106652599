//! A listening socket inside a container for a forwarded SSH agent (`ssh -A`): a forked
//! child joins the container (namespaces, root, cgroup), makes a private directory under
//! the container's `/tmp` owned by the login, becomes the login and binds
//! `agent.sock` there, then hands the listening socket back. The gateway accepts on it
//! and carries each connection to the client's agent. Everything happens inside the
//! container's root, so no path a container user controls can lead outside it.

use super::error::NativeError;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use nix::unistd::{Gid, Uid};

use super::cgroups::Cgroup;
use super::forked::in_child;
use super::{exec_child, passwd};

/// A listening socket for `login` inside the container of `init_pid`, and its path there.
pub fn listener_in(
    init_pid: i32,
    cgroup: &Cgroup,
    login: &str,
) -> Result<(OwnedFd, String), NativeError> {
    in_child(|| make(init_pid, cgroup, login).map(|(l, path)| (OwnedFd::from(l), path)))
}

/// In the child: join the container, make the directory, become the login, bind.
fn make(
    init_pid: i32,
    cgroup: &Cgroup,
    login: &str,
) -> Result<(UnixListener, String), NativeError> {
    exec_child::enter(init_pid, cgroup, None)?;
    let text = passwd::read_account_file("/etc/passwd")?;
    let entry = passwd::lookup(&text, login)
        .ok_or_else(|| format!("no account '{login}' in the container"))?;
    let tag = crate::names::random_tag().map_err(|e| e.to_string())?;
    let dir = format!("/tmp/gatehouse-agent-{tag}");
    // mkdir does not follow a final symlink; we are inside the container's root.
    nix::unistd::mkdir(
        dir.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o700),
    )
    .map_err(NativeError::step(format!("mkdir {dir}")))?;
    let (uid, gid) = (Uid::from_raw(entry.uid), Gid::from_raw(entry.gid));
    nix::unistd::chown(dir.as_str(), Some(uid), Some(gid))
        .map_err(NativeError::step(format!("chown {dir}")))?;
    nix::unistd::setgroups(&[gid]).map_err(NativeError::step("setgroups"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(NativeError::step("setresgid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(NativeError::step("setresuid"))?;
    let path = format!("{dir}/agent.sock");
    let listener = UnixListener::bind(&path).map_err(NativeError::step(format!("bind {path}")))?;
    Ok((listener, path))
}
