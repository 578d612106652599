//! `container console NAME`: a person attached to a container's console, from the host's
//! terminal (`cli/console.rs`) or over SSH (`+admin`, with the `container.console` right,
//! `admin/console.rs`). The console bypasses the container's own login, so it is
//! recorded and audited like a session: `session.start` (subsystem `console`), the
//! recording, `session.end` with the recording's digests. This module keeps those
//! records; the two front ends relay the bytes. Ctrl-] detaches, as in telnet and
//! `virsh console`.

use anyhow::Context;
use gatehouse_recordings::channel::{ChannelRecorder, Source};
use gatehouse_recordings::store::{Recordings, SessionMeta, SessionRecording};

use crate::audit::{Audit, AuditEvent};
use crate::config::RecordingConfig;

/// The key that detaches from a console (Ctrl-]).
pub const DETACH: u8 = 0x1d;

/// The login a console session is recorded under (there is no account behind it).
pub const LOGIN: &str = "console";

/// Who attaches, from where, and by which right.
pub struct Viewer {
    /// The person (or the host account).
    pub user: String,
    /// Where from (`local`, or the SSH client's address).
    pub peer: String,
    /// The right that lets them (for the audit).
    pub rights: String,
}

/// The records of one console attachment.
pub struct ConsoleSession {
    id: String,
    user: String,
    audit: Audit,
    recording: Option<(SessionRecording, ChannelRecorder)>,
    record_input: bool,
}

impl ConsoleSession {
    /// Opens the recording and writes `session.start`; fails (and nothing is attached)
    /// when either cannot be written and the configuration fails closed.
    pub async fn begin(
        audit: &Audit,
        recordings: &Recordings,
        config: &RecordingConfig,
        viewer: &Viewer,
        container: &str,
        size: (u16, u16),
    ) -> anyhow::Result<ConsoleSession> {
        let id = gatehouse_recordings::store::new_id();
        let recording = if config.enabled {
            match open(recordings, &id, viewer, container, size) {
                Ok(r) => Some(r),
                Err(e) if config.fail_closed => {
                    return Err(e.context("the console cannot be recorded, so it is refused"))
                }
                Err(e) => {
                    tracing::warn!(session = %id, "console unrecorded: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        let start = AuditEvent::SessionStart {
            session: &id,
            user: &viewer.user,
            peer: &viewer.peer,
            container,
            login: LOGIN,
            command: None,
            subsystem: Some("console"),
            pty: true,
            rule: &viewer.rights,
            reason: None,
        };
        if let Err(e) = audit.event(start).await {
            if config.fail_closed {
                return Err(e.context("the audit log cannot be written, so the console is refused"));
            }
            tracing::error!(session = %id, "audit: {e:#}");
        }
        Ok(ConsoleSession {
            id,
            user: viewer.user.clone(),
            audit: audit.clone(),
            recording,
            record_input: config.input,
        })
    }

    /// The session id (the recording's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records console output; an error ends the attachment (fail closed).
    pub fn output(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.recording {
            Some((_, ch)) => ch.data(Source::Stdout, data),
            None => Ok(()),
        }
    }

    /// Records what was typed (when keystrokes are recorded).
    pub fn input(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.recording {
            Some((_, ch)) if self.record_input => ch.data(Source::Stdin, data),
            _ => Ok(()),
        }
    }

    /// Takes what a read of the console gave: the bytes to show (recorded), or how the
    /// attachment ends.
    pub fn shown<'b>(
        &mut self,
        read: std::io::Result<usize>,
        buf: &'b [u8],
    ) -> Result<&'b [u8], String> {
        let n = match read {
            Ok(0) | Err(_) => return Err("the console ended (the container stopped)".into()),
            Ok(n) => n.min(buf.len()),
        };
        self.output(&buf[..n]).map_err(recording_failed)?;
        Ok(&buf[..n])
    }

    /// Passes what was typed to the console (recorded) up to the detach key; `Some`
    /// with how the attachment ends when it does.
    pub async fn type_into(
        &mut self,
        keys: &[u8],
        console: &mut gatehouse_runtime::api::ByteWriter,
    ) -> Option<String> {
        use tokio::io::AsyncWriteExt;
        let (pass, detach) = until_detach(keys);
        if let Err(e) = self.input(pass) {
            return Some(recording_failed(e));
        }
        if !pass.is_empty() && console.write_all(pass).await.is_err() {
            return Some("the console ended (the container stopped)".into());
        }
        detach.then(|| "detached".into())
    }

    /// Records a new window size.
    pub fn resize(&mut self, cols: u16, rows: u16) -> std::io::Result<()> {
        match &mut self.recording {
            Some((_, ch)) => ch.event(
                gatehouse_recordings::cast::EventKind::Resize,
                &format!("{cols}x{rows}"),
            ),
            None => Ok(()),
        }
    }

    /// Seals the recording and writes `session.end` saying how it ended.
    pub async fn end(self, how: &str) {
        let mut sealed = None;
        if let Some((mut rec, mut ch)) = self.recording {
            let _ = ch.sync();
            drop(ch);
            match rec.finish(how.to_string()) {
                Ok(digests) => {
                    sealed = Some(
                        digests
                            .into_iter()
                            .map(|(name, d)| (name, serde_json::Value::String(d)))
                            .collect(),
                    )
                }
                Err(e) => tracing::error!(session = %self.id, "cannot seal the recording: {e}"),
            }
        }
        let end = AuditEvent::SessionEnd {
            session: &self.id,
            user: &self.user,
            exit: how,
            recording: sealed,
        };
        self.audit.note(end).await;
    }
}

/// How an attachment ends when its recording cannot be written (fail closed).
fn recording_failed(e: std::io::Error) -> String {
    format!("the recording cannot be written ({e}); detached")
}

/// Creates the console's recording.
fn open(
    recordings: &Recordings,
    id: &str,
    viewer: &Viewer,
    container: &str,
    size: (u16, u16),
) -> anyhow::Result<(SessionRecording, ChannelRecorder)> {
    let meta = SessionMeta {
        id: id.to_string(),
        user: viewer.user.clone(),
        peer: viewer.peer.clone(),
        container: container.to_string(),
        login: LOGIN.to_string(),
        reason: None,
        start: chrono::Utc::now(),
        end: None,
        exit: None,
        channels: vec![],
    };
    let mut rec = recordings
        .start(meta)
        .context("cannot start the recording")?;
    let channel = rec
        .channel(0, Some("console"), true, size)
        .context("cannot open the recording")?;
    Ok((rec, channel))
}

/// Why a console cannot be attached where no terminal is (the admin socket).
pub fn needs_terminal(name: &str) -> String {
    format!(
        "the console of '{name}' needs a terminal: run `gatehouse container console {name}` on the gateway host, or `ssh -t USER@+admin@GATEWAY container console {name}`"
    )
}

/// Splits what was typed at the detach key: the bytes before it, and whether it came.
pub fn until_detach(typed: &[u8]) -> (&[u8], bool) {
    match typed.iter().position(|b| *b == DETACH) {
        Some(i) => (&typed[..i], true),
        None => (typed, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_key_ends_what_is_passed_on() {
        assert_eq!(until_detach(b"root\n"), (&b"root\n"[..], false));
        assert_eq!(until_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(until_detach(b"\x1d"), (&b""[..], true));
    }
}
