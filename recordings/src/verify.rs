//! `gatehouse audit verify`: the audit chain is unbroken, and every recording that a
//! session-end event sealed still has the digests it had then.

use std::collections::HashSet;
use std::path::Path;

use crate::audit::{line_hash, AuditEvent, AuditLog, GENESIS};
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
    /// The fingerprint of the key the signatures were checked with.
    pub key_fingerprint: String,
    /// The event the signed head names.
    pub head: u64,
    /// Events after the signed head (a crash between writing an event and its head).
    pub past_head: u64,
}

/// Checks a checkpoint's signature: made with `trusted`, over the event before it.
fn check_checkpoint(
    event: &crate::audit::AuditEvent,
    prev: &str,
    trusted: &[u8; 32],
) -> std::result::Result<(), String> {
    let field = |k: &str| {
        event
            .data
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    crate::head::check_signature(
        field("public_key"),
        field("signature"),
        &crate::audit::checkpoint_message(event.seq - 1, prev),
        trusted,
    )
}

/// The public key the signatures are checked with: `trusted` (kept away from the state
/// directory), else the one of the signing key in `audit_dir`.
fn trusted_key(audit_dir: &Path, trusted: Option<[u8; 32]>) -> Option<[u8; 32]> {
    trusted.or_else(|| crate::audit::public_key(audit_dir))
}

/// Checks the log in `audit_dir` and the recordings under `recordings_dir`, the
/// signatures with `trusted` (or the state's own key). `Ok(Err(place))` names the first
/// broken event or file. Without a key to trust, nothing is taken on the log's word.
pub fn verify(
    audit_dir: &Path,
    recordings_dir: &Path,
    trusted: Option<[u8; 32]>,
) -> Result<std::result::Result<Report, String>> {
    let Some(key) = trusted_key(audit_dir, trusted) else {
        return Ok(Err(
            "no key to check the signatures with: the audit key is missing; give --public-key (the key `gatehouse audit key` printed)".into(),
        ));
    };
    // The head first: it is written after its event, so the log read next reaches it
    // even while the gateway appends.
    let head = crate::head::read(audit_dir);
    let log = AuditLog::open(audit_dir)?;
    let events = match log.read_all() {
        Ok(e) => e,
        Err(e) => return Ok(Err(format!("audit log unreadable: {e}"))),
    };
    let deleted = deleted_sessions(&events);
    let mut report = Report {
        key_fingerprint: crate::head::fingerprint(&key),
        ..Report::default()
    };
    let mut prev = GENESIS.to_string();
    for (i, (line, event)) in events.iter().enumerate() {
        let n = i as u64 + 1;
        if event.seq != n {
            return Ok(Err(format!("audit.jsonl line {n}: sequence {} where {n} was expected (an event is missing or out of place)", event.seq)));
        }
        if event.prev != prev {
            return Ok(Err(format!("audit.jsonl line {n} (seq {}): the previous event's hash does not match (an event was changed or removed)", event.seq)));
        }
        if event.kind == "audit.checkpoint" {
            if let Err(why) = check_checkpoint(event, &prev, &key) {
                return Ok(Err(format!("audit.jsonl line {n} (checkpoint): {why}")));
            }
            report.checkpoints += 1;
        }
        prev = line_hash(line);
        report.events += 1;
        if event.kind == "session.end" {
            if let Err(why) = check_sealed(event, n, recordings_dir, &deleted, &mut report) {
                return Ok(Err(why));
            }
        }
    }
    if let Err(why) = head.and_then(|h| check_head(h, &key, &events, &mut report)) {
        return Ok(Err(why));
    }
    Ok(Ok(report))
}

/// The sessions whose recordings retention deleted: they were sealed once, and their
/// absence is recorded.
fn deleted_sessions(events: &[(String, AuditEvent)]) -> HashSet<String> {
    events
        .iter()
        .filter(|(_, e)| e.kind == "recording.deleted")
        .filter_map(|(_, e)| {
            e.data
                .get("session")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .collect()
}

/// Checks the files a `session.end` event (line `n`) sealed against their digests.
fn check_sealed(
    event: &AuditEvent,
    n: u64,
    recordings_dir: &Path,
    deleted: &HashSet<String>,
    report: &mut Report,
) -> std::result::Result<(), String> {
    let Some(id) = event.data.get("session").and_then(|v| v.as_str()) else {
        return Ok(());
    };
    let Some(files) = event.data.get("recording").and_then(|v| v.as_object()) else {
        return Ok(());
    };
    if !crate::store::valid_id(id) {
        return Err(format!("audit.jsonl line {n}: invalid session id"));
    }
    if deleted.contains(id) {
        return Ok(());
    }
    for (name, digest) in files {
        if name.contains('/') || name.starts_with('.') {
            return Err(format!("audit.jsonl line {n}: invalid file name {name}"));
        }
        let path = recordings_dir.join(id).join(name);
        match file_digest(&path) {
            Ok(d) if Some(d.as_str()) == digest.as_str() => report.files += 1,
            Ok(_) => {
                return Err(format!(
                    "recordings/{id}/{name}: content differs from its sealed digest (audit seq {})",
                    event.seq
                ))
            }
            Err(_) => {
                return Err(format!(
                    "recordings/{id}/{name}: missing (sealed by audit seq {})",
                    event.seq
                ))
            }
        }
    }
    Ok(())
}

/// The log must reach the event its signed head names, with that event's hash: a log cut
/// short (its last events removed) leaves an unbroken chain but not that.
fn check_head(
    head: Option<crate::head::Head>,
    key: &[u8; 32],
    events: &[(String, crate::audit::AuditEvent)],
    report: &mut Report,
) -> std::result::Result<(), String> {
    let Some(head) = head else {
        return if events.is_empty() {
            Ok(())
        } else {
            Err("no signed head (head.json): the end of the log cannot be checked".into())
        };
    };
    crate::head::check(&head, key)?;
    let Some(at) = usize::try_from(head.seq)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| events.get(i))
    else {
        return Err(format!(
            "the log ends at event {} but its signed head names event {}: events were removed from its end",
            events.len(),
            head.seq
        ));
    };
    if line_hash(&at.0) != head.hash {
        return Err(format!(
            "event {} is not the one the signed head names",
            head.seq
        ));
    }
    report.head = head.seq;
    report.past_head = events.len() as u64 - head.seq;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_edits_deletions_and_changed_recordings() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, recs) = (dir.path().join("audit"), dir.path().join("recordings"));
        let log = AuditLog::open(&audit).unwrap().signing().unwrap();
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
        let report = verify(&audit, &recs, None).unwrap().unwrap();
        assert_eq!(
            (report.events, report.files, report.checkpoints, report.head),
            (3, 1, 0, 3)
        );

        std::fs::write(recs.join("s1/channel-0.cast"), "dat4").unwrap();
        assert!(verify(&audit, &recs, None)
            .unwrap()
            .unwrap_err()
            .contains("recordings/s1/channel-0.cast"));
        std::fs::write(recs.join("s1/channel-0.cast"), "data").unwrap();

        let text = std::fs::read_to_string(log.file()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(log.file(), format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(verify(&audit, &recs, None)
            .unwrap()
            .unwrap_err()
            .contains("line 2"));
        std::fs::write(log.file(), text.replace("alice", "mallory")).unwrap();
        assert!(verify(&audit, &recs, None)
            .unwrap()
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn a_log_cut_short_or_without_a_trusted_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, recs) = (dir.path().join("audit"), dir.path().join("recordings"));
        let log = AuditLog::open(&audit).unwrap().signing().unwrap();
        for i in 0..5 {
            log.append("x", json!({"i": i})).unwrap();
        }
        let key_file = audit.join("audit_ed25519_key");
        let seed: [u8; 32] = std::fs::read(&key_file).unwrap().try_into().unwrap();
        let public = *ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .as_bytes();
        // The last two events removed: the chain is whole, the head says otherwise.
        let text = std::fs::read_to_string(log.file()).unwrap();
        let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        std::fs::write(log.file(), &kept).unwrap();
        let err = verify(&audit, &recs, None).unwrap().unwrap_err();
        assert!(err.contains("removed from its end"), "{err}");
        std::fs::write(log.file(), &text).unwrap();
        // Without the key file, the log's own word is not taken; a key kept elsewhere is.
        std::fs::remove_file(&key_file).unwrap();
        let err = verify(&audit, &recs, None).unwrap().unwrap_err();
        assert!(err.contains("--public-key"), "{err}");
        let report = verify(&audit, &recs, Some(public)).unwrap().unwrap();
        assert_eq!(report.head, 5);
        assert_eq!(report.key_fingerprint, crate::head::fingerprint(&public));
        let other = *ed25519_dalek::SigningKey::from_bytes(&[1; 32])
            .verifying_key()
            .as_bytes();
        assert!(verify(&audit, &recs, Some(other)).unwrap().is_err());
    }

    #[test]
    fn a_rewritten_chain_fails_at_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, recs) = (dir.path().join("audit"), dir.path().join("recordings"));
        let log = AuditLog::open(&audit).unwrap().signing().unwrap();
        for i in 0..60 {
            log.append("x", json!({"i": i})).unwrap();
        }
        assert_eq!(verify(&audit, &recs, None).unwrap().unwrap().checkpoints, 1);
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
        let err = verify(&audit, &recs, None).unwrap().unwrap_err();
        assert!(
            err.contains("checkpoint") && err.contains("signature"),
            "{err}"
        );
    }
}
