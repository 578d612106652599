//! What the gateway does inside an instance as root: waiting for its boot, making a
//! person's account ready, and looking a login up — each remembered for the instance's
//! current boot (see [`super::boot_cache`]).

use super::{exec, LxdRuntime, ROOT_PATH};
use crate::api::{Account, ExitStatus};
use crate::error::{Result, RuntimeError};

/// A login inside an instance, as `getent passwd` tells it.
#[derive(Debug, Clone)]
pub(super) struct Login {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) home: String,
    pub(super) shell: String,
}

/// Waits (up to 10 s) until an init system that has one (systemd) reports the boot
/// finished, so a session finds the system up (its services started), as after a VM's
/// boot.
const SETTLE: &str = "command -v systemctl >/dev/null 2>&1 || exit 0; i=0; while [ $i -lt 200 ]; do \
    s=$(systemctl is-system-running --wait 2>/dev/null); \
    case \"$s\" in running|degraded|maintenance|stopping) exit 0;; esac; i=$((i+1)); sleep 0.05; done; \
    echo \"systemd still says: $s\"; exit 1";

impl LxdRuntime {
    /// Runs `argv` as root to the end; its status and output.
    pub(super) async fn run_as_root(
        &self,
        name: &str,
        argv: Vec<String>,
    ) -> Result<(ExitStatus, String)> {
        let req = exec::ExecRequest {
            command: argv,
            env: vec![("PATH".into(), ROOT_PATH.into())],
            pty: None,
            user: (0, 0),
            cwd: "/root".into(),
        };
        exec::exec(&self.client, name, req).await?.finish().await
    }

    /// Names the running boot of instance `name` (see [`super::boot_cache`]).
    async fn boot(&self, name: &str) -> Result<String> {
        let i = self.instance_json(name).await?;
        Ok(format!(
            "{}|{}",
            i["created_at"].as_str().unwrap_or_default(),
            i["last_used_at"].as_str().unwrap_or_default()
        ))
    }

    /// `login`'s ids, home and shell in instance `name`, looked up once per boot (a miss
    /// is not kept).
    pub(super) async fn login(&self, name: &str, login: &str) -> Result<Login> {
        let boot = self.boot(name).await?;
        if let Some(l) = self.logins.get(name, &boot, login) {
            return Ok(l);
        }
        let (status, out) = self
            .run_as_root(name, vec!["getent".into(), "passwd".into(), login.into()])
            .await?;
        let l = parse_passwd_line(status, &out, login).ok_or_else(|| {
            tracing::warn!(container = name, login, ?status, output = %out.trim(), "account lookup failed");
            RuntimeError::Invalid(format!("no account '{login}' in container '{name}'"))
        })?;
        self.logins.insert(name, &boot, login, l.clone());
        Ok(l)
    }

    /// Creates (or updates) `account` in instance `name`, once per boot.
    pub(super) async fn prepare_account(&self, name: &str, account: &Account) -> Result<()> {
        let key = format!("{account:?}");
        let boot = self.boot(name).await?;
        if self.prepared.get(name, &boot, &key).is_some() {
            return Ok(());
        }
        let script = crate::accounts::script(account)?;
        let (status, output) = self
            .run_as_root(name, vec!["/bin/sh".into(), "-c".into(), script])
            .await?;
        if status != ExitStatus::Code(0) {
            return Err(RuntimeError::Invalid(format!(
                "cannot create account '{}' in '{name}': {}",
                account.name,
                output.trim()
            )));
        }
        self.prepared.insert(name, &boot, &key, ());
        Ok(())
    }

    /// Lets a freshly started instance finish booting (see [`SETTLE`]).
    /// An exec refused while the instance comes up is tried again, for a while.
    pub(super) async fn settle(&self, name: &str) {
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), SETTLE.to_string()];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.run_as_root(name, argv.clone()).await {
                Ok((ExitStatus::Code(0), _)) => return,
                Ok((status, out)) => {
                    tracing::warn!(container = name, ?status, output = %out.trim(), "the boot did not finish in time");
                    return;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(container = name, "waiting for the boot to finish: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    tracing::warn!(container = name, "waiting for the boot to finish: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn forget_logins(&self, name: &str) {
        self.logins.forget(name);
        self.prepared.forget(name);
    }
}

/// `getent passwd LOGIN`'s answer, if it is one line for `login`.
fn parse_passwd_line(status: ExitStatus, out: &str, login: &str) -> Option<Login> {
    let fields: Vec<&str> = out.trim_end().split(':').collect();
    match (status, fields.as_slice()) {
        (ExitStatus::Code(0), [n, _, uid, gid, _, home, shell]) if *n == login => Some(Login {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            home: home.to_string(),
            shell: if shell.is_empty() {
                "/bin/sh".into()
            } else {
                shell.to_string()
            },
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passwd_line_is_read_only_for_the_login_asked() {
        let l = parse_passwd_line(
            ExitStatus::Code(0),
            "alice:x:10001:10001:Alice:/home/alice:\n",
            "alice",
        )
        .expect("parsed");
        assert_eq!(
            (l.uid, l.gid, l.home.as_str()),
            (10001, 10001, "/home/alice")
        );
        assert_eq!(l.shell, "/bin/sh", "an empty shell is /bin/sh");
        let line = "alice:x:10001:10001::/home/alice:/bin/bash";
        assert!(parse_passwd_line(ExitStatus::Code(0), line, "bob").is_none());
        assert!(parse_passwd_line(ExitStatus::Code(2), line, "alice").is_none());
        assert!(parse_passwd_line(ExitStatus::Code(0), "", "alice").is_none());
        assert!(
            parse_passwd_line(ExitStatus::Code(0), "alice:x:-1:0::/:/bin/sh", "alice").is_none()
        );
    }
}
