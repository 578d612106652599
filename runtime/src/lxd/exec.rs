//! A process in an LXD instance, over the exec API's websockets: fd 0 (with a terminal,
//! the terminal both ways), fds 1 and 2 (without one), and the control socket for window
//! size and signals. Each websocket is bridged to an in-memory pipe so the gateway sees
//! the same [`Process`] as from the native runtime. The exit status is the finished
//! operation's `return`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::client::{Answer, LxdClient};
use crate::api::{ExitStatus, Process, ProcessControl, WindowSize};
use crate::error::{Result, RuntimeError};
use crate::signals::signal_number;

type Ws = WebSocketStream<super::transport::Conn>;
type Sink = Arc<Mutex<SplitSink<Ws, Message>>>;

/// Bytes buffered between a websocket and the gateway, each way.
const PIPE: usize = 256 * 1024;

/// What to run, as LXD's exec takes it.
pub struct ExecRequest {
    /// argv.
    pub command: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// A terminal's size, or `None` for pipes.
    pub pty: Option<(u16, u16)>,
    /// uid, gid and working directory.
    pub user: (u32, u32),
    /// Working directory.
    pub cwd: String,
}

/// An operation's websockets, by the fd names its metadata gives them secrets for.
struct Sockets<'a> {
    client: &'a LxdClient,
    id: &'a str,
    fds: &'a Value,
}

impl Sockets<'_> {
    /// Connects the websocket of `fd`.
    async fn open(&self, fd: &str) -> Result<Ws> {
        let secret = self.fds[fd]
            .as_str()
            .ok_or_else(|| RuntimeError::Engine(format!("LXD gave no websocket for fd {fd}")))?;
        let path = format!("/1.0/operations/{}/websocket?secret={secret}", self.id);
        self.client.websocket(&path).await
    }

    /// The control websocket (its messages read and ignored).
    async fn control(&self, pty: bool) -> Result<Control> {
        let (sink, stream) = self.open("control").await?.split();
        tokio::spawn(drain(stream));
        Ok(Control {
            sink: Arc::new(Mutex::new(sink)),
            pty,
        })
    }

    /// fd 0 as a terminal, both ways: (what goes to it, what comes from it). With
    /// `detach`, the end of what goes to it closes it and `detach` too (a console).
    async fn terminal(&self, detach: Option<Sink>) -> Result<(DuplexStream, DuplexStream)> {
        let (sink, stream) = self.open("0").await?.split();
        let sink: Sink = Arc::new(Mutex::new(sink));
        let (stdin, stdin_far) = tokio::io::duplex(PIPE);
        let (stdout, stdout_far) = tokio::io::duplex(PIPE);
        let fed = feed(stdin_far, sink.clone(), false);
        tokio::spawn(async move {
            fed.await;
            for s in detach.iter() {
                let _ = s.lock().await.send(Message::Close(None)).await;
            }
        });
        // The operation ends once we close fd 0 after the terminal's last output.
        tokio::spawn(read_out(stream, stdout_far, Some(sink)));
        Ok((stdin, stdout))
    }
}

/// Attaches to instance `name`'s console (LXD's console API): fd 0 is the console both
/// ways, the control websocket sizes it; closing what goes to it detaches, and the
/// output ends when the instance stops.
pub async fn console(client: &LxdClient, name: &str, size: WindowSize) -> Result<Process> {
    let body = json!({"width": size.cols, "height": size.rows, "type": "console"});
    let path = format!("/1.0/instances/{name}/console");
    let (id, metadata) = match client.request(Method::POST, &path, Some(&body)).await? {
        Answer::Async { id, metadata } => (id, metadata),
        Answer::Sync(_) => {
            return Err(RuntimeError::Engine(
                "console did not start an operation".into(),
            ))
        }
    };
    let sockets = Sockets {
        client,
        id: &id,
        fds: &metadata["metadata"]["fds"],
    };
    let control = sockets.control(true).await?;
    let (stdin, stdout) = sockets.terminal(Some(control.sink.clone())).await?;
    let client = client.clone();
    Ok(Process {
        stdin: Box::pin(stdin),
        stdout: Box::pin(stdout),
        stderr: None,
        control: Box::new(control),
        exit: Box::pin(async move {
            let _ = client.outcome(&id).await;
            Ok(ExitStatus::Code(0))
        }),
    })
}

/// Starts `req` in instance `name`.
pub async fn exec(client: &LxdClient, name: &str, req: ExecRequest) -> Result<Process> {
    let (id, metadata) = start_operation(client, name, &req).await?;
    let sockets = Sockets {
        client,
        id: &id,
        fds: &metadata["metadata"]["fds"],
    };
    let socket = |fd: &'static str| sockets.open(fd);
    // LXD waits at most 5 s for every websocket: connect them all at once.
    let control = sockets.control(req.pty.is_some()).await?;
    let (stdin, stdout, stderr) = if req.pty.is_some() {
        let (stdin, stdout) = sockets.terminal(None).await?;
        (stdin, stdout, None)
    } else {
        let (w0, w1, w2) = (socket("0").await?, socket("1").await?, socket("2").await?);
        let (sink0, _) = w0.split();
        let (stdin, stdin_far) = tokio::io::duplex(PIPE);
        let (stdout, stdout_far) = tokio::io::duplex(PIPE);
        let (stderr, stderr_far) = tokio::io::duplex(PIPE);
        tokio::spawn(feed(stdin_far, Arc::new(Mutex::new(sink0)), true));
        tokio::spawn(read_out(w1.split().1, stdout_far, None));
        tokio::spawn(read_out(w2.split().1, stderr_far, None));
        (stdin, stdout, Some(stderr))
    };
    let exit = Box::pin(exit_status(client.clone(), id));
    Ok(Process {
        stdin: Box::pin(stdin),
        stdout: Box::pin(stdout),
        stderr: stderr.map(|e| Box::pin(e) as crate::api::ByteReader),
        control: Box::new(control),
        exit,
    })
}

/// Asks LXD to run `req` in instance `name`: the operation's id and its first metadata
/// (the websockets' secrets).
async fn start_operation(
    client: &LxdClient,
    name: &str,
    req: &ExecRequest,
) -> Result<(String, Value)> {
    let environment: serde_json::Map<String, Value> = req
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let (width, height) = req.pty.unwrap_or((80, 24));
    let body = json!({
        "command": req.command, "environment": environment, "interactive": req.pty.is_some(),
        "wait-for-websocket": true, "record-output": false, "width": width, "height": height,
        "user": req.user.0, "group": req.user.1, "cwd": req.cwd,
    });
    let path = format!("/1.0/instances/{name}/exec");
    match client.request(Method::POST, &path, Some(&body)).await? {
        Answer::Async { id, metadata } => Ok((id, metadata)),
        Answer::Sync(_) => Err(RuntimeError::Engine(
            "exec did not start an operation".into(),
        )),
    }
}

/// The exit status of exec operation `id`, once it ends (127 when LXD did not find the
/// command, as a shell says).
async fn exit_status(client: LxdClient, id: String) -> Result<crate::api::ExitStatus> {
    let op = client.outcome(&id).await?;
    let code = op["metadata"]["return"]
        .as_i64()
        .unwrap_or(match op["err"].as_str() {
            Some(e) if e.contains("not found") => 127,
            _ => 255,
        });
    Ok(status_from_code(code as i32))
}

/// Reads (and so answers the keepalive pings of) a websocket whose messages we ignore.
async fn drain(mut stream: SplitStream<Ws>) {
    while let Some(Ok(_)) = stream.next().await {}
}

/// Copies the gateway's bytes to the process. At the end, without a terminal, an empty
/// text message tells LXD that stdin is closed.
async fn feed(mut from: DuplexStream, sink: Sink, eof_message: bool) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        if sink.lock().await.send(Message::Binary(data)).await.is_err() {
            return;
        }
    }
    if eof_message {
        let _ = sink.lock().await.send(Message::Text("".into())).await;
    }
}

/// Copies the process's output to the gateway until LXD's empty text message (or the
/// connection drops); then, for a terminal, closes fd 0 so the operation can finish.
async fn read_out(mut stream: SplitStream<Ws>, mut to: DuplexStream, close: Option<Sink>) {
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Binary(data)) => {
                if to.write_all(&data).await.is_err() {
                    break;
                }
            }
            Ok(Message::Text(t)) if t.is_empty() => break,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = to.shutdown().await;
    if let Some(sink) = close {
        let _ = sink.lock().await.send(Message::Close(None)).await;
    }
}

/// The control websocket.
struct Control {
    sink: Sink,
    pty: bool,
}

/// LXD reports a process killed by signal N as exit code 128+N (as a shell would);
/// those become signals again, so the client sees what sshd would have sent.
fn status_from_code(code: i32) -> ExitStatus {
    match crate::signals::known_signal(code - 128) {
        Some(name) if code > 128 => ExitStatus::Signal {
            name,
            core_dumped: false,
        },
        _ => ExitStatus::Code(code),
    }
}

#[async_trait::async_trait]
impl ProcessControl for Control {
    async fn resize(&self, size: WindowSize) -> Result<()> {
        if !self.pty {
            return Ok(());
        }
        let msg = json!({"command": "window-resize",
            "args": {"width": size.cols.to_string(), "height": size.rows.to_string()}});
        self.send(msg).await
    }

    async fn signal(&self, name: &str) -> Result<()> {
        let n = signal_number(name)
            .ok_or_else(|| RuntimeError::Invalid(format!("unknown signal '{name}'")))?;
        self.send(json!({"command": "signal", "signal": n})).await
    }
}

impl Control {
    async fn send(&self, msg: Value) -> Result<()> {
        self.sink
            .lock()
            .await
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| RuntimeError::Engine(format!("exec control: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_above_128_are_the_signals_lxd_saw() {
        assert_eq!(
            status_from_code(137),
            ExitStatus::Signal {
                name: "KILL",
                core_dumped: false
            }
        );
        assert_eq!(status_from_code(3), ExitStatus::Code(3));
        assert_eq!(status_from_code(200), ExitStatus::Code(200));
    }
}
