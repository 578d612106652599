//! Every session recorded, sealed in the audit log, replayable; fail closed.

use std::process::Command;
use std::time::Duration;

use gatehouse_e2e::{on_every_runtime, stderr, stdout, Backend, Gateway, Terminal};

fn sessions(gw: &Gateway) -> Vec<serde_json::Value> {
    let json = gw.cli_ok(&["sessions", "list", "--json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&json).unwrap()
}

/// Runs a command when dropped: undoes what a test did to the host, even if it fails.
struct Undo<'a>([&'a str; 3]);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.0[0]).args(&self.0[1..]).status();
    }
}

/// The recorded sessions once `n` of them have ended and been sealed in the audit log
/// (the gateway seals a session just after the client has seen its end).
fn sealed_sessions(gw: &Gateway, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let list = sessions(gw);
        let audit = std::fs::read_to_string(gw.dir.path().join("state/audit/audit.jsonl"))
            .unwrap_or_default();
        let sealed = list
            .iter()
            .filter(|s| !s["exit"].is_null())
            .filter(|s| {
                audit.lines().any(|l| {
                    l.contains(r#""type":"session.end""#)
                        && l.contains(s["id"].as_str().unwrap_or("-"))
                })
            })
            .count();
        if sealed >= n {
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sessions never sealed: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cast_of(gw: &Gateway, session: &serde_json::Value) -> std::path::PathBuf {
    let id = session["id"].as_str().unwrap();
    let file = session["channels"][0]["file"].as_str().unwrap();
    gw.dir.path().join("state/recordings").join(id).join(file)
}

/// `asciinema cat` (it wants a terminal: run it under script(1)).
fn asciinema_cat(path: &std::path::Path) -> String {
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat {}", path.display()),
            "/dev/null",
        ])
        .output()
        .expect("asciinema");
    assert!(
        out.status.success(),
        "asciinema cat refused {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exec_sessions_are_recorded_with_command_output_and_exit_status(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("rec1", "alice");
    let out = gw.ssh(
        "alice",
        "alice@rec1",
        "echo secret-marker; echo err-marker >&2; exit 7",
    );
    assert_eq!(out.status.code(), Some(7));
    let list = sealed_sessions(&gw, 1);
    let s = list
        .iter()
        .find(|s| s["channels"][0]["command"] == "echo secret-marker; echo err-marker >&2; exit 7")
        .expect("recorded");
    assert_eq!(s["exit"], "code 7");
    assert_eq!(s["user"], "alice");
    let id = s["id"].as_str().unwrap();
    let text = gw.cli_ok(&["replay", id, "--text"]);
    assert!(
        text.contains("$ echo secret-marker")
            && text.contains("secret-marker\n")
            && text.contains("code 7"),
        "{text}"
    );
    assert!(asciinema_cat(&cast_of(&gw, s)).contains("secret-marker"));
    let stderr_cast = gw
        .dir
        .path()
        .join("state/recordings")
        .join(id)
        .join("channel-0.stderr.cast");
    assert!(asciinema_cat(&stderr_cast).contains("err-marker"));
    // The audit log has the session, sealed, and verifies.
    let verify = gw.cli_ok(&["audit", "verify"]);
    assert!(
        verify.contains("audit log intact") && !verify.contains(" 0 recording files"),
        "{verify}"
    );
}

fn binary_streams_are_kept_byte_for_byte_beside_the_cast(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("rec2", "alice");
    // Text first, then data: 300 KB that are not UTF-8 (and a NUL), in and out.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = gw.ssh_with_input(
        "alice",
        "alice@rec2",
        "echo text-before; sleep 0.2; cat; echo text-after >&2",
        &data,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&out.stdout[..12], b"text-before\n");
    assert!(out.stdout[12..] == data[..], "stdout changed on the way");
    let list = sealed_sessions(&gw, 1);
    let id = list[0]["id"].as_str().unwrap();
    let dir = gw.dir.path().join("state/recordings").join(id);
    let raw_out = std::fs::read(dir.join("channel-0.stdout.bin")).unwrap();
    assert!(raw_out == data, "stdout.bin is not the bytes sent");
    let raw_in = std::fs::read(dir.join("channel-0.stdin.bin")).unwrap();
    assert!(raw_in == data, "stdin.bin is not the bytes received");
    assert!(!dir.join("channel-0.stderr.bin").exists());
    let text = gw.cli_ok(&["replay", id, "--text"]);
    assert!(
        text.contains("text-before")
            && text
                .contains("stdout is binary from here on; its bytes are in channel-0.stdout.bin")
            && text.contains("text-after"),
        "{text}"
    );
    // The raw files are sealed with the rest: changing one is detected.
    let verify = gw.cli_ok(&["audit", "verify"]);
    assert!(verify.contains("audit log intact"), "{verify}");
    let mut tampered = raw_out.clone();
    tampered[1000] ^= 1;
    std::fs::write(dir.join("channel-0.stdout.bin"), tampered).unwrap();
    let out = gw.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("channel-0.stdout.bin")
            || stderr(&out).contains("channel-0.stdout.bin")
    );
}

fn an_interactive_session_with_typos_is_found_as_executed(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("rec2", "alice");
    let term = Terminal::start(&gw.interactive_ssh("alice", "alice@rec2"), 100, 30);
    term.wait_for("alice@rec2");
    term.send(&["ecoh", "BSpace", "BSpace", "ho typo-fixed-marker", "Enter"]);
    term.wait_for("typo-fixed-marker\nalice@rec2");
    term.send(&["exit", "Enter"]);
    term.wait_for("ssh-exit=0");
    let list = sealed_sessions(&gw, 1);
    let s = list
        .iter()
        .find(|s| s["channels"][0]["kind"] == "shell")
        .expect("recorded");
    let text = gw.cli_ok(&["replay", s["id"].as_str().unwrap(), "--text"]);
    assert!(
        text.contains("echo typo-fixed-marker"),
        "the command as executed is missing:\n{text}"
    );
    assert!(!text.contains("ecoh"), "{text}");
    // Keystrokes are recorded too (recording.input defaults to true).
    let raw = std::fs::read_to_string(cast_of(&gw, s)).unwrap();
    assert!(
        raw.contains(r#""i","e"#) || raw.contains(r#""i", "e"#),
        "no input events:\n{raw}"
    );
    assert!(asciinema_cat(&cast_of(&gw, s)).contains("typo-fixed-marker"));
    // Full-text search finds the command as executed, on screen and as typed.
    let found = gw.cli_ok(&["sessions", "search", "echo typo-fixed"]);
    assert!(
        found.contains(s["id"].as_str().unwrap())
            && found.contains("(typed) echo typo-fixed-marker"),
        "{found}"
    );
    assert_eq!(
        gw.cli(&["sessions", "search", "nothing-like-this"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn tampering_is_detected_and_named() {
    let gw = Gateway::start();
    gw.create_container("rec3", "alice");
    assert_eq!(stdout(&gw.ssh("alice", "alice@rec3", "echo one")), "one\n");
    assert_eq!(stdout(&gw.ssh("alice", "alice@rec3", "echo two")), "two\n");
    let list = sealed_sessions(&gw, 2);
    assert!(gw.cli(&["audit", "verify"]).status.success());
    let s = &list[0];
    let cast = cast_of(&gw, s);
    let original = std::fs::read(&cast).unwrap();
    let mut flipped = original.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x01;
    std::fs::write(&cast, &flipped).unwrap();
    let out = gw.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "recordings/{}/channel-0.cast",
            s["id"].as_str().unwrap()
        )),
        "{}",
        stderr(&out)
    );
    std::fs::write(&cast, &original).unwrap();
    assert!(gw.cli(&["audit", "verify"]).status.success());
    // Delete one line of the audit log.
    let log = gw.dir.path().join("state/audit/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    let out = gw.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("audit.jsonl line 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_killed_gateway_leaves_a_readable_recording_and_a_valid_chain() {
    let mut gw = Gateway::start();
    gw.create_container("rec4", "alice");
    let mut child = gw
        .ssh_command("alice", "alice@rec4")
        .arg("echo before-kill; sleep 30")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = sessions(&gw);
        // The session's channel is listed once its recorder has started.
        let ok = list.first().is_some_and(|s| {
            s["channels"][0]["file"].is_string()
                && std::fs::read_to_string(cast_of(&gw, s))
                    .unwrap_or_default()
                    .contains("before-kill")
        });
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "output never recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw.kill();
    let _ = child.kill();
    let _ = child.wait();
    let s = &sessions(&gw)[0];
    assert!(s["exit"].is_null(), "{s}");
    let text = gw.cli_ok(&["replay", s["id"].as_str().unwrap(), "--text"]);
    assert!(text.contains("before-kill"), "{text}");
    assert!(gw.cli(&["audit", "verify"]).status.success());
}

#[test]
fn unwritable_recordings_refuse_new_sessions_with_a_message_and_an_audit_event() {
    let gw = Gateway::start();
    gw.create_container("rec5", "alice");
    let dir = gw.dir.path().join("state/recordings");
    assert!(Command::new("chattr")
        .arg("+i")
        .arg(&dir)
        .status()
        .unwrap()
        .success());
    let _guard = Undo(["chattr", "-i", dir.to_str().unwrap()]);
    let out = gw.ssh("alice", "alice@rec5", "echo should-not-run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("cannot be recorded"),
        "{}",
        stderr(&out)
    );
    let audit = std::fs::read_to_string(gw.dir.path().join("state/audit/audit.jsonl")).unwrap();
    assert!(audit.contains(r#""type":"session.refused""#), "{audit}");
}

#[test]
fn a_session_whose_recording_fails_mid_way_is_ended() {
    let gw = Gateway::start();
    gw.create_container("rec6", "alice");
    let dir = gw.dir.path().join("state/recordings");
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap()
        .success());
    let _guard = Undo(["umount", "-l", dir.to_str().unwrap()]);
    let out = gw.ssh(
        "alice",
        "alice@rec6",
        "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo never-reached",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        !stdout(&out).contains("never-reached"),
        "the session went on unrecorded"
    );
    assert!(
        stderr(&out).contains("recording cannot be written"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn retention_deletes_old_recordings_and_the_chain_still_verifies() {
    let mut gw = Gateway::start_with("[recording]\nkeep = \"1s\"\n");
    gw.create_container("rec7", "alice");
    assert_eq!(stdout(&gw.ssh("alice", "alice@rec7", "echo old")), "old\n");
    assert_eq!(sealed_sessions(&gw, 1).len(), 1);
    std::thread::sleep(Duration::from_millis(2200));
    gw.kill();
    gw.spawn(); // prunes at start
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sessions(&gw).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "old recording not deleted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let audit = std::fs::read_to_string(gw.dir.path().join("state/audit/audit.jsonl")).unwrap();
    assert!(audit.contains(r#""type":"recording.deleted""#), "{audit}");
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn replay_plays_in_real_time_and_follows_a_running_session() {
    let gw = Gateway::start();
    gw.create_container("rec8", "alice");
    let mut child = gw
        .ssh_command("alice", "alice@rec8")
        .arg("for i in 1 2 3; do echo tick$i; sleep 0.7; done")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let id = loop {
        if let Some(s) = sessions(&gw).first() {
            break s["id"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no session recorded");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Started while the session runs: it follows until the end.
    let t0 = std::time::Instant::now();
    let replay = gw.cli(&["replay", &id, "--idle-limit", "0.2"]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let _ = child.wait();
    let text = stdout(&replay);
    assert!(text.contains("tick1") && text.contains("tick3"), "{text}");
    assert!(
        t0.elapsed() > Duration::from_millis(500),
        "did not wait for the live tail"
    );
    // A finished session plays back at speed.
    let fast = gw.cli(&["replay", &id, "--speed", "50"]);
    assert!(stdout(&fast).contains("tick2"));
    assert_eq!(
        gw.cli(&["replay", "no-such-session"]).status.code(),
        Some(1)
    );
}

on_every_runtime!(
    exec_sessions_are_recorded_with_command_output_and_exit_status,
    binary_streams_are_kept_byte_for_byte_beside_the_cast,
    an_interactive_session_with_typos_is_found_as_executed,
);

#[test]
fn stopping_the_gateway_ends_running_sessions_and_seals_them_first() {
    use std::io::BufRead;
    let mut gw = Gateway::start();
    gw.create_container("stop1", "alice");
    let mut long = gw
        .ssh_command("alice", "alice@stop1")
        .arg("echo started; sleep 60")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(long.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "started\n");
    let t0 = std::time::Instant::now();
    let status = gw
        .terminate(20)
        .expect("the gateway did not stop on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", gw.log());
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let out = long.wait_with_output().unwrap();
    assert!(
        stderr(&out).contains("the gateway is shutting down; session ended"),
        "{}",
        stderr(&out)
    );
    // Sealed before the gateway went: the end is audited with the recording's digests,
    // and the log verifies.
    let ends = gw.audit_events("session.end");
    assert!(
        ends.iter().any(|e| e["recording"].is_object()),
        "{}",
        gw.audit()
    );
    assert_eq!(gw.audit_events("gateway.stop").len(), 1, "{}", gw.audit());
    let verify = gw.cli_ok(&["audit", "verify"]);
    assert!(verify.contains("audit log intact"), "{verify}");
}
