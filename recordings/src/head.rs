//! The audit log's signed head (`audit/head.json`): after every append the gateway signs
//! the sequence number and hash of the last event, so that cutting events off the end of
//! the log — which leaves an unbroken chain — is noticed by `audit verify`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{RecordingError, Result};
use crate::store::hex;

/// The head file's name in the audit directory.
pub const HEAD_FILE: &str = "head.json";

/// The last event as the signer saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its line's SHA-256 (hex).
    pub hash: String,
    /// The signer's public key (hex).
    pub public_key: String,
    /// Ed25519 signature of [`message`] (hex).
    pub signature: String,
}

/// What a head signs.
pub fn message(seq: u64, hash: &str) -> Vec<u8> {
    format!("gatehouse-audit-head:{seq}:{hash}").into_bytes()
}

/// Signs and writes the head for event `seq` with line hash `hash` (through a temporary
/// file and a rename, so a reader sees an old head or the new one).
pub fn write(dir: &Path, key: &ed25519_dalek::SigningKey, seq: u64, hash: &str) -> Result<()> {
    use ed25519_dalek::Signer;
    let head = Head {
        seq,
        hash: hash.to_string(),
        public_key: hex(key.verifying_key().as_bytes()),
        signature: hex(&key.sign(&message(seq, hash)).to_bytes()),
    };
    let path = dir.join(HEAD_FILE);
    let json = serde_json::to_vec(&head).unwrap_or_default();
    crate::private::write_replacing(&path, &json)
        .map_err(|e| RecordingError::io("cannot write", &path, e))
}

/// Reads the head, if there is one.
pub fn read(dir: &Path) -> std::result::Result<Option<Head>, String> {
    match std::fs::read(dir.join(HEAD_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{HEAD_FILE} is unreadable: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {HEAD_FILE}: {e}")),
    }
}

/// Bytes from hex, if it is hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Checks that `public_key` (hex) is `trusted` and that `signature` (hex) signs
/// `message` with it: for the head and for the log's checkpoints alike.
pub fn check_signature(
    public_key: &str,
    signature: &str,
    message: &[u8],
    trusted: &[u8; 32],
) -> std::result::Result<(), String> {
    if unhex(public_key).as_deref() != Some(trusted.as_slice()) {
        return Err("signed with a key that is not the trusted one".into());
    }
    let sig: [u8; 64] = unhex(signature)
        .and_then(|s| s.try_into().ok())
        .ok_or("unreadable signature")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(trusted).map_err(|e| e.to_string())?;
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "the signature does not match".to_string())
}

/// Checks `head`'s signature with `trusted`.
pub fn check(head: &Head, trusted: &[u8; 32]) -> std::result::Result<(), String> {
    check_signature(
        &head.public_key,
        &head.signature,
        &message(head.seq, &head.hash),
        trusted,
    )
    .map_err(|e| format!("{HEAD_FILE}: {e}"))
}

/// A public key's fingerprint as people compare them: `SHA256:` and the hex digest.
pub fn fingerprint(key: &[u8; 32]) -> String {
    use sha2::Digest;
    format!("SHA256:{}", hex(&sha2::Sha256::digest(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_head_checks_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        write(dir.path(), &key, 12, "ab").unwrap();
        let head = read(dir.path()).unwrap().unwrap();
        assert_eq!((head.seq, head.hash.as_str()), (12, "ab"));
        let trusted = *key.verifying_key().as_bytes();
        assert_eq!(check(&head, &trusted), Ok(()));
        let other = *ed25519_dalek::SigningKey::from_bytes(&[8; 32])
            .verifying_key()
            .as_bytes();
        assert!(check(&head, &other).is_err());
        let mut forged = head.clone();
        forged.seq = 11;
        assert!(check(&forged, &trusted).is_err());
        assert_eq!(unhex("0aff"), Some(vec![10, 255]));
        assert_eq!(unhex("0g"), None);
        assert!(fingerprint(&trusted).starts_with("SHA256:"));
    }
}
