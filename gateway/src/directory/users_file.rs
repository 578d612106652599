//! The users file (`[directory] kind = "file"`): TOML `[[user]]` entries with keys and
//! optional argon2 password hashes. Re-read when it changes on disk.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use async_trait::async_trait;
use gatehouse_runtime::names::is_user_name;
use russh::keys::PublicKey;
use serde::Deserialize;

use super::{Directory, DirectoryError, User};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    user: Vec<FileUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: String,
    uid: u32,
    gid: Option<u32>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    password_hash: Option<String>,
    shell: Option<String>,
    home: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    user: User,
    password_hash: Option<String>,
}

struct Loaded {
    modified: Option<SystemTime>,
    entries: Vec<Entry>,
}

/// The users-file directory.
pub struct UsersFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl UsersFile {
    /// Opens and checks the file; errors name the file and the problem.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let (modified, entries) = read(path)?;
        Ok(UsersFile {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded { modified, entries }),
        })
    }

    /// The current entries, re-reading the file if it changed. A file that became
    /// invalid is an error (fail closed), not a silent fallback.
    fn entries(&self) -> Result<Vec<Entry>, DirectoryError> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| DirectoryError::Unavailable("users file lock poisoned".into()))?;
        if mtime != loaded.modified {
            let (modified, entries) =
                read(&self.path).map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
            *loaded = Loaded { modified, entries };
        }
        Ok(loaded.entries.clone())
    }
}

fn read(path: &Path) -> anyhow::Result<(Option<SystemTime>, Vec<Entry>)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read users file {}: {e}", path.display()))?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let entries =
        parse(&text).map_err(|e| anyhow::anyhow!("users file {}: {e}", path.display()))?;
    Ok((modified, entries))
}

fn parse(text: &str) -> anyhow::Result<Vec<Entry>> {
    let file: FileFormat =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let mut out: Vec<Entry> = Vec::new();
    for u in file.user {
        if !is_user_name(&u.name) {
            anyhow::bail!(
                "invalid user name '{}'",
                gatehouse_runtime::names::shorten(&u.name)
            );
        }
        if out.iter().any(|e| e.user.name == u.name) {
            anyhow::bail!("user '{}' appears twice", u.name);
        }
        let mut keys = Vec::new();
        for (i, k) in u.keys.iter().enumerate() {
            let key = PublicKey::from_openssh(k.trim()).map_err(|e| {
                anyhow::anyhow!(
                    "user '{}': key {} is not an OpenSSH public key: {e}",
                    u.name,
                    i + 1
                )
            })?;
            keys.push(key);
        }
        if let Some(h) = &u.password_hash {
            PasswordHash::new(h).map_err(|e| {
                anyhow::anyhow!("user '{}': password_hash is not a PHC string: {e}", u.name)
            })?;
        }
        out.push(Entry {
            user: User {
                name: u.name,
                uid: u.uid,
                gid: u.gid.unwrap_or(u.uid),
                groups: u.groups,
                keys,
                shell: u.shell,
                home: u.home,
            },
            password_hash: u.password_hash,
        });
    }
    Ok(out)
}

#[async_trait]
impl Directory for UsersFile {
    async fn lookup(&self, name: &str) -> Result<Option<User>, DirectoryError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|e| e.user.name == name)
            .map(|e| e.user))
    }

    async fn verify_password(&self, name: &str, password: &str) -> Result<bool, DirectoryError> {
        let hash = self
            .entries()?
            .into_iter()
            .find(|e| e.user.name == name)
            .and_then(|e| e.password_hash);
        let Some(hash) = hash else { return Ok(false) };
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGc7MlXbB0j6GDBDxt0Tm4DMzV7LkU8ljwlTlmDYbKgi alice@laptop";

    #[tokio::test]
    async fn lookup_and_passwords() {
        let hash = Argon2::default()
            .hash_password(b"s3cret", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(
            &path,
            format!("[[user]]\nname = \"alice\"\nuid = 10001\ngroups = [\"devs\"]\nkeys = [\"{KEY}\"]\npassword_hash = \"{hash}\"\n"),
        )
        .unwrap();
        let users = UsersFile::open(&path).unwrap();
        let alice = users.lookup("alice").await.unwrap().unwrap();
        assert_eq!((alice.uid, alice.gid), (10001, 10001));
        assert!(alice.has_key(&PublicKey::from_openssh(KEY).unwrap()));
        assert!(users.lookup("bob").await.unwrap().is_none());
        assert!(users.verify_password("alice", "s3cret").await.unwrap());
        assert!(!users.verify_password("alice", "wrong").await.unwrap());
        assert!(!users.verify_password("bob", "s3cret").await.unwrap());
    }

    #[test]
    fn bad_files_are_rejected_with_the_reason() {
        for (text, needle) in [
            ("[[user]]\nname = \"Alice\"\nuid = 1\n", "invalid user name"),
            (
                "[[user]]\nname = \"a\"\nuid = 1\nkeys = [\"ssh-ed25519 nope\"]\n",
                "key 1",
            ),
            (
                "[[user]]\nname = \"a\"\nuid = 1\n[[user]]\nname = \"a\"\nuid = 2\n",
                "twice",
            ),
            (
                "[[user]]\nname = \"a\"\nuid = 1\npassword_hash = \"plain\"\n",
                "PHC",
            ),
            ("[[user]]\nname = \"a\"\nuid = 1\nemail = \"x\"\n", "email"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
