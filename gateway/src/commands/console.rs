//! `container console NAME`: a person attached to a container's console, from the host's
//! terminal (`cli/console.rs`) or over SSH (`+admin`, with the `container.console` right,
//! `admin/console.rs`). The console bypasses the container's own login, so it is
//! recorded and audited like a session: `session.start` (subsystem `console`), the
//! recording, `session.end` with the recording's digests. This module keeps those
//! records; the two front ends relay the bytes. Ctrl-] detaches, as in telnet and
//! `virsh console`.

use gatehouse_recordings::channel::Source;
use gatehouse_recordings::store::Recordings;

pub use super::hosted::Viewer;
use super::hosted::{HostedSession, Opening};
use crate::audit::Audit;
use crate::config::RecordingConfig;

/// The key that detaches from a console (Ctrl-]).
pub const DETACH: u8 = 0x1d;

/// The login a console session is recorded under (there is no account behind it).
pub const LOGIN: &str = "console";

/// The records of one console attachment.
pub struct ConsoleSession {
    session: HostedSession,
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
        let opening = Opening {
            viewer,
            container,
            login: LOGIN,
            subsystem: "console",
            command: None,
            reason: None,
            pty: true,
            size,
        };
        let session = HostedSession::begin(audit, recordings, config, &opening).await?;
        Ok(ConsoleSession { session })
    }

    /// The session id (the recording's name).
    pub fn id(&self) -> &str {
        self.session.id()
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
        self.session
            .output(Source::Stdout, &buf[..n])
            .map_err(recording_failed)?;
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
        if let Err(e) = self.session.input(pass) {
            return Some(recording_failed(e));
        }
        if !pass.is_empty() && console.write_all(pass).await.is_err() {
            return Some("the console ended (the container stopped)".into());
        }
        detach.then(|| "detached".into())
    }

    /// Records a new window size.
    pub fn resize(&mut self, cols: u16, rows: u16) -> std::io::Result<()> {
        self.session.resize(cols, rows)
    }

    /// Seals the recording and writes `session.end` saying how it ended.
    pub async fn end(self, how: &str) {
        self.session.end(how).await
    }
}

/// How an attachment ends when its recording cannot be written (fail closed).
fn recording_failed(e: std::io::Error) -> String {
    format!("the recording cannot be written ({e}); detached")
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
