//! `gatehouse audit verify`: the audit chain is unbroken, and every recording that a
//! session-end event sealed still has the digests it had then.

use std::path::Path;

use crate::audit::{line_hash, AuditLog, GENESIS};
use crate::error::Result;
use crate::store::file_digest;

/// What was checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Events in the chain.
    pub events: u64,
    /// Recording files whose digests matched.
    pub files: u64,
}

/// Checks the log in `audit_dir` and the recordings under `recordings_dir`. `Ok(Err(place))`
/// names the first broken event or file.
pub fn verify(
    audit_dir: &Path,
    recordings_dir: &Path,
) -> Result<std::result::Result<Report, String>> {
    let log = AuditLog::open(audit_dir)?;
    let events = match log.read_all() {
        Ok(e) => e,
        Err(e) => return Ok(Err(format!("audit log unreadable: {e}"))),
    };
    let mut report = Report::default();
    let mut prev = GENESIS.to_string();
    for (i, (line, event)) in events.iter().enumerate() {
        let n = i as u64 + 1;
        if event.seq != n {
            return Ok(Err(format!("audit.jsonl line {n}: sequence {} where {n} was expected (an event is missing or out of place)", event.seq)));
        }
        if event.prev != prev {
            return Ok(Err(format!("audit.jsonl line {n} (seq {}): the previous event's hash does not match (an event was changed or removed)", event.seq)));
        }
        prev = line_hash(line);
        report.events += 1;
        if event.kind == "session.end" {
            let Some(id) = event.data.get("session").and_then(|v| v.as_str()) else {
                continue;
            };
            let Some(files) = event.data.get("recording").and_then(|v| v.as_object()) else {
                continue;
            };
            if !crate::store::valid_id(id) {
                return Ok(Err(format!("audit.jsonl line {n}: invalid session id")));
            }
            for (name, digest) in files {
                if name.contains('/') || name.starts_with('.') {
                    return Ok(Err(format!(
                        "audit.jsonl line {n}: invalid file name {name}"
                    )));
                }
                let path = recordings_dir.join(id).join(name);
                match file_digest(&path) {
                    Ok(d) if Some(d.as_str()) == digest.as_str() => report.files += 1,
                    Ok(_) => return Ok(Err(format!("recordings/{id}/{name}: content differs from its sealed digest (audit seq {})", event.seq))),
                    Err(_) => return Ok(Err(format!("recordings/{id}/{name}: missing (sealed by audit seq {})", event.seq))),
                }
            }
        }
    }
    Ok(Ok(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_edits_deletions_and_changed_recordings() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, recs) = (dir.path().join("audit"), dir.path().join("recordings"));
        let log = AuditLog::open(&audit).unwrap();
        std::fs::create_dir_all(recs.join("s1")).unwrap();
        std::fs::write(recs.join("s1/channel-0.cast"), "data").unwrap();
        let d = file_digest(&recs.join("s1/channel-0.cast")).unwrap();
        log.append("auth.success", json!({"user": "alice"}))
            .unwrap();
        log.append(
            "session.end",
            json!({"session": "s1", "recording": {"channel-0.cast": d}}),
        )
        .unwrap();
        log.append("auth.failure", json!({"user": "bob"})).unwrap();
        assert_eq!(
            verify(&audit, &recs).unwrap(),
            Ok(Report {
                events: 3,
                files: 1
            })
        );

        std::fs::write(recs.join("s1/channel-0.cast"), "dat4").unwrap();
        assert!(verify(&audit, &recs)
            .unwrap()
            .unwrap_err()
            .contains("recordings/s1/channel-0.cast"));
        std::fs::write(recs.join("s1/channel-0.cast"), "data").unwrap();

        let text = std::fs::read_to_string(log.file()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(log.file(), format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(verify(&audit, &recs)
            .unwrap()
            .unwrap_err()
            .contains("line 2"));
        std::fs::write(log.file(), text.replace("alice", "mallory")).unwrap();
        assert!(verify(&audit, &recs)
            .unwrap()
            .unwrap_err()
            .contains("line 2"));
    }
}
