//! File-level audit of transfers: the SFTP subsystem (which `sftp` and modern `scp` use)
//! and legacy `scp -t`/`scp -f`. An observer task per channel reads copies of the bytes
//! the relay passes (shared buffers, not copies) and writes one audit event per file
//! operation: `file.open`, `file.read` and `file.write` (with size and SHA-256),
//! `file.remove`, `file.rename`, `file.mkdir`, `file.rmdir`, `file.setstat`,
//! `file.symlink`, `file.link`, `file.list`. If an event cannot be written the session
//! ends, as it does when its recording fails.

mod digest;
mod scp;
mod sftp;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use scp::{Direction, ScpCommand};

use crate::app::App;
use crate::audit::{AuditEvent, FileKind, FileRecord};

/// Chunks queued towards the observer before the relay waits for it.
const QUEUE: usize = 256;

/// One file operation seen in a transfer.
#[derive(Debug)]
pub struct FileEvent {
    /// The operation (`file.write`, …).
    pub kind: FileKind,
    /// What the event records besides who and where.
    pub detail: Value,
    /// The transfer can no longer be followed: once this event is written the session
    /// ends (a file audit that stops is a lost audit, and that fails closed).
    pub ends_session: bool,
}

impl FileEvent {
    fn new(kind: FileKind, detail: Value) -> Self {
        FileEvent {
            kind,
            detail,
            ends_session: false,
        }
    }

    /// The event that says the transfer can no longer be followed, and why.
    fn lost(reason: String) -> Self {
        FileEvent {
            kind: FileKind::AuditLost,
            detail: serde_json::json!({ "reason": reason }),
            ends_session: true,
        }
    }
}

/// What a channel's transfer is, and how to follow it.
pub enum Watch {
    /// The SFTP subsystem.
    Sftp(sftp::SftpWatch),
    /// A legacy scp command.
    Scp(scp::ScpWatch),
}

impl Watch {
    /// An SFTP conversation.
    pub fn sftp() -> Self {
        Watch::Sftp(sftp::SftpWatch::default())
    }

    /// A legacy scp transfer made by `command`.
    pub fn scp(command: ScpCommand) -> Self {
        Watch::Scp(scp::ScpWatch::new(command))
    }

    fn via(&self) -> &'static str {
        match self {
            Watch::Sftp(_) => "sftp",
            Watch::Scp(_) => "scp",
        }
    }

    /// Which streams it reads: (from the client, from the server).
    fn reads(&self) -> (bool, bool) {
        match self {
            Watch::Sftp(_) => (true, true),
            Watch::Scp(w) => match w.direction() {
                Direction::Upload => (true, false),
                Direction::Download => (false, true),
            },
        }
    }

    pub(crate) fn client(&mut self, data: &[u8], events: &mut Vec<FileEvent>) {
        match self {
            Watch::Sftp(w) => w.client(data, events),
            Watch::Scp(w) if w.direction() == Direction::Upload => w.sent(data, events),
            Watch::Scp(_) => {}
        }
    }

    pub(crate) fn server(&mut self, data: &[u8], events: &mut Vec<FileEvent>) {
        match self {
            Watch::Sftp(w) => w.server(data, events),
            Watch::Scp(w) if w.direction() == Direction::Download => w.sent(data, events),
            Watch::Scp(_) => {}
        }
    }

    pub(crate) fn finish(&mut self, events: &mut Vec<FileEvent>) {
        match self {
            Watch::Sftp(w) => w.finish(events),
            Watch::Scp(w) => w.finish(events),
        }
    }
}

enum Item {
    Client(Bytes),
    Server(Bytes),
    Finish(oneshot::Sender<()>),
}

/// The handle a channel's relay feeds; cheap to clone.
#[derive(Clone)]
pub struct FileAudit {
    tx: mpsc::Sender<Item>,
    reads: (bool, bool),
}

impl FileAudit {
    /// Starts the observer. `who` (session, user, container, login) goes into every event;
    /// a failure to write one is sent to `failed`, which ends the session.
    pub fn start(
        app: Arc<App>,
        who: Value,
        watch: Watch,
        failed: mpsc::Sender<String>,
    ) -> FileAudit {
        let (tx, rx) = mpsc::channel(QUEUE);
        let reads = watch.reads();
        tokio::spawn(observe(app, who, watch, rx, failed));
        FileAudit { tx, reads }
    }

    /// Bytes the client sent.
    pub async fn client(&self, data: &Bytes) {
        if self.reads.0 {
            let _ = self.tx.send(Item::Client(data.clone())).await;
        }
    }

    /// Bytes the server sent.
    pub async fn server(&self, data: &Bytes) {
        if self.reads.1 {
            let _ = self.tx.send(Item::Server(data.clone())).await;
        }
    }

    /// The channel ended: reports what is still open and waits until every event is
    /// written.
    pub async fn finish(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Finish(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn observe(
    app: Arc<App>,
    who: Value,
    mut watch: Watch,
    mut rx: mpsc::Receiver<Item>,
    failed: mpsc::Sender<String>,
) {
    let via = watch.via();
    let mut events = Vec::new();
    let mut broken = false;
    while let Some(item) = rx.recv().await {
        let done = match item {
            Item::Client(data) => {
                watch.client(&data, &mut events);
                None
            }
            Item::Server(data) => {
                watch.server(&data, &mut events);
                None
            }
            Item::Finish(done) => {
                watch.finish(&mut events);
                Some(done)
            }
        };
        for e in events.drain(..) {
            if broken {
                continue;
            }
            let mut fields = who.as_object().cloned().unwrap_or_default();
            fields.insert("via".into(), Value::String(via.into()));
            if let Some(more) = e.detail.as_object() {
                fields.extend(more.clone());
            }
            let event = AuditEvent::File(FileRecord {
                kind: e.kind,
                fields,
            });
            if let Err(err) = app.audit.event(event).await {
                broken = true;
                tracing::error!("file audit: {err:#}");
                let _ = failed
                    .send("the file audit cannot be written, so the session ends".into())
                    .await;
            } else if e.ends_session {
                broken = true;
                tracing::error!("file audit lost: {}", e.detail["reason"]);
                let _ = failed
                    .send("the file transfer can no longer be audited, so the session ends".into())
                    .await;
            }
        }
        if let Some(done) = done {
            let _ = done.send(());
            return;
        }
    }
}
