//! Doing one thing in a forked child of the (single-threaded) supervisor and getting a
//! descriptor back: the child may join namespaces or change its user without touching
//! the supervisor. It answers `Handshake::Done` with the descriptor (if the job makes
//! one), or `Handshake::Failed`.

use super::error::NativeError;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::exit;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use super::handshake::Handshake;
use super::protocol;

/// How long a forked job may take before it is killed.
const CHILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `make` in a forked child; returns the descriptor and text it produced.
pub fn in_child(
    make: impl FnOnce() -> Result<(OwnedFd, String), NativeError>,
) -> Result<(OwnedFd, String), NativeError> {
    let (fd, text) = run(|| make().map(|(fd, text)| (Some(fd), text)))?;
    let fd = fd.ok_or_else(|| "the child sent no descriptor".to_string())?;
    Ok((fd, text))
}

/// Runs `job` in a forked child and waits for it to say it is done.
pub fn job_in_child(job: impl FnOnce() -> Result<(), NativeError>) -> Result<(), NativeError> {
    run(|| job().map(|()| (None, String::new()))).map(|_| ())
}

fn run(
    make: impl FnOnce() -> Result<(Option<OwnedFd>, String), NativeError>,
) -> Result<(Option<OwnedFd>, String), NativeError> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(NativeError::step("socketpair"))?;
    // SAFETY: the supervisor is single-threaded; the child does one job and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            let fd = theirs.as_raw_fd();
            let sent = match make() {
                Ok((made, text)) => {
                    let fds: Vec<i32> = made.iter().map(AsRawFd::as_raw_fd).collect();
                    protocol::send_with_fds(fd, &Handshake::Done(text).encode(), &fds)
                }
                Err(e) => {
                    protocol::send_with_fds(fd, &Handshake::Failed(e.to_string()).encode(), &[])
                }
            };
            exit(i32::from(sent.is_err()))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            // The child works inside a container whose root may try to make it hang;
            // the single-threaded supervisor waits a bounded time, then kills it.
            let _ = nix::sys::socket::setsockopt(
                &ours,
                nix::sys::socket::sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(CHILD_TIMEOUT.as_secs() as i64, 0),
            );
            let received = protocol::recv_line_with_fds(&ours);
            if received.is_err() {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = waitpid(child, None);
            let mut r = received?;
            match Handshake::decode(&r.line, "the forked child")? {
                Handshake::Done(text) => Ok((r.fds.pop(), text)),
                Handshake::Failed(why) => Err(NativeError::Failed(why)),
                other => Err(format!("the forked child sent {other:?}").into()),
            }
        }
        Err(e) => Err(format!("cannot fork: {e}").into()),
    }
}
