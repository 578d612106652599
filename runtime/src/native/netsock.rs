//! A TCP socket in a container's network namespace, for port forwarding: a forked child
//! joins the namespace (the supervisor runs as host root, which may), creates the socket
//! and hands it back; the gateway then connects it. A socket keeps the namespace it was
//! made in, so whatever it reaches, it reaches from inside the container — never the
//! host's own network.

use super::error::NativeError;
use std::fs::File;
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::forked::in_child;

/// An unconnected IPv4 TCP socket in the network namespace of `init_pid`.
pub fn socket_in(init_pid: i32) -> Result<OwnedFd, NativeError> {
    let path = format!("/proc/{init_pid}/ns/net");
    let ns = File::open(&path).map_err(NativeError::step(format!("cannot open {path}")))?;
    let (fd, _) = in_child(|| {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(NativeError::step("cannot join the network namespace"))?;
        let s = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(NativeError::step("socket"))?;
        Ok((s, String::new()))
    })?;
    Ok(fd)
}
