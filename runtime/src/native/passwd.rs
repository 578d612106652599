//! Reading a container's `/etc/passwd` and `/etc/group` without the host's NSS (which
//! would load libraries from the container into a privileged process).

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
