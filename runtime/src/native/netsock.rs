//! A TCP socket in a container's network namespace, for port forwarding: a forked child
//! joins the namespace (the supervisor runs as host root, which may), creates the socket
//! and hands it back; the gateway then connects it. A socket keeps the namespace it was
//! made in, so whatever it reaches, it reaches from inside the container — never the
//! host's own network.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::exit;

use nix::sched::CloneFlags;
use nix::sys::socket::{socket, socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use super::protocol;

/// An unconnected IPv4 TCP socket in the network namespace of `init_pid`.
pub fn socket_in(init_pid: i32) -> Result<OwnedFd, String> {
    let path = format!("/proc/{init_pid}/ns/net");
    let ns = File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    // SAFETY: the supervisor is single-threaded; the child only joins a namespace,
    // makes a socket, sends it and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            let made = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot join the network namespace: {e}"))
                .and_then(|()| {
                    socket(
                        AddressFamily::Inet,
                        SockType::Stream,
                        SockFlag::SOCK_CLOEXEC,
                        None,
                    )
                    .map_err(|e| format!("socket: {e}"))
                });
            let sent = match made {
                Ok(s) => protocol::send_with_fds(theirs.as_raw_fd(), b"S\n", &[s.as_raw_fd()]),
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
            match r.line.first() {
                Some(b'S') if !r.fds.is_empty() => Ok(r.fds.remove(0)),
                _ => Err(String::from_utf8_lossy(r.line.get(1..).unwrap_or_default()).into_owned()),
            }
        }
        Err(e) => Err(format!("cannot fork: {e}")),
    }
}
