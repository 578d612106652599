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
    /// Signed checkpoints whose signatures held.
    pub checkpoints: u64,
}

/// Checks a checkpoint's signature against the key it names, which must be `expected`
/// when the state has a key.
fn check_checkpoint(
    event: &crate::audit::AuditEvent,
    prev: &str,
    expected: Option<&[u8; 32]>,
) -> std::result::Result<(), String> {
    let field = |k: &str| {
        event
            .data
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let unhex = |s: &str| -> Option<Vec<u8>> {
        s.len().is_multiple_of(2).then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
                .collect()
        })?
    };
    let key: [u8; 32] = unhex(&field("public_key"))
        .and_then(|k| k.try_into().ok())
        .ok_or("unreadable public key")?;
    if expected.is_some_and(|e| *e != key) {
        return Err("signed with a key that is not this gateway's audit key".into());
    }
    let sig: [u8; 64] = unhex(&field("signature"))
        .and_then(|k| k.try_into().ok())
        .ok_or("unreadable signature")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|e| e.to_string())?;
    let covers = event.seq - 1;
    key.verify_strict(
        &crate::audit::checkpoint_message(covers, prev),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| "signature does not match".to_string())
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
    // Recordings deleted by retention were sealed once; their absence is recorded.
    let deleted: std::collections::HashSet<String> = events
        .iter()
        .filter(|(_, e)| e.kind == "recording.deleted")
        .filter_map(|(_, e)| {
            e.data
                .get("session")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .collect();
    let mut report = Report::default();
    let mut prev = GENESIS.to_string();
    let expected_key = std::fs::read(audit_dir.join("audit_ed25519_key"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .map(|seed| {
            *ed25519_dalek::SigningKey::from_bytes(&seed)
                .verifying_key()
                .as_bytes()
        });
    for (i, (line, event)) in events.iter().enumerate() {
        let n = i as u64 + 1;
        if event.seq != n {
            return Ok(Err(format!("audit.jsonl line {n}: sequence {} where {n} was expected (an event is missing or out of place)", event.seq)));
        }
        if event.prev != prev {
            return Ok(Err(format!("audit.jsonl line {n} (seq {}): the previous event's hash does not match (an event was changed or removed)", event.seq)));
        }
        if event.kind == "audit.checkpoint" {
            if let Err(why) = check_checkpoint(event, &prev, expected_key.as_ref()) {
                return Ok(Err(format!("audit.jsonl line {n} (checkpoint): {why}")));
            }
            report.checkpoints += 1;
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
            if deleted.contains(id) {
                continue;
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
                files: 1,
                checkpoints: 0
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

    #[test]
    fn a_rewritten_chain_fails_at_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, recs) = (dir.path().join("audit"), dir.path().join("recordings"));
        let log = AuditLog::open(&audit).unwrap().signing().unwrap();
        for i in 0..60 {
            log.append("x", json!({"i": i})).unwrap();
        }
        assert_eq!(verify(&audit, &recs).unwrap().unwrap().checkpoints, 1);
        // Rewrite event 10 and re-chain everything after it, as someone without the key would.
        let text = std::fs::read_to_string(log.file()).unwrap();
        let mut prev = GENESIS.to_string();
        let mut out = String::new();
        for line in text.lines() {
            let mut e: crate::audit::AuditEvent = serde_json::from_str(line).unwrap();
            if e.seq == 10 {
                e.data.insert("i".into(), json!(999));
            }
            e.prev = prev.clone();
            let l = serde_json::to_string(&e).unwrap();
            prev = line_hash(&l);
            out.push_str(&l);
            out.push('\n');
        }
        std::fs::write(log.file(), out).unwrap();
        let err = verify(&audit, &recs).unwrap().unwrap_err();
        assert!(
            err.contains("checkpoint") && err.contains("signature"),
            "{err}"
        );
    }
}
