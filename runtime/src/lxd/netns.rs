//! Sockets inside an LXD instance's network namespace, for port forwarding: a thread of
//! the gateway joins the namespace of the instance's init (a local daemon tells its host
//! pid), makes the socket there and ends; the socket stays in that namespace. Only the
//! calling thread changes namespace, so nothing else in the gateway is affected.

use std::net::SocketAddrV4;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::error::{Result, RuntimeError};

/// How long a forwarded connection may take to connect inside an instance.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn in_netns<T: Send + 'static>(
    pid: i64,
    make: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let path = format!("/proc/{pid}/ns/net");
    let worker = std::thread::Builder::new()
        .name("lxd-netns".into())
        .spawn(move || -> Result<T> {
            let ns = std::fs::File::open(&path)
                .map_err(|e| RuntimeError::io("cannot open", &path, e))?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                RuntimeError::Engine(format!("cannot join the instance's network: {e}"))
            })?;
            make().map_err(|e| RuntimeError::Engine(e.to_string()))
        })
        .map_err(|e| RuntimeError::Engine(format!("cannot start a thread: {e}")))?;
    match worker.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(RuntimeError::Engine("the network thread failed".into())),
    }
}

/// A TCP connection to `addr` made inside the namespace of host process `pid`.
pub async fn connect(pid: i64, addr: SocketAddrV4) -> Result<tokio::net::TcpStream> {
    let stream = tokio::task::spawn_blocking(move || {
        in_netns(pid, move || {
            let s = std::net::TcpStream::connect_timeout(&addr.into(), CONNECT_TIMEOUT)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
    })
    .await
    .map_err(|e| RuntimeError::Engine(e.to_string()))??;
    tokio::net::TcpStream::from_std(stream).map_err(|e| RuntimeError::Engine(e.to_string()))
}

/// A TCP listener on `addr` inside the namespace of host process `pid`.
pub async fn listen(pid: i64, addr: SocketAddrV4) -> Result<tokio::net::TcpListener> {
    let listener = tokio::task::spawn_blocking(move || {
        in_netns(pid, move || {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
    })
    .await
    .map_err(|e| RuntimeError::Engine(e.to_string()))??;
    tokio::net::TcpListener::from_std(listener).map_err(|e| RuntimeError::Engine(e.to_string()))
}
