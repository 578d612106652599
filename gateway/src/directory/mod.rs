//! Who people are: the directory the gateway authenticates against. The users file is
//! the embedded default (and the break-glass directory); LDAP implements the same trait.

mod ldap;
mod users_file;

use async_trait::async_trait;
use russh::keys::PublicKey;

pub use ldap::LdapDirectory;
pub use users_file::UsersFile;

/// A person as the directory knows them.
#[derive(Debug, Clone)]
pub struct User {
    /// Their name.
    pub name: String,
    /// Numeric uid (used for their account inside containers).
    pub uid: u32,
    /// Numeric primary gid.
    pub gid: u32,
    /// Their groups.
    pub groups: Vec<String>,
    /// Their SSH public keys.
    pub keys: Vec<PublicKey>,
    /// Their login shell inside containers.
    pub shell: Option<String>,
    /// Their home directory inside containers (default `/home/NAME`).
    pub home: Option<String>,
}

impl User {
    /// Whether `key` is one of theirs (compared by key material, not comment).
    pub fn has_key(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|k| k.key_data() == key.key_data())
    }
}

/// Errors of a directory. Any of them refuses the login (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory could not be read or reached.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// A source of users.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Looks a user up; `Ok(None)` when there is no such user.
    async fn lookup(&self, name: &str) -> Result<Option<User>, DirectoryError>;
    /// Checks a password; false for unknown users and wrong passwords.
    async fn verify_password(&self, name: &str, password: &str) -> Result<bool, DirectoryError>;
    /// Whether the directory answers now (a cheap round trip).
    async fn health(&self) -> Result<(), DirectoryError> {
        Ok(())
    }
}
