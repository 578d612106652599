//! Reading a container's `/etc/passwd` and `/etc/group` without the host's NSS (which
//! would load libraries from the container into a privileged process).

use super::error::NativeError;

/// The largest account file read.
const MAX_ACCOUNT_FILE: u64 = 16 << 20;

/// Reads an account file (`/etc/passwd`, `/etc/group`) of the container we are in. Its
/// root controls the file: one that is not a regular file (a FIFO would block the reader
/// for ever) or is larger than any real one is refused rather than read.
pub fn read_account_file(path: &str) -> Result<String, NativeError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(NativeError::step(format!("cannot read {path}")))?;
    let meta = file
        .metadata()
        .map_err(NativeError::step(format!("cannot read {path}")))?;
    if !meta.is_file() {
        return Err(format!("{path} is not a regular file").into());
    }
    if meta.len() > MAX_ACCOUNT_FILE {
        return Err(format!("{path} is larger than {MAX_ACCOUNT_FILE} bytes").into());
    }
    let mut text = String::new();
    file.take(MAX_ACCOUNT_FILE)
        .read_to_string(&mut text)
        .map_err(NativeError::step(format!("cannot read {path}")))?;
    Ok(text)
}

/// One account from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// Finds `login` in the text of an `/etc/passwd` file.
pub fn lookup(passwd: &str, login: &str) -> Option<PasswdEntry> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != login {
            return None;
        }
        Some(PasswdEntry {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_string(),
            shell: if f[6].is_empty() {
                "/bin/sh".into()
            } else {
                f[6].to_string()
            },
        })
    })
}

/// The supplementary group ids of `login` from the text of an `/etc/group` file, with
/// `primary` first.
pub fn groups(group: &str, login: &str, primary: u32) -> Vec<u32> {
    let mut out = vec![primary];
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        if f[3].split(',').any(|m| m == login) {
            if let Ok(gid) = f[2].parse() {
                if !out.contains(&gid) {
                    out.push(gid);
                }
            }
        }
    }
    out
}

/// The id of group `name` in the text of an `/etc/group` file.
pub fn group_id(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fifo_or_a_huge_file_is_refused_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("passwd");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let e = read_account_file(fifo.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let plain = tmp.path().join("group");
        std::fs::write(&plain, "root:x:0:\n").unwrap();
        assert_eq!(
            read_account_file(plain.to_str().unwrap()).unwrap(),
            "root:x:0:\n"
        );
    }

    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:10001:10001::/home/alice:\nbroken:x:zz:1::/:/bin/sh\n";

    #[test]
    fn finds_accounts() {
        let root = lookup(PASSWD, "root").unwrap();
        assert_eq!((root.uid, root.home.as_str()), (0, "/root"));
        assert_eq!(lookup(PASSWD, "alice").unwrap().shell, "/bin/sh");
        assert!(lookup(PASSWD, "broken").is_none());
        assert!(lookup(PASSWD, "bob").is_none());
        assert!(lookup(PASSWD, "").is_none());
    }

    #[test]
    fn supplementary_groups() {
        let group = "sudo:x:27:alice,bob\nadm:x:4:bob\nalice:x:10001:\n";
        assert_eq!(groups(group, "alice", 10001), vec![10001, 27]);
        assert_eq!(group_id(group, "adm"), Some(4));
        assert_eq!(group_id(group, "tty"), None);
    }
}
