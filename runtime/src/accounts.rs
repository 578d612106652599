//! Creating a person's account inside a container on first login, the same way on every
//! runtime: a shell script run as the container's root.

use crate::api::Account;
use crate::error::{Result, RuntimeError};
use crate::names::is_user_name;

/// A shell script that creates `account` unless it exists; serialised inside the
/// container (two first logins at once) and judged by the result.
pub fn script(account: &Account) -> Result<String> {
    if !is_user_name(&account.name) {
        return Err(RuntimeError::Invalid(format!(
            "invalid account name '{}'",
            account.name
        )));
    }
    // Absolute, no `..`, and nothing the shell script below would interpret.
    let safe_path = |p: &str| {
        p.starts_with('/')
            && !p.contains("..")
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    };
    let shell = account.shell.as_deref().unwrap_or("/bin/bash");
    if !safe_path(shell) {
        return Err(RuntimeError::Invalid(format!(
            "invalid login shell '{shell}'"
        )));
    }
    let home = account
        .home
        .clone()
        .unwrap_or_else(|| format!("/home/{}", account.name));
    if !safe_path(&home) {
        return Err(RuntimeError::Invalid(format!(
            "invalid home directory '{home}'"
        )));
    }
    let (n, uid, gid) = (&account.name, account.uid, account.gid);
    // sudo ignores files in sudoers.d whose names contain a dot.
    let rule = format!("/etc/sudoers.d/gatehouse-{}", n.replace('.', "_"));
    let sudo = if account.sudo {
        format!(
            "mkdir -p /etc/sudoers.d && echo '{n} ALL=(ALL:ALL) NOPASSWD: ALL' > {rule}.tmp && \
             chmod 0440 {rule}.tmp && mv {rule}.tmp {rule}\n"
        )
    } else {
        format!("rm -f {rule}\n")
    };
    // The system journal (`journalctl -u` as oneself), where the image has one.
    let group = "systemd-journal";
    let journal = if account.journal {
        format!(
            "if getent group {group} >/dev/null && ! id -nG {n} | grep -qw {group}; then \
               usermod -a -G {group} {n}; fi\n"
        )
    } else {
        format!("if id -nG {n} | grep -qw {group}; then gpasswd -d {n} {group} >/dev/null; fi\n")
    };
    Ok(format!(
        "exec 9>/run/gatehouse-accounts.lock; command -v flock >/dev/null && flock 9; \
         if ! grep -q '^{n}:' /etc/passwd; then \
           sh={shell}; [ -x \"$sh\" ] || sh=/bin/sh; \
           getent group {gid} >/dev/null || groupadd -g {gid} {n}; \
           mkdir -p \"$(dirname {home})\"; useradd -m -d {home} -u {uid} -g {gid} -s \"$sh\" {n}; \
         fi; grep -q '^{n}:' /etc/passwd || exit 1\n{sudo}{journal}"
    ))
}
