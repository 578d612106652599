//! Entry points for the fuzz targets in `fuzz/` (not an API): each hands untrusted input
//! to one parser the gateway runs on network, file or daemon input, and must return, not
//! panic, whatever the input. [`TARGETS`] names them all, for `fuzz/` and for the test
//! that replays the seeds and every input a fuzzer ever crashed on
//! (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`).

use gatehouse_policies::{Action, Policy, PolicySet, Request, Subject};

use crate::ssh::files::{ScpCommand, Watch};

/// A fuzz target: takes any bytes, must return.
pub type Target = fn(&[u8]);

/// Every target by name: the name is its `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: &[(&str, Target)] = &[
    ("user_name", user_name),
    ("transfer_command", transfer_command),
    ("config", config),
    ("sftp", sftp),
    ("scp", scp),
    ("policy", policy),
    ("asciicast", asciicast),
    ("lxd_answer", gatehouse_runtime::fuzzing::lxd_answer),
    ("image_archive", gatehouse_runtime::fuzzing::image_archive),
    ("backup", gatehouse_runtime::fuzzing::backup),
];

/// The SSH user-name grammar (`user@login@container`, `user@+admin`).
pub fn user_name(data: &[u8]) {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(target) = crate::grammar::parse(name) {
        let _ = target.login();
    }
}

/// An exec request's command, as the scp/rsync recogniser and the scp observer read it.
pub fn transfer_command(data: &[u8]) {
    let Ok(command) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::ssh::transfer::Transfer::parse(command);
    let _ = ScpCommand::parse(command);
}

/// The configuration file, with every typed value read from it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = crate::config::Config::parse(text) {
        let _ = config.server.limits();
        let _ = config.network();
        let _ = config.runtime.lxd_settings();
    }
}

/// The SFTP observer: `data` is cut into chunks alternating between what the client and
/// the server send; the first byte of each chunk says its length.
pub fn sftp(data: &[u8]) {
    observe(Watch::sftp(), data);
}

/// The legacy scp observer for `scp -t` or `scp -f` (as the first byte is even or odd),
/// fed chunks as [`sftp`] is.
pub fn scp(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let command = if first & 1 == 0 {
        "scp -t /tmp"
    } else {
        "scp -f /tmp/x"
    };
    if let Some(c) = ScpCommand::parse(command) {
        observe(Watch::scp(c), rest);
    }
}

fn observe(mut watch: Watch, mut data: &[u8]) {
    let mut events = Vec::new();
    let mut from_client = true;
    while let Some((&len, rest)) = data.split_first() {
        let (chunk, next) = rest.split_at(usize::from(len).min(rest.len()));
        if from_client {
            watch.client(chunk, &mut events);
        } else {
            watch.server(chunk, &mut events);
        }
        from_client = !from_client;
        data = next;
        events.clear();
    }
    watch.finish(&mut events);
}

/// A policy file: parsed, then asked one question and explained.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = gatehouse_policies::load::parse("fuzz.toml", text) else {
        return;
    };
    let set = PolicySet::from_parsed(parsed);
    let request = Request {
        subject: Subject {
            user: "alice".into(),
            groups: vec!["ops".into()],
        },
        target: gatehouse_policies::Target {
            container: "web01".into(),
            owner: "alice".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
        },
        login: "root".into(),
        action: Action::Shell,
        port: Some(22),
        source: "192.0.2.1".parse().ok(),
        time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
    };
    let _ = set.decide(&request);
    let _ = set.explain(&request).lines();
}

/// A recording (asciicast v2), read and rendered as `replay --text` does.
pub fn asciicast(data: &[u8]) {
    let path = std::path::Path::new("fuzz.cast");
    if let Ok((header, events)) = gatehouse_recordings::cast::read_from(data, path) {
        let _ = gatehouse_recordings::text::render(&header, &events);
        let _ = gatehouse_recordings::text::typed_lines(&events);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays every seed and every input a fuzzer once crashed on; each must return.
    #[test]
    fn seeds_and_past_crashes_are_handled() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for (name, target) in super::TARGETS {
            let mut seeds = 0;
            for dir in ["seeds", "regressions"] {
                let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let data = std::fs::read(entry.path()).expect("read an input");
                    target(&data);
                    seeds += 1;
                }
            }
            assert!(seeds > 0, "fuzz/seeds/{name}/ has no input");
            replayed += seeds;
        }
        assert!(replayed >= super::TARGETS.len());
    }
}
