//! A small, typed client for LXD's REST API, over its unix socket or HTTPS (see
//! [`super::transport`]): requests with JSON bodies, the sync/async/error envelope,
//! waiting for operations, raw uploads and downloads, and websockets (exec). One
//! connection per request: LXD answers on a local socket in well under a millisecond,
//! and nothing here keeps state between requests.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;

use super::transport::{Conn, Endpoint, HangupTolerant};

use crate::error::{LxdError, Result, RuntimeError};

/// The longest JSON answer read (instance lists with many snapshots stay far below).
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// How long one request may take to be answered (operations are waited for separately).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an operation is waited for.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

/// A request body: bytes at hand, or a file streamed from disk.
type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed()
}

/// LXD's envelope around every answer.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_code: u16,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    metadata: Value,
}

/// An answer: done at once, or an operation that runs on.
#[derive(Debug)]
pub enum Answer {
    /// The result.
    Sync(Value),
    /// The operation's id and its first metadata (for exec: the websocket secrets).
    Async {
        /// Operation id.
        id: String,
        /// The operation object as created.
        metadata: Value,
    },
}

/// A connection to one LXD daemon, in one project.
#[derive(Debug, Clone)]
pub struct LxdClient {
    endpoint: Endpoint,
    project: String,
}

fn engine(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine(what.to_string())
}

impl LxdClient {
    /// A client for the daemon at `endpoint`, working in `project`.
    pub fn new(endpoint: Endpoint, project: &str) -> Self {
        LxdClient {
            endpoint,
            project: project.to_string(),
        }
    }

    /// Where the daemon is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `path` with the project added to its query (unless it asks for all projects).
    pub fn url(&self, path: &str) -> String {
        let every_project = path.contains("all-projects=true");
        if self.project == "default" || path.starts_with("/1.0/operations") || every_project {
            return path.to_string();
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}project={}", self.project)
    }

    /// Sends one request; returns the answer with its body still to be read.
    async fn open(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Body,
        answer_within: Duration,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let stream = self.endpoint.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(engine)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("Host", "lxd")
            .header("Content-Type", content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body).map_err(engine)?;
        tokio::time::timeout(answer_within, sender.send_request(req))
            .await
            .map_err(|_| engine(format!("no answer to {path} within {answer_within:?}")))?
            .map_err(engine)
    }

    /// Sends one request; returns the status and the raw body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Body,
        answer_within: Duration,
    ) -> Result<(StatusCode, Bytes)> {
        let resp = self
            .open(method, path, content_type, headers, body, answer_within)
            .await?;
        let status = resp.status();
        let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
        let read = tokio::time::timeout(REQUEST_TIMEOUT, limited.collect())
            .await
            .map_err(|_| engine(format!("{path}: the answer did not arrive in time")))?;
        Ok((status, read.map_err(engine)?.to_bytes()))
    }

    pub(crate) fn answer(path: &str, status: StatusCode, body: &[u8]) -> Result<Answer> {
        let env: Envelope = serde_json::from_slice(body).map_err(|e| {
            engine(format!(
                "{path}: unreadable answer (HTTP {status}): {e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        match env.kind.as_str() {
            "sync" => Ok(Answer::Sync(env.metadata)),
            "async" => {
                // `/1.0/operations/ID`, with `?project=…` on a cluster member's behalf.
                let path = env.operation.split('?').next().unwrap_or_default();
                let id = path.rsplit('/').next().unwrap_or_default().to_string();
                Ok(Answer::Async {
                    id,
                    metadata: env.metadata,
                })
            }
            _ => Err(RuntimeError::Lxd(LxdError {
                status: Some(status.as_u16()),
                code: env.error_code,
                message: env.error,
            })),
        }
    }

    /// The error of a raw request that did not succeed: LXD's own, from its answer, or
    /// the HTTP status when the answer says nothing.
    fn refusal(path: &str, status: StatusCode, raw: &[u8]) -> RuntimeError {
        match Self::answer(path, status, raw) {
            Err(e) => e,
            Ok(_) => engine(format!("{path}: HTTP {status}")),
        }
    }

    /// A request with an optional JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(engine)?),
            None => Bytes::new(),
        };
        let (status, raw) = self
            .send(
                method,
                path,
                "application/json",
                &[],
                full(bytes),
                REQUEST_TIMEOUT,
            )
            .await?;
        Self::answer(path, status, &raw)
    }

    /// A GET whose answer is synchronous.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// A request that may run as an operation; waits for it and returns its metadata.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        match self.request(method, path, body).await? {
            Answer::Sync(v) => Ok(v),
            Answer::Async { id, .. } => self.wait(&id).await,
        }
    }

    /// Waits for operation `id` to finish; its metadata on success, its error otherwise.
    pub async fn wait(&self, id: &str) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + OPERATION_TIMEOUT;
        loop {
            let op = match self
                .request(
                    Method::GET,
                    &format!("/1.0/operations/{id}/wait?timeout=30"),
                    None,
                )
                .await?
            {
                Answer::Sync(v) => v,
                Answer::Async { metadata, .. } => metadata,
            };
            match op["status_code"].as_u64() {
                Some(200) => return Ok(op["metadata"].clone()),
                Some(c) if c >= 400 => {
                    let err = op["err"].as_str().unwrap_or("operation failed");
                    return Err(RuntimeError::Lxd(LxdError {
                        status: None,
                        code: u16::try_from(c).unwrap_or(u16::MAX),
                        message: err.to_string(),
                    }));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(engine(format!(
                        "operation {id} still running after {OPERATION_TIMEOUT:?}"
                    )));
                }
                _ => {}
            }
        }
    }

    /// The final state of an operation that may have finished already (exec): its
    /// metadata whether it succeeded or failed.
    pub async fn outcome(&self, id: &str) -> Result<Value> {
        loop {
            let op = self
                .get(&format!("/1.0/operations/{id}/wait?timeout=30"))
                .await?;
            if op["status_code"].as_u64().is_some_and(|c| c >= 200) {
                return Ok(op);
            }
        }
    }

    /// Sends `file` (an image or backup tarball, any size) as the raw body of a request
    /// that runs as an operation, streamed from disk; waits for the operation.
    pub async fn upload_file(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        file: &Path,
    ) -> Result<Value> {
        use futures_util::TryStreamExt;
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| RuntimeError::io("cannot read", file, e))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)
            .map_ok(hyper::body::Frame::data);
        let body = http_body_util::StreamBody::new(stream).boxed();
        let (status, raw) = self
            .send(
                Method::POST,
                path,
                "application/octet-stream",
                headers,
                body,
                OPERATION_TIMEOUT,
            )
            .await?;
        match Self::answer(path, status, &raw)? {
            Answer::Sync(v) => Ok(v),
            Answer::Async { id, .. } => self.wait(&id).await,
        }
    }

    /// Reads a raw body of at most `max` bytes, within `within`, with the value of one
    /// response header: `None` on 404.
    pub async fn fetch_raw(
        &self,
        path: &str,
        header: &str,
        max: usize,
        within: Duration,
    ) -> Result<Option<(Option<String>, Bytes)>> {
        let resp = self
            .open(
                Method::GET,
                path,
                "application/json",
                &[],
                full(Bytes::new()),
                within,
            )
            .await?;
        let status = resp.status();
        let value = resp
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limited = http_body_util::Limited::new(resp.into_body(), max.saturating_add(1));
        let raw = tokio::time::timeout(within, limited.collect())
            .await
            .map_err(|_| engine(format!("{path}: the answer did not arrive in time")))?
            .map_err(|e| engine(format!("{path}: {e} (more than {max} bytes?)")))?
            .to_bytes();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Self::refusal(path, status, &raw));
        }
        Ok(Some((value, raw)))
    }

    /// Writes a raw body (a backup export, any size) to `file`.
    pub async fn download_to(&self, path: &str, file: &Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let resp = self
            .open(
                Method::GET,
                path,
                "application/json",
                &[],
                full(Bytes::new()),
                REQUEST_TIMEOUT,
            )
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let limited = http_body_util::Limited::new(body, MAX_ANSWER);
            let raw = limited.collect().await.map_err(engine)?.to_bytes();
            return Err(Self::refusal(path, status, &raw));
        }
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| RuntimeError::io("cannot create", file, e))?;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(engine)?.into_data() {
                out.write_all(&data)
                    .await
                    .map_err(|e| RuntimeError::io("cannot write", file, e))?;
            }
        }
        out.sync_all()
            .await
            .map_err(|e| RuntimeError::io("cannot write", file, e))
    }

    /// Opens a websocket on `path` (an operation's websocket with its secret).
    pub async fn websocket(&self, path: &str) -> Result<tokio_tungstenite::WebSocketStream<Conn>> {
        upgrade(self.endpoint.connect().await?, path).await
    }
}

/// Makes `stream` a websocket on `path`, tolerant of the daemon hanging up first (see
/// [`HangupTolerant`]).
async fn upgrade(stream: Conn, path: &str) -> Result<tokio_tungstenite::WebSocketStream<Conn>> {
    let stream: Conn = Box::new(HangupTolerant(stream));
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://lxd{path}"), stream)
        .await
        .map_err(|e| engine(format!("websocket {path}: {e}")))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_goes_into_the_query_unless_it_is_the_default() {
        let c = LxdClient::new(Endpoint::unix("/x"), "default");
        assert_eq!(c.url("/1.0/instances"), "/1.0/instances");
        let c = LxdClient::new(Endpoint::unix("/x"), "team");
        assert_eq!(c.url("/1.0/instances"), "/1.0/instances?project=team");
        assert_eq!(
            c.url("/1.0/instances?recursion=1"),
            "/1.0/instances?recursion=1&project=team"
        );
        assert_eq!(c.url("/1.0/operations/x/wait"), "/1.0/operations/x/wait");
    }

    #[test]
    fn envelopes_are_read_and_errors_keep_lxds_words() {
        let sync = br#"{"type":"sync","status":"Success","status_code":200,"metadata":{"a":1}}"#;
        assert!(matches!(
            LxdClient::answer("/p", StatusCode::OK, sync).unwrap(),
            Answer::Sync(v) if v["a"] == 1
        ));
        let op = br#"{"type":"async","operation":"/1.0/operations/abc","metadata":{"id":"abc"}}"#;
        assert!(matches!(
            LxdClient::answer("/p", StatusCode::ACCEPTED, op).unwrap(),
            Answer::Async { id, .. } if id == "abc"
        ));
        let remote =
            br#"{"type":"async","operation":"/1.0/operations/abc?project=default","metadata":{}}"#;
        assert!(matches!(
            LxdClient::answer("/p", StatusCode::ACCEPTED, remote).unwrap(),
            Answer::Async { id, .. } if id == "abc"
        ));
        let err = br#"{"type":"error","error":"Instance not found","error_code":404}"#;
        let e = LxdClient::answer("/p", StatusCode::NOT_FOUND, err).unwrap_err();
        assert_eq!(e.to_string(), "LXD: not found: Instance not found");
        assert!(LxdClient::answer("/p", StatusCode::OK, b"<html>").is_err());
    }

    /// LXD pings, sends the last output and hangs up before the gateway reads anything:
    /// the unanswerable ping must not cost the output.
    #[tokio::test]
    async fn output_sent_before_the_daemon_hangs_up_is_read() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let daemon = tokio::spawn(async move {
            let mut ws = tokio_tungstenite::accept_async(theirs).await.unwrap();
            ws.send(Message::Ping("keepalive".into())).await.unwrap();
            ws.send(Message::Binary("last output".into()))
                .await
                .unwrap();
            ws.send(Message::Text("".into())).await.unwrap();
            // Hang up without a close handshake, as LXD does when an exec ends.
        });
        let mut ws = upgrade(Box::new(ours), "/1.0/operations/x/websocket")
            .await
            .unwrap();
        daemon.await.unwrap();
        let mut got = vec![];
        while let Some(Ok(m)) = ws.next().await {
            got.push(m);
        }
        assert!(
            got.contains(&Message::Binary("last output".into())),
            "{got:?}"
        );
    }
}
