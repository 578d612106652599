//! The recordings directory: `recordings/<session-id>/` with `session.json` and one
//! asciicast file per channel.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cast::{CastWriter, Header};
use crate::channel::ChannelRecorder;
use crate::error::{RecordingError, Result};

/// What `session.json` says about a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionMeta {
    /// The session id (also its directory's name).
    pub id: String,
    /// Who.
    pub user: String,
    /// From where.
    pub peer: String,
    /// Which container.
    pub container: String,
    /// As which login.
    pub login: String,
    /// The change reference given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started.
    pub start: DateTime<Utc>,
    /// When it ended (absent while running, or after a crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// How it ended: `code N`, `signal NAME`, or `closed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// Its channels.
    #[serde(default)]
    pub channels: Vec<ChannelMeta>,
}

/// One recorded channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelMeta {
    /// The asciicast file (stdout and stderr as output, stdin/keys as input).
    pub file: String,
    /// `shell` or `exec`.
    pub kind: String,
    /// The command of an exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Whether it had a terminal.
    pub pty: bool,
    /// stderr alone, for an exec without a terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_file: Option<String>,
}

/// The recordings directory.
#[derive(Debug, Clone)]
pub struct Recordings {
    dir: PathBuf,
}

/// Checks a session id before it becomes a path.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A new session id: UTC time and randomness (sortable by time).
pub fn new_id() -> String {
    let r: u32 = rand::random();
    format!("{}-{r:08x}", Utc::now().format("%Y%m%dT%H%M%S%3fZ"))
}

/// SHA-256 of a file, hex.
pub fn file_digest(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| RecordingError::io("cannot open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| RecordingError::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Recordings {
    /// The recordings under `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        crate::private::dir(&dir).map_err(|e| RecordingError::io("cannot create", &dir, e))?;
        Ok(Recordings { dir })
    }

    /// The directory of session `id`.
    pub fn path(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(RecordingError::NoSuchSession(id.chars().take(64).collect()));
        }
        let p = self.dir.join(id);
        if p.join("session.json").exists() {
            Ok(p)
        } else {
            Err(RecordingError::NoSuchSession(id.to_string()))
        }
    }

    /// Starts a session's recording: its directory and `session.json`.
    pub fn start(&self, meta: SessionMeta) -> Result<SessionRecording> {
        let path = self.dir.join(&meta.id);
        crate::private::new_dir(&path)
            .map_err(|e| RecordingError::io("cannot create recording", &path, e))?;
        let rec = SessionRecording { path, meta };
        rec.write_meta()?;
        Ok(rec)
    }

    /// Every session's metadata, oldest first; unreadable ones are skipped.
    pub fn list(&self) -> Result<Vec<SessionMeta>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| RecordingError::io("cannot list", &self.dir, e))?;
        let mut out: Vec<SessionMeta> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(valid_id))
            .filter_map(|e| read_meta(&e.path()).ok())
            .collect();
        out.sort_by(|a, b| a.start.cmp(&b.start).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Deletes a session's recording (retention).
    pub fn remove(&self, id: &str) -> Result<()> {
        let p = self.path(id)?;
        std::fs::remove_dir_all(&p).map_err(|e| RecordingError::io("cannot delete", &p, e))
    }

    /// One session's metadata and directory.
    pub fn get(&self, id: &str) -> Result<(SessionMeta, PathBuf)> {
        let p = self.path(id)?;
        Ok((read_meta(&p)?, p))
    }
}

fn read_meta(dir: &Path) -> Result<SessionMeta> {
    let p = dir.join("session.json");
    let text = std::fs::read_to_string(&p).map_err(|e| RecordingError::io("cannot read", &p, e))?;
    serde_json::from_str(&text).map_err(|e| RecordingError::Corrupt {
        path: p,
        reason: e.to_string(),
    })
}

/// A session being recorded.
pub struct SessionRecording {
    path: PathBuf,
    meta: SessionMeta,
}

impl SessionRecording {
    /// The session's id.
    pub fn id(&self) -> &str {
        &self.meta.id
    }

    /// The session's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_meta(&self) -> Result<()> {
        let p = self.path.join("session.json");
        let json = serde_json::to_vec_pretty(&self.meta).unwrap_or_default();
        crate::private::write_replacing(&p, &json)
            .map_err(|e| RecordingError::io("cannot write", &p, e))
    }

    /// Opens the recording of channel `n`: the main cast file, and for an exec without a
    /// terminal a second one with stderr alone (and raw files for binary streams, see
    /// [`ChannelRecorder`]).
    pub fn channel(
        &mut self,
        n: u32,
        command: Option<&str>,
        pty: bool,
        size: (u16, u16),
    ) -> Result<ChannelRecorder> {
        let header = Header {
            version: 2,
            width: size.0.max(1),
            height: size.1.max(1),
            timestamp: self.meta.start.timestamp(),
            command: command.map(str::to_owned),
            title: Some(format!("{}@{}", self.meta.login, self.meta.container)),
        };
        let file = format!("channel-{n}.cast");
        let main = CastWriter::create(&self.path.join(&file), &header)?;
        let (recorder, stderr_file) = if pty {
            (ChannelRecorder::terminal(main), None)
        } else {
            let f = format!("channel-{n}.stderr.cast");
            let stderr = CastWriter::create(&self.path.join(&f), &header)?;
            let prefix = format!("channel-{n}");
            (
                ChannelRecorder::streams(main, stderr, &self.path, &prefix),
                Some(f),
            )
        };
        self.meta.channels.push(ChannelMeta {
            file,
            kind: if command.is_some() {
                "exec".into()
            } else {
                "shell".into()
            },
            command: command.map(str::to_owned),
            pty,
            stderr_file,
        });
        self.write_meta()?;
        Ok(recorder)
    }

    /// Ends the recording; returns the SHA-256 of every file of the session.
    pub fn finish(&mut self, exit: String) -> Result<Vec<(String, String)>> {
        self.meta.end = Some(Utc::now());
        self.meta.exit = Some(exit);
        self.write_meta()?;
        digests(&self.path)
    }
}

/// `(file name, sha256)` of every file in a session directory, sorted.
pub fn digests(dir: &Path) -> Result<Vec<(String, String)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| RecordingError::io("cannot list", dir, e))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        out.push((name, file_digest(&e.path())?));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Source;

    fn meta(id: &str) -> SessionMeta {
        SessionMeta {
            id: id.into(),
            user: "alice".into(),
            peer: "127.0.0.1:1".into(),
            container: "web01".into(),
            login: "alice".into(),
            reason: None,
            start: Utc::now(),
            end: None,
            exit: None,
            channels: vec![],
        }
    }

    #[test]
    fn record_list_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let recs = Recordings::open(dir.path()).unwrap();
        let id = new_id();
        assert!(valid_id(&id));
        let mut r = recs.start(meta(&id)).unwrap();
        let mut ch = r.channel(0, Some("echo hi"), false, (80, 24)).unwrap();
        ch.data(Source::Stdout, b"hi\n").unwrap();
        ch.data(Source::Stdin, b"\0").unwrap();
        let digests = r.finish("code 0".into()).unwrap();
        let names: Vec<&str> = digests.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "channel-0.cast",
                "channel-0.stderr.cast",
                "channel-0.stdin.bin",
                "session.json"
            ]
        );
        let listed = recs.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].exit.as_deref(), Some("code 0"));
        assert_eq!(listed[0].channels[0].command.as_deref(), Some("echo hi"));
        assert!(recs.get("../etc").is_err());
        assert!(recs.get("nope").is_err());
    }
}
