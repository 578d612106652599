//! The local admin socket: `state_dir/admin.sock`, mode 0600, root only (checked again by
//! the peer's credentials). Host commands (`gatehouse container …`, `sessions …`, `audit
//! verify`) are sent to the running gateway through it, so that the gateway that serves
//! sessions also makes the changes and audits them; when no gateway runs, they work on
//! the state directory directly. One request per connection: a JSON line with the
//! command's words and who runs it; the answer is one JSON line with stdout, stderr and
//! the exit status.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{execute_words, Caller, Done};
use crate::app::App;

/// The largest request accepted.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Request {
    words: Vec<String>,
    by: String,
}

/// The socket's path under the state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("admin.sock")
}

/// Listens on the socket for as long as the gateway runs.
pub async fn serve(app: Arc<App>) -> anyhow::Result<()> {
    let p = path(&app.config.server.state_dir);
    let _ = std::fs::remove_file(&p);
    let listener = UnixListener::bind(&p)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(app.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!("admin socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn answer(app: Arc<App>, stream: UnixStream) {
    let root = stream.peer_cred().map(|c| c.uid() == 0).unwrap_or(false);
    let (read, mut write) = stream.into_split();
    let done = if !root {
        Done::failed("gatehouse: the admin socket is for root only\n".into(), 1)
    } else {
        let mut line = String::new();
        let mut reader = BufReader::new(read.take(MAX_REQUEST));
        match reader.read_line(&mut line).await {
            Ok(_) => match serde_json::from_str::<Request>(&line) {
                Ok(req) => {
                    let by = format!(
                        "{} (local admin)",
                        req.by.chars().take(64).collect::<String>()
                    );
                    execute_words(&app, &Caller::Host { by }, &req.words).await
                }
                Err(e) => Done::failed(format!("gatehouse: bad admin request: {e}\n"), 2),
            },
            Err(e) => Done::failed(
                format!("gatehouse: cannot read the admin request: {e}\n"),
                2,
            ),
        }
    };
    let mut reply = serde_json::to_vec(&done).unwrap_or_default();
    reply.push(b'\n');
    let _ = write.write_all(&reply).await;
}

/// Sends a command to the running gateway. `None` when no gateway listens (the caller
/// then does the work itself).
pub async fn forward(
    state_dir: &Path,
    words: Vec<String>,
    by: String,
) -> Option<anyhow::Result<Done>> {
    let stream = UnixStream::connect(path(state_dir)).await.ok()?;
    Some(exchange(stream, Request { words, by }).await)
}

async fn exchange(mut stream: UnixStream, req: Request) -> anyhow::Result<Done> {
    let mut line = serde_json::to_vec(&req)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).await?;
    serde_json::from_str(&answer)
        .map_err(|e| anyhow::anyhow!("the gateway answered the admin socket strangely: {e}"))
}
