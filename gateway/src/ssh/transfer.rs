//! The server side of a file transfer, recognised exactly: legacy `scp -t`/`scp -f` and
//! `rsync --server`, with their known flags and plain paths. A command that matches is
//! run without a shell (the parsed argv, the program from a fixed directory), so nothing
//! after it — `scp -t /tmp; id` — can run under the `sftp` action. Anything else is a
//! command, which needs `exec`.
//!
//! A path that a shell would expand or split (globs, `$`, quotes that matter, `;`, a
//! leading `~user`) makes the command not a transfer: run through a shell it would mean
//! something else than the argv we would run.

/// Where the transfer programs are taken from inside the container (never the login's
/// own `PATH`, never a path the client names): where every distribution puts them.
const PROGRAM_DIR: &str = "/usr/bin";

/// Directories the client may name the program in.
const PROGRAM_DIRS: &[&str] = &["/usr/bin", "/bin"];

/// Characters that a shell treats specially anywhere in the command line.
const SHELL_SPECIAL: &[char] = &[
    ';', '|', '&', '<', '>', '(', ')', '$', '`', '\n', '\r', '*', '?', '[', ']', '{', '}', '!',
    '#', '\0',
];

/// rsync's long options that its client sends to the server side and that only shape the
/// transfer (none runs a program, reads a configuration or writes a log).
const RSYNC_LONG: &[&str] = &[
    "--sender",
    "--delete",
    "--delete-before",
    "--delete-during",
    "--delete-delay",
    "--delete-after",
    "--delete-excluded",
    "--delete-missing-args",
    "--ignore-missing-args",
    "--partial",
    "--inplace",
    "--append",
    "--append-verify",
    "--existing",
    "--ignore-existing",
    "--remove-source-files",
    "--numeric-ids",
    "--safe-links",
    "--munge-links",
    "--size-only",
    "--no-r",
    "--no-i-r",
    "--no-implied-dirs",
    "--mkpath",
    "--force",
    "--ignore-errors",
    "--fake-super",
    "--open-noatime",
    "--preallocate",
    "--msgs2stderr",
    "--no-msgs2stderr",
];

/// rsync's long options with a value that the server side may take.
const RSYNC_VALUED: &[&str] = &[
    "--timeout=",
    "--bwlimit=",
    "--compress-level=",
    "--max-size=",
    "--min-size=",
    "--max-delete=",
    "--checksum-choice=",
    "--compress-choice=",
    "--modify-window=",
    "--block-size=",
    "--suffix=",
];

/// A file transfer's server-side command, as it will be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The program's absolute path inside the container (`/usr/bin/scp` or
    /// `/usr/bin/rsync`) followed by its arguments.
    pub argv: Vec<String>,
}

impl Transfer {
    /// Recognises `command` as the server side of scp or rsync, or says it is not one.
    pub fn parse(command: &str) -> Option<Transfer> {
        if command.contains(SHELL_SPECIAL) {
            return None;
        }
        let words = shlex::split(command)?;
        let (program, rest) = words.split_first()?;
        let name = program_name(program)?;
        let args = match name {
            "scp" => scp_args(rest)?,
            "rsync" => rsync_args(rest)?,
            _ => return None,
        };
        let mut argv = vec![format!("{PROGRAM_DIR}/{name}")];
        argv.extend(args);
        Some(Transfer { argv })
    }
}

/// `scp`, `rsync`, or the same under one of the fixed program directories.
fn program_name(program: &str) -> Option<&'static str> {
    ["scp", "rsync"].into_iter().find(|name| {
        program == *name
            || PROGRAM_DIRS
                .iter()
                .any(|d| program.strip_prefix(d).and_then(|p| p.strip_prefix('/')) == Some(name))
    })
}

/// `[-v] [-r] [-p] [-d] (-t|-f) [--] PATH`, as OpenSSH's legacy client sends them.
fn scp_args(rest: &[String]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut direction = false;
    let mut words = rest.iter().peekable();
    while let Some(w) = words.next_if(|w| w.starts_with('-') && w.as_str() != "--") {
        let flags = w.strip_prefix('-').filter(|f| !f.is_empty())?;
        for c in flags.chars() {
            match c {
                't' | 'f' if !direction => direction = true,
                'v' | 'r' | 'p' | 'd' => {}
                _ => return None,
            }
        }
        out.push(w.clone());
    }
    if !direction {
        return None;
    }
    let dashes = words.next_if(|w| w.as_str() == "--").is_some();
    let path = words.next()?;
    if words.next().is_some() || (!dashes && path.starts_with('-')) {
        return None;
    }
    out.push("--".into());
    out.push(plain_path(path)?);
    Some(out)
}

/// `--server [--sender] [-FLAGS] [known long options] . PATH…`, as rsync's client sends.
fn rsync_args(rest: &[String]) -> Option<Vec<String>> {
    let (first, rest) = rest.split_first()?;
    if first != "--server" {
        return None;
    }
    let mut out = vec![first.clone()];
    let mut words = rest.iter();
    let mut sender = false;
    for w in words.by_ref() {
        if w == "." {
            break;
        }
        if w == "--sender" {
            sender = true;
        } else if !(RSYNC_LONG.contains(&w.as_str())
            || RSYNC_VALUED
                .iter()
                .any(|p| w.strip_prefix(p).is_some_and(plain_value))
            || short_flags(w))
        {
            return None;
        }
        out.push(w.clone());
    }
    out.push(".".into());
    let paths: Vec<String> = words.map(|p| plain_path(p)).collect::<Option<_>>()?;
    // The receiver writes to one place; the sender may send several.
    match paths.len() {
        0 => return None,
        1 => {}
        _ if sender => {}
        _ => return None,
    }
    if paths.iter().any(|p| p.starts_with('-')) {
        return None;
    }
    out.extend(paths);
    Some(out)
}

/// rsync's bundle of one-letter options, with the protocol's `e.` compatibility letters.
fn short_flags(word: &str) -> bool {
    let Some(flags) = word.strip_prefix('-') else {
        return false;
    };
    let (letters, compat) = match flags.split_once('e') {
        Some((l, c)) => (l, Some(c)),
        None => (flags, None),
    };
    !letters.is_empty()
        && letters.chars().all(|c| c.is_ascii_alphabetic() && c != 'M')
        && compat.is_none_or(|c| c.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
}

fn plain_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".,_-".contains(c))
}

/// A path as the shell would have passed it: `~/x` and `~` are the home directory (the
/// process starts there), `~user` is refused.
fn plain_path(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    if path == "~" {
        return Some(".".into());
    }
    if let Some(rest) = path.strip_prefix("~/") {
        return Some(if rest.is_empty() {
            ".".into()
        } else {
            rest.into()
        });
    }
    (!path.starts_with('~')).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(command: &str) -> Option<Vec<String>> {
        Transfer::parse(command).map(|t| t.argv)
    }

    #[test]
    fn scp_server_commands_are_parsed_into_an_argv() {
        assert_eq!(
            argv("scp -t /tmp").unwrap(),
            ["/usr/bin/scp", "-t", "--", "/tmp"]
        );
        assert_eq!(argv("scp -v -r -p -d -t -- /tmp/a b"), None, "two paths");
        assert_eq!(
            argv("scp -r -p -f -- '-odd name'").unwrap(),
            ["/usr/bin/scp", "-r", "-p", "-f", "--", "-odd name"]
        );
        assert_eq!(
            argv("/usr/bin/scp -f ~/notes.txt").unwrap(),
            ["/usr/bin/scp", "-f", "--", "notes.txt"]
        );
        assert_eq!(argv("scp -t ~").unwrap(), ["/usr/bin/scp", "-t", "--", "."]);
    }

    #[test]
    fn anything_after_or_around_a_transfer_is_not_one() {
        for command in [
            "scp -t /tmp; id",
            "scp -t /tmp && id",
            "scp -t /tmp | id",
            "scp -t $(id)",
            "scp -t `id`",
            "scp -t /tmp\nid",
            "scp -f /tmp/*.log",
            "scp -t ~root/x",
            "scp -t",
            "scp /tmp",
            "scp -x -t /tmp",
            "scp -t -f /tmp",
            "scp -t -oProxyCommand=id /tmp",
            "/tmp/scp -t /tmp",
            "./scp -t /tmp",
            "sh -c 'scp -t /tmp'",
            "scp -t /tmp # comment",
            "rsync --server --daemon .",
            "rsync --server --config=/tmp/x.conf --daemon .",
            "rsync --server -logDtpre.iLsfxCIvu --log-file=/tmp/l . /tmp/x",
            "rsync --server -logDtpre.iLsfxCIvu . /tmp/a /tmp/b",
            "rsync --server -logDtpre.iLsfxCIvu /tmp/x",
            "rsync --server -logDtpre.iLsfxCIvu . ",
            "rsync --server -M--daemon . /tmp/x",
            "rsync -a . /tmp/x",
            "/home/alice/rsync --server . /tmp/x",
        ] {
            assert_eq!(argv(command), None, "{command:?}");
        }
    }

    #[test]
    fn rsync_server_commands_are_parsed_into_an_argv() {
        assert_eq!(
            argv("rsync --server -logDtpre.iLsfxCIvu . /tmp/x").unwrap(),
            [
                "/usr/bin/rsync",
                "--server",
                "-logDtpre.iLsfxCIvu",
                ".",
                "/tmp/x"
            ]
        );
        assert_eq!(
            argv("rsync --server --sender -vlogDtpre.iLsfxCIvu --delete --timeout=30 . d/a d/b")
                .unwrap(),
            [
                "/usr/bin/rsync",
                "--server",
                "--sender",
                "-vlogDtpre.iLsfxCIvu",
                "--delete",
                "--timeout=30",
                ".",
                "d/a",
                "d/b"
            ]
        );
        assert_eq!(
            argv(r"rsync --server -logDtpre.iLsfxCIvu . my\ dir").unwrap()[4],
            "my dir"
        );
    }
}
