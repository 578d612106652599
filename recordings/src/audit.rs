//! The audit log: `audit/audit.jsonl`, one JSON event per line, each with a sequence
//! number and the SHA-256 of the previous line, so that removing, reordering or editing
//! an event breaks the chain. Appends from several processes (the gateway and admin
//! commands) are serialised with a file lock; each event is written with one write and
//! synced before the call returns.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{RecordingError, Result};
use crate::store::hex;

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// When it was written.
    pub time: DateTime<Utc>,
    /// What happened (`auth.success`, `session.start`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// SHA-256 of the previous line (hex), [`GENESIS`] for the first.
    pub prev: String,
    /// The event's own fields.
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

/// A checkpoint is signed after this many events.
pub const CHECKPOINT_EVERY: u64 = 50;

/// The audit log of a state directory.
#[derive(Debug, Clone)]
pub struct AuditLog {
    dir: PathBuf,
    key: Option<ed25519_dalek::SigningKey>,
}

/// What a checkpoint signs: the sequence number and hash of the event before it.
pub fn checkpoint_message(seq: u64, prev: &str) -> Vec<u8> {
    format!("gatehouse-audit-checkpoint:{seq}:{prev}").into_bytes()
}

/// The public half of the audit signing key in `audit_dir`, if there is one.
pub fn public_key(audit_dir: &Path) -> Option<[u8; 32]> {
    std::fs::read(audit_dir.join("audit_ed25519_key"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .map(|seed| {
            *ed25519_dalek::SigningKey::from_bytes(&seed)
                .verifying_key()
                .as_bytes()
        })
}

/// Loads the audit signing key from `path`, creating it (mode 0600) if missing.
pub fn load_or_create_key(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(bytes) => {
            let seed: [u8; 32] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| RecordingError::Corrupt {
                        path: path.to_path_buf(),
                        reason: "an audit key is 32 bytes".into(),
                    })?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| RecordingError::io("cannot create", path, e))?;
            f.write_all(&seed)
                .and_then(|()| f.sync_all())
                .map_err(|e| RecordingError::io("cannot write", path, e))?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(RecordingError::io("cannot read", path, e)),
    }
}

/// SHA-256 of one line (without its newline), hex.
pub fn line_hash(line: &str) -> String {
    hex(&Sha256::digest(line.as_bytes()))
}

impl AuditLog {
    /// The log under `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        crate::private::dir(&dir).map_err(|e| RecordingError::io("cannot create", &dir, e))?;
        Ok(AuditLog { dir, key: None })
    }

    /// The same log, signing a checkpoint every [`CHECKPOINT_EVERY`] events with the key
    /// in `audit_ed25519_key` (created on first use).
    pub fn signing(mut self) -> Result<Self> {
        self.key = Some(load_or_create_key(&self.key_path())?);
        Ok(self)
    }

    /// Where the audit signing key lives.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("audit_ed25519_key")
    }

    /// The log file.
    pub fn file(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// Appends an event of type `kind` with the fields of `data` (an object).
    pub fn append(&self, kind: &str, data: Value) -> Result<u64> {
        let lock_path = self.dir.join("audit.lock");
        use std::os::unix::fs::OpenOptionsExt;
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(crate::private::FILE_MODE)
            .open(&lock_path)
            .map_err(|e| RecordingError::io("cannot open", &lock_path, e))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, e)| RecordingError::io("cannot lock", &lock_path, e.into()))?;
        let path = self.file();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(crate::private::FILE_MODE)
            .open(&path)
            .map_err(|e| RecordingError::io("cannot open", &path, e))?;
        let (seq, prev) = last_event(&mut file, &path)?;
        let (seq, prev) = match &self.key {
            Some(key) if seq > 0 && seq % CHECKPOINT_EVERY == 0 => {
                use ed25519_dalek::Signer;
                let signature = key.sign(&checkpoint_message(seq, &prev));
                let mut m = Map::new();
                m.insert("covers_seq".into(), Value::from(seq));
                m.insert(
                    "public_key".into(),
                    Value::String(hex(key.verifying_key().as_bytes())),
                );
                m.insert(
                    "signature".into(),
                    Value::String(hex(&signature.to_bytes())),
                );
                let cp = AuditEvent {
                    seq: seq + 1,
                    time: Utc::now(),
                    kind: "audit.checkpoint".into(),
                    prev,
                    data: m,
                };
                write_line(&mut file, &path, &cp)?
            }
            _ => (seq, prev),
        };
        let data = match data {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        let event = AuditEvent {
            seq: seq + 1,
            time: Utc::now(),
            kind: kind.to_string(),
            prev,
            data,
        };
        let mut line = serde_json::to_string(&event).map_err(|e| RecordingError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let hash = line_hash(&line);
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| RecordingError::io("cannot write audit event to", &path, e))?;
        if let Some(key) = &self.key {
            crate::head::write(&self.dir, key, event.seq, &hash)?;
        }
        Ok(event.seq)
    }

    /// Every event, in order, with its line (for verification).
    pub fn read_all(&self) -> Result<Vec<(String, AuditEvent)>> {
        let path = self.file();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(RecordingError::io("cannot open", &path, e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| RecordingError::io("cannot read", &path, e))?;
            let event = serde_json::from_str(&line).map_err(|e| RecordingError::Corrupt {
                path: path.clone(),
                reason: format!("line {}: {e}", i + 1),
            })?;
            out.push((line, event));
        }
        Ok(out)
    }
}

/// Writes one event as one synced line; returns its sequence number and line hash.
fn write_line(file: &mut File, path: &Path, event: &AuditEvent) -> Result<(u64, String)> {
    let line = serde_json::to_string(event).map_err(|e| RecordingError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    file.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| RecordingError::io("cannot write audit event to", path, e))?;
    Ok((event.seq, line_hash(&line)))
}

/// The sequence number and line hash of the last complete event. A torn last line (a
/// crash in the middle of a write) is cut off first, so the chain continues from the last
/// event that was written whole.
fn last_event(file: &mut File, path: &Path) -> Result<(u64, String)> {
    let io = |e| RecordingError::io("cannot read", path, e);
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    if len == 0 {
        return Ok((0, GENESIS.to_string()));
    }
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io)?;
    let complete = match tail.iter().rposition(|b| *b == b'\n') {
        Some(p) => p + 1,
        None => 0,
    };
    if complete < tail.len() {
        file.set_len(start + complete as u64)
            .map_err(|e| RecordingError::io("cannot repair", path, e))?;
        tail.truncate(complete);
    }
    let text = String::from_utf8_lossy(&tail);
    let Some(last) = text.lines().last() else {
        return Ok((0, GENESIS.to_string()));
    };
    let event: AuditEvent = serde_json::from_str(last).map_err(|e| RecordingError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("last event: {e}"),
    })?;
    Ok((event.seq, line_hash(last)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chained_appends_survive_a_torn_tail_and_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append("a", json!({"user": "alice"})).unwrap(), 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.file())
            .unwrap()
            .write_all(b"{\"seq\":2,\"ti")
            .unwrap();
        assert_eq!(log.append("b", json!({})).unwrap(), 2);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10 {
                        log.append("c", json!({})).unwrap();
                    }
                });
            }
        });
        let all = log.read_all().unwrap();
        assert_eq!(all.len(), 42);
        let mut prev = GENESIS.to_string();
        for (i, (line, e)) in all.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(e.prev, prev);
            prev = line_hash(line);
        }
        assert_eq!(all[0].1.data["user"], "alice");
    }

    #[test]
    fn checkpoints_are_signed_every_so_often() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap().signing().unwrap();
        for _ in 0..(CHECKPOINT_EVERY + 5) {
            log.append("x", json!({})).unwrap();
        }
        let all = log.read_all().unwrap();
        let cp = &all[CHECKPOINT_EVERY as usize].1;
        assert_eq!(cp.kind, "audit.checkpoint");
        assert_eq!(cp.data["covers_seq"], CHECKPOINT_EVERY);
        // The key persists with mode 0600.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(log.key_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let again = AuditLog::open(dir.path()).unwrap().signing().unwrap();
        assert_eq!(
            again.key.unwrap().verifying_key(),
            log.key.unwrap().verifying_key()
        );
    }
}
