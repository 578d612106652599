//! The protocol between the gateway and a container's supervisor: one JSON object per
//! line over a unix stream socket; file descriptors (the PTY master, or the three pipe
//! ends) travel with the `started` reply as SCM_RIGHTS.

use super::error::NativeError;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use chrono::{DateTime, Utc};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

/// The error message of an exec refused because the container is stopping.
pub const STOPPING: &str = "the container is stopping";

/// The longest line either side accepts.
pub const MAX_LINE: usize = 64 * 1024;
/// The most file descriptors a reply carries.
const MAX_FDS: usize = 3;

/// A request to the supervisor; the first line on a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is the container up?
    Ping,
    /// Stop the container (SIGTERM to init, SIGKILL after `grace_ms`).
    Stop {
        /// Milliseconds to wait before killing.
        grace_ms: u64,
    },
    /// Start a process.
    Exec(ExecRequest),
    /// A TCP socket in the container's network namespace (for port forwarding).
    Socket,
    /// A listening socket for a forwarded SSH agent, owned by `login`.
    AgentListener {
        /// The account that may use it.
        login: String,
    },
    /// Attach to the container's console: after the `console` reply the connection
    /// carries the console's output one way and what is typed the other, raw.
    Console {
        /// The viewer's terminal width (0: leave the console's size alone).
        cols: u16,
        /// Its height.
        rows: u16,
    },
}

/// A process to start inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Account inside the container.
    pub login: String,
    /// Command for the shell's `-c`; `None` for a login shell.
    pub command: Option<String>,
    /// A program run without a shell (absolute path first); takes the place of `command`.
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// The gateway's session id: the process gets its own cgroup inside the container's.
    #[serde(default)]
    pub session: Option<String>,
    /// `(TERM, cols, rows)` for a PTY.
    pub pty: Option<(String, u16, u16)>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Serve SFTP instead of running the shell.
    #[serde(default)]
    pub sftp: Option<crate::api::SftpServer>,
}

/// A reply from the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `ping`.
    Pong {
        /// The host pid of the container's init.
        init_pid: i32,
        /// When the container started.
        since: DateTime<Utc>,
    },
    /// The process runs; its fds come with this message.
    Started {
        /// Host pid of the process.
        pid: i32,
    },
    /// The process ended.
    Exited {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal number, if it was killed.
        signal: Option<i32>,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// The container has stopped.
    Stopped,
    /// The socket asked for comes with this message.
    Socket,
    /// The agent's listening socket comes with this message; `path` is where it is
    /// inside the container.
    AgentListener {
        /// Its path inside the container.
        path: String,
    },
    /// Attached to the console: a descriptor of its master (to set its window size)
    /// comes with this message, its history and output follow it.
    Console,
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// A control message from the gateway after `started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "snake_case")]
pub enum Control {
    /// Send this signal number to the process.
    Signal {
        /// The signal number.
        signal: i32,
    },
}

/// Encodes a message as one line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

/// Decodes one line.
pub fn decode<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, NativeError> {
    serde_json::from_slice(line).map_err(NativeError::step("malformed message"))
}

/// Sends `data` with `fds` attached, on a blocking socket.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let mut sent = sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    // The fds went with the first bytes; send any rest plainly.
    while sent < data.len() {
        let iov = [IoSlice::new(&data[sent..])];
        sent += sendmsg::<()>(sock, &iov, &[], MsgFlags::MSG_NOSIGNAL, None)?;
    }
    Ok(())
}

/// One line read from a socket, with the descriptors that came with it.
pub struct Received {
    /// The line, without its newline.
    pub line: Vec<u8>,
    /// Bytes read after the newline.
    pub rest: Vec<u8>,
    /// Descriptors received.
    pub fds: Vec<OwnedFd>,
}

/// Reads one line from a blocking socket, collecting any fds that come with it.
pub fn recv_line_with_fds(sock: &impl AsRawFd) -> Result<Received, NativeError> {
    let mut line = Vec::new();
    let mut fds = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(NativeError::step("cannot read from supervisor"))?;
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(received) = c {
                // SAFETY: the kernel just gave us these descriptors; we own them now.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Err(NativeError::Closed);
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(pos) = line.iter().position(|b| *b == b'\n') {
            let rest = line.split_off(pos + 1);
            line.pop();
            return Ok(Received { line, rest, fds });
        }
        if line.len() > MAX_LINE {
            return Err("supervisor sent an over-long line".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let req = Request::Exec(ExecRequest {
            login: "alice".into(),
            command: Some("echo hi".into()),
            argv: None,
            session: Some("s1".into()),
            pty: Some(("xterm".into(), 80, 24)),
            env: vec![("LANG".into(), "C.UTF-8".into())],
            sftp: None,
        });
        let line = encode(&req);
        assert_eq!(*line.last().unwrap(), b'\n');
        let back: Request = decode(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, req);
        assert!(decode::<Request>(b"{\"op\":\"format_disk\"}").is_err());
        assert!(decode::<Reply>(b"\xff\xfe").is_err());
    }

    #[test]
    fn fds_travel_with_the_line() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send_with_fds(
            a.as_raw_fd(),
            b"{\"reply\":\"stopped\"}\nrest",
            &[r.as_raw_fd()],
        )
        .unwrap();
        let got = recv_line_with_fds(&b).unwrap();
        assert_eq!(decode::<Reply>(&got.line).unwrap(), Reply::Stopped);
        assert_eq!(got.rest, b"rest");
        assert_eq!(got.fds.len(), 1);
    }
}
