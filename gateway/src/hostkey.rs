//! Persistent Ed25519 keys in OpenSSH format: the gateway's host key (generated on
//! first start) and the demo's client key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

/// File name of the host key under the state directory.
pub const FILE: &str = "host_ed25519_key";

/// Loads the host key from `state_dir`, creating it (mode 0600) if missing.
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<PrivateKey> {
    load_or_create_at(&state_dir.join(FILE))
}

/// Loads an Ed25519 private key in OpenSSH format from `path`, creating it (mode 0600)
/// if missing.
pub fn load_or_create_at(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .map_err(|e| anyhow::anyhow!("cannot load key {}: {e}", path.display()));
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode key: {e}"))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write key {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    tracing::info!("generated key {}", path.display());
    Ok(key)
}

/// The host key a container presents to connections the gateway serves for it
/// (ProxyJump): derived from the gateway's own key and the container's name, so it is
/// stable across restarts, different per container, and needs no storage.
pub fn container_key(gateway: &PrivateKey, container: &str) -> anyhow::Result<PrivateKey> {
    use sha2::{Digest, Sha256};
    let pair = gateway
        .key_data()
        .ed25519()
        .ok_or_else(|| anyhow::anyhow!("the gateway host key is not Ed25519"))?;
    let mut h = Sha256::new();
    h.update(b"gatehouse container host key\0");
    h.update(pair.private.to_bytes());
    h.update(container.as_bytes());
    let seed: [u8; 32] = h.finalize().into();
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

/// A `known_hosts` line for `container`'s derived host key.
pub fn known_hosts_line(gateway: &PrivateKey, container: &str) -> anyhow::Result<String> {
    let public = container_key(gateway, container)?
        .public_key()
        .to_openssh()
        .map_err(|e| anyhow::anyhow!("cannot encode key: {e}"))?;
    Ok(format!("{container} {public}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create(dir.path()).unwrap();
        let b = super::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key().key_data(), b.public_key().key_data());
        let w1 = super::container_key(&a, "web01").unwrap();
        let w2 = super::container_key(&a, "web02").unwrap();
        assert_eq!(
            w1.public_key(),
            super::container_key(&b, "web01").unwrap().public_key()
        );
        assert_ne!(w1.public_key(), w2.public_key());
        assert!(super::known_hosts_line(&a, "web01")
            .unwrap()
            .starts_with("web01 ssh-ed25519 "));
    }
}
