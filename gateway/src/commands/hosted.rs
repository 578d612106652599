//! Sessions the gateway opens in a container on someone's behalf rather than over
//! SSH: a console attachment (`commands/console.rs`), a patch run (`commands/patch`).
//! They bypass the container's own login, so they are recorded and audited like any
//! session: `session.start`, the recording (with the reason given, if any),
//! `session.end` with the recording's digests. Recording or audit not writable: the
//! session is refused when the configuration fails closed.

use anyhow::Context;
use gatehouse_recordings::channel::{ChannelRecorder, Source};
use gatehouse_recordings::store::{Recordings, SessionMeta, SessionRecording};

use crate::audit::{Audit, AuditEvent};
use crate::config::RecordingConfig;

/// Who opens the session, from where, and by which right.
pub struct Viewer {
    /// The person (or the host account).
    pub user: String,
    /// Where from (`local`, or the SSH client's address).
    pub peer: String,
    /// The right that lets them (for the audit).
    pub rights: String,
}

/// What a hosted session is.
pub struct Opening<'a> {
    /// Who.
    pub viewer: &'a Viewer,
    /// In which container.
    pub container: &'a str,
    /// As which login (`console` for the console).
    pub login: &'a str,
    /// The subsystem named in `session.start` (`console`, `patch`).
    pub subsystem: &'a str,
    /// The command run, if one is.
    pub command: Option<&'a str>,
    /// The change reference given.
    pub reason: Option<&'a str>,
    /// Whether it is a terminal (output and input as one stream).
    pub pty: bool,
    /// Its size.
    pub size: (u16, u16),
}

/// The records of one hosted session.
pub struct HostedSession {
    id: String,
    user: String,
    audit: Audit,
    recording: Option<(SessionRecording, ChannelRecorder)>,
    record_input: bool,
}

impl HostedSession {
    /// Opens the recording and writes `session.start`; fails (and nothing is started)
    /// when either cannot be written and the configuration fails closed.
    pub async fn begin(
        audit: &Audit,
        recordings: &Recordings,
        config: &RecordingConfig,
        o: &Opening<'_>,
    ) -> anyhow::Result<HostedSession> {
        let id = gatehouse_recordings::store::new_id();
        let recording = if config.enabled {
            match open(recordings, &id, o) {
                Ok(r) => Some(r),
                Err(e) if config.fail_closed => {
                    return Err(e.context("the session cannot be recorded, so it is refused"))
                }
                Err(e) => {
                    tracing::warn!(session = %id, "{} unrecorded: {e:#}", o.subsystem);
                    None
                }
            }
        } else {
            None
        };
        let start = AuditEvent::SessionStart {
            session: &id,
            user: &o.viewer.user,
            peer: &o.viewer.peer,
            container: o.container,
            login: o.login,
            command: o.command,
            subsystem: Some(o.subsystem),
            pty: o.pty,
            rule: &o.viewer.rights,
            reason: o.reason,
        };
        if let Err(e) = audit.event(start).await {
            if config.fail_closed {
                return Err(e.context("the audit log cannot be written, so the session is refused"));
            }
            tracing::error!(session = %id, "audit: {e:#}");
        }
        Ok(HostedSession {
            id,
            user: o.viewer.user.clone(),
            audit: audit.clone(),
            recording,
            record_input: config.input,
        })
    }

    /// The session id (the recording's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records output (stdout, or stderr of a session without a terminal).
    pub fn output(&mut self, source: Source, data: &[u8]) -> std::io::Result<()> {
        match &mut self.recording {
            Some((_, ch)) => ch.data(source, data),
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

/// Creates the session's recording with its one channel.
fn open(
    recordings: &Recordings,
    id: &str,
    o: &Opening<'_>,
) -> anyhow::Result<(SessionRecording, ChannelRecorder)> {
    let meta = SessionMeta {
        id: id.to_string(),
        user: o.viewer.user.clone(),
        peer: o.viewer.peer.clone(),
        container: o.container.to_string(),
        login: o.login.to_string(),
        reason: o.reason.map(str::to_string),
        start: chrono::Utc::now(),
        end: None,
        exit: None,
        channels: vec![],
    };
    let mut rec = recordings
        .start(meta)
        .context("cannot start the recording")?;
    let channel = rec
        .channel(0, Some(o.command.unwrap_or(o.subsystem)), o.pty, o.size)
        .context("cannot open the recording")?;
    Ok((rec, channel))
}
