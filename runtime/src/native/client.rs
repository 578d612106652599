//! The gateway's side of the supervisor protocol, on tokio.

use super::error::NativeError;
use crate::signals::{signal_name, signal_number};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use super::protocol::{self, Control, ExecRequest, Reply, Request};
use super::pty::{self, PtyMaster};
use crate::api::{ExitStatus, Process, ProcessControl, WindowSize};
use crate::error::{Result, RuntimeError};

fn sup_err(name: &str, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Supervisor {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

/// The first reply to a request, with the connection it came on.
struct Answer {
    stream: StdStream,
    reply: Reply,
    /// Bytes received after the reply line.
    rest: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// Sends one request and reads the first reply line (with any fds), blocking.
fn request_blocking(sock: &Path, req: &Request) -> std::result::Result<Answer, NativeError> {
    use std::io::Write;
    let mut stream = StdStream::connect(sock).map_err(NativeError::NotRunning)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&protocol::encode(req))
        .map_err(NativeError::step("cannot send request"))?;
    let received = protocol::recv_line_with_fds(&stream)?;
    let reply = protocol::decode(&received.line)?;
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(Answer {
        stream,
        reply,
        rest: received.rest,
        fds: received.fds,
    })
}

async fn request(sock: &Path, req: Request) -> std::result::Result<Answer, NativeError> {
    let sock: PathBuf = sock.to_path_buf();
    tokio::task::spawn_blocking(move || request_blocking(&sock, &req))
        .await
        .map_err(NativeError::step("internal error"))?
}

/// An unconnected TCP socket in the container's network namespace.
pub async fn socket(name: &str, sock: &Path) -> Result<std::os::fd::OwnedFd> {
    let Answer { reply, mut fds, .. } = request(sock, Request::Socket)
        .await
        .map_err(|e| sup_err(name, e))?;
    match reply {
        Reply::Socket if !fds.is_empty() => Ok(fds.remove(0)),
        Reply::Error { message } => Err(sup_err(name, message)),
        other => Err(sup_err(name, format!("unexpected reply {other:?}"))),
    }
}

/// A listening socket inside the container for `login`'s forwarded agent, and its path.
pub async fn agent_listener(
    name: &str,
    sock: &Path,
    login: &str,
) -> Result<(std::os::fd::OwnedFd, String)> {
    let req = Request::AgentListener {
        login: login.to_string(),
    };
    let Answer { reply, mut fds, .. } = request(sock, req).await.map_err(|e| sup_err(name, e))?;
    match reply {
        Reply::AgentListener { path } if !fds.is_empty() => Ok((fds.remove(0), path)),
        Reply::Error { message } => Err(sup_err(name, message)),
        other => Err(sup_err(name, format!("unexpected reply {other:?}"))),
    }
}

/// Asks a supervisor whether its container runs; `None` when nobody answers.
pub async fn ping(sock: &Path) -> Option<(i32, DateTime<Utc>)> {
    match request(sock, Request::Ping).await {
        Ok(Answer {
            reply: Reply::Pong { init_pid, since },
            ..
        }) => Some((init_pid, since)),
        _ => None,
    }
}

/// Asks a supervisor to stop its container and waits until it has.
pub async fn stop(name: &str, sock: &Path, grace_ms: u64) -> Result<()> {
    let Answer { stream, reply, .. } = match request(sock, Request::Stop { grace_ms }).await {
        Ok(v) => v,
        Err(NativeError::NotRunning(_) | NativeError::Closed) => return Ok(()),
        Err(e) => return Err(sup_err(name, e)),
    };
    match reply {
        Reply::Stopped => Ok(()),
        Reply::Error { message } => Err(sup_err(name, message)),
        other => {
            drop(stream);
            Err(sup_err(name, format!("unexpected reply {other:?}")))
        }
    }
}

/// Starts a process through the supervisor.
pub async fn exec(name: &str, sock: &Path, req: ExecRequest) -> Result<Process> {
    let has_pty = req.pty.is_some();
    let Answer {
        stream,
        reply,
        rest,
        fds,
    } = request(sock, Request::Exec(req))
        .await
        .map_err(|e| sup_err(name, e))?;
    match reply {
        Reply::Started { .. } => {}
        Reply::Error { message } if message == protocol::STOPPING => {
            return Err(RuntimeError::Stopping(name.to_string()))
        }
        Reply::Error { message } => return Err(sup_err(name, message)),
        other => return Err(sup_err(name, format!("unexpected reply {other:?}"))),
    }
    stream
        .set_nonblocking(true)
        .map_err(|e| sup_err(name, e.to_string()))?;
    let stream = UnixStream::from_std(stream).map_err(|e| sup_err(name, e.to_string()))?;
    let (read, write) = stream.into_split();
    let exit = Box::pin(exit_status(name.to_string(), read, rest));
    let control = |pty| {
        Box::new(NativeControl {
            write: Mutex::new(write),
            pty,
        })
    };
    let bad = |what: &str| sup_err(name, format!("supervisor sent {what}"));
    let io = |e: std::io::Error| sup_err(name, e.to_string());
    if has_pty {
        let [master] =
            <[OwnedFd; 1]>::try_from(fds).map_err(|_| bad("the wrong number of descriptors"))?;
        let resize_fd = master.try_clone().map_err(io)?;
        let (r, w) = tokio::io::split(PtyMaster::new(master).map_err(io)?);
        Ok(Process {
            stdin: Box::pin(w),
            stdout: Box::pin(r),
            stderr: None,
            control: control(Some(resize_fd)),
            exit,
        })
    } else {
        use tokio::net::unix::pipe;
        let [in_fd, out_fd, err_fd] =
            <[OwnedFd; 3]>::try_from(fds).map_err(|_| bad("the wrong number of descriptors"))?;
        Ok(Process {
            stdin: Box::pin(pipe::Sender::from_owned_fd(in_fd).map_err(io)?),
            stdout: Box::pin(pipe::Receiver::from_owned_fd(out_fd).map_err(io)?),
            stderr: Some(Box::pin(pipe::Receiver::from_owned_fd(err_fd).map_err(io)?)),
            control: control(None),
            exit,
        })
    }
}

/// The exit status the supervisor reports on the connection of a started process
/// (`rest`: what arrived after the reply that started it).
async fn exit_status(name: String, read: OwnedReadHalf, rest: Vec<u8>) -> Result<ExitStatus> {
    let mut lines = BufReader::new(read);
    let mut line = String::from_utf8_lossy(&rest).into_owned();
    loop {
        if let Some(pos) = line.find('\n') {
            let reply: Reply =
                protocol::decode(&line.as_bytes()[..pos]).map_err(|e| sup_err(&name, e))?;
            return match reply {
                Reply::Exited {
                    code: Some(code), ..
                } => Ok(ExitStatus::Code(code)),
                Reply::Exited {
                    signal: Some(sig),
                    core_dumped,
                    ..
                } => Ok(ExitStatus::Signal {
                    name: signal_name(sig),
                    core_dumped,
                }),
                other => Err(sup_err(&name, format!("unexpected message {other:?}"))),
            };
        }
        let n = lines
            .read_line(&mut line)
            .await
            .map_err(|e| sup_err(&name, e.to_string()))?;
        if n == 0 {
            return Err(sup_err(
                &name,
                "the supervisor went away (container stopped?)",
            ));
        }
    }
}

/// Attaches to the container's console through the supervisor.
pub async fn console(name: &str, sock: &Path, size: WindowSize) -> Result<Process> {
    let req = Request::Console {
        cols: size.cols,
        rows: size.rows,
    };
    let Answer {
        stream,
        reply,
        rest,
        mut fds,
    } = request(sock, req).await.map_err(|e| sup_err(name, e))?;
    let master = match reply {
        Reply::Console if !fds.is_empty() => fds.remove(0),
        Reply::Error { message } => return Err(sup_err(name, message)),
        other => return Err(sup_err(name, format!("unexpected reply {other:?}"))),
    };
    let io = |e: std::io::Error| sup_err(name, e.to_string());
    stream.set_nonblocking(true).map_err(io)?;
    let (read, write) = UnixStream::from_std(stream).map_err(io)?.into_split();
    let (ended, exit) = tokio::sync::oneshot::channel();
    let output = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(rest), read);
    Ok(Process {
        stdin: Box::pin(write),
        stdout: Box::pin(UntilEnd {
            inner: output,
            ended: Some(ended),
        }),
        stderr: None,
        control: Box::new(ConsoleControl { master }),
        // The console is there until its output ends.
        exit: Box::pin(async move {
            let _ = exit.await;
            Ok(ExitStatus::Code(0))
        }),
    })
}

/// A reader that says when it reached its end (or failed).
struct UntilEnd<R> {
    inner: R,
    ended: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for UntilEnd<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let at_end = match &polled {
            std::task::Poll::Ready(Ok(())) => buf.filled().len() == before,
            std::task::Poll::Ready(Err(_)) => true,
            std::task::Poll::Pending => false,
        };
        if at_end {
            if let Some(tx) = self.ended.take() {
                let _ = tx.send(());
            }
        }
        polled
    }
}

/// Resizes a console; it takes no signals (the processes on it are the container's).
struct ConsoleControl {
    master: OwnedFd,
}

#[async_trait]
impl ProcessControl for ConsoleControl {
    async fn resize(&self, size: WindowSize) -> Result<()> {
        let fd = self.master.as_raw_fd();
        pty::set_size(fd, size.cols, size.rows, size.px_width, size.px_height)
            .map_err(|e| RuntimeError::Invalid(e.to_string()))
    }

    async fn signal(&self, _name: &str) -> Result<()> {
        Err(RuntimeError::Invalid("a console takes no signals".into()))
    }
}

struct NativeControl {
    write: Mutex<OwnedWriteHalf>,
    pty: Option<OwnedFd>,
}

#[async_trait]
impl ProcessControl for NativeControl {
    async fn resize(&self, size: WindowSize) -> Result<()> {
        if let Some(fd) = &self.pty {
            pty::set_size(
                fd.as_raw_fd(),
                size.cols,
                size.rows,
                size.px_width,
                size.px_height,
            )
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    async fn signal(&self, name: &str) -> Result<()> {
        let Some(signal) = signal_number(name) else {
            return Err(RuntimeError::Invalid(format!("unknown signal '{name}'")));
        };
        let line = protocol::encode(&Control::Signal { signal });
        self.write
            .lock()
            .await
            .write_all(&line)
            .await
            .map_err(|e| RuntimeError::Invalid(format!("cannot signal: {e}")))
    }
}
