//! The walking skeleton, end to end: the real OpenSSH client through the real gateway
//! into a persistent container of a real Debian rootfs.

use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_e2e::{stderr, stdout, Gateway};

#[test]
fn lands_in_the_container_as_the_login() {
    let gw = Gateway::start();
    gw.create_container("web01", "alice");
    let out = gw.ssh("alice", "alice@web01", "hostname; id -un; id -u");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web01\nalice\n10001\n");
    // The owner may log in as root.
    let out = gw.ssh("alice", "alice@root@web01", "id -un; hostname");
    assert_eq!(stdout(&out), "root\nweb01\n", "{}", stderr(&out));
    // alice's only container is found without naming it.
    let out = gw.ssh("alice", "alice", "hostname");
    assert_eq!(stdout(&out), "web01\n", "{}", stderr(&out));
}

#[test]
fn exit_status_stdin_and_streams_are_relayed() {
    let gw = Gateway::start();
    gw.create_container("box1", "alice");
    let out = gw.ssh("alice", "alice@box1", "echo out; echo err >&2; exit 3");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // stdin reaches the process and EOF ends it; bytes survive unchanged.
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let out = gw.ssh_with_input("alice", "alice@box1", "cat", &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), data.len());
    assert!(
        out.stdout == data,
        "cat through the gateway changed the bytes"
    );
    // Killed by a signal: OpenSSH's client exits 255.
    let out = gw.ssh("alice", "alice@box1", "kill -9 $$");
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn only_the_containers_processes_are_visible() {
    let gw = Gateway::start();
    gw.create_container("iso1", "alice");
    let out = gw.ssh("alice", "alice@iso1", "ps -e -o pid=,comm=");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("1 ")),
        "PID 1 is the container's init: {text}"
    );
    assert!(lines.len() <= 5, "host processes are visible: {text}");
    for host_only in ["sshd", "gatehouse", "cargo", "systemd", "kthreadd"] {
        assert!(
            !text.contains(host_only),
            "{host_only} visible inside: {text}"
        );
    }
}

#[test]
fn files_persist_across_sessions_stops_and_gateway_restarts() {
    let mut gw = Gateway::start();
    gw.create_container("web01", "alice");
    assert_eq!(gw.state_of("web01"), "stopped");
    // The first connection starts the stopped container.
    let out = gw.ssh(
        "alice",
        "alice@web01",
        "echo persistent > ~/note; sudo -n true 2>/dev/null; echo ok",
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    assert_eq!(gw.state_of("web01"), "running");
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@web01", "cat ~/note")),
        "persistent\n"
    );

    gw.cli_ok(&["container", "stop", "web01"]);
    assert_eq!(gw.state_of("web01"), "stopped");
    gw.cli_ok(&["container", "start", "web01"]);
    assert_eq!(gw.state_of("web01"), "running");
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@web01", "cat ~/note")),
        "persistent\n"
    );

    // SIGKILL the gateway: the container keeps running, with the same init.
    let boot_id = stdout(&gw.ssh("alice", "alice@web01", "stat -c %Y /proc/1"));
    gw.kill();
    assert_eq!(gw.state_of("web01"), "running");
    gw.spawn();
    let out = gw.ssh("alice", "alice@web01", "stat -c %Y /proc/1; cat ~/note");
    assert_eq!(
        stdout(&out),
        format!("{boot_id}persistent\n"),
        "{}",
        stderr(&out)
    );

    // Stopped again, then started on demand by a new connection.
    gw.cli_ok(&["container", "stop", "web01"]);
    let out = gw.ssh("alice", "alice@web01", "cat ~/note");
    assert_eq!(stdout(&out), "persistent\n");
    assert_eq!(gw.state_of("web01"), "running");
    let list = gw.cli_ok(&["container", "list"]);
    assert!(
        list.contains("web01") && list.contains("alice") && list.contains("running"),
        "{list}"
    );
}

#[test]
fn bad_inputs_are_refused_cleanly() {
    let mut gw = Gateway::start();
    gw.create_container("web01", "alice");
    gw.create_container("bobs", "bob");
    let long = "a".repeat(300);
    let long_container = format!("alice@{}", "b".repeat(300));
    for (key, user) in [
        ("alice", "nobody"),    // unknown user
        ("bob", "alice@web01"), // wrong key
        ("alice", "../etc"),    // malformed
        ("alice", "alice@../etc"),
        ("alice", long.as_str()),
        ("alice", long_container.as_str()),
        ("alice", "Alice"),
        ("alice", "alice@web01@x@y"),
        // (OpenSSH's client itself refuses names like `alice)(uid=*`; the grammar's unit
        // tests cover them.)
    ] {
        let out = gw.ssh(key, user, "true");
        assert_eq!(
            out.status.code(),
            Some(255),
            "{user} was not refused: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("Permission denied"),
            "{user}: {}",
            stderr(&out)
        );
    }
    // Authenticated, but no such container / someone else's: one clear line, exit 1.
    let out = gw.ssh("alice", "alice@nosuch", "true");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "gatehouse: no container named 'nosuch'"
    );
    let out = gw.ssh("alice", "alice@bobs", "true");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    assert!(gw.is_alive(), "gateway died:\n{}", gw.log());
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
    // Still serving.
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@web01", "echo fine")),
        "fine\n"
    );
}

/// Drives an interactive PTY session in tmux, so the client has a real terminal.
#[test]
fn pty_size_follows_the_clients_window() {
    let gw = Gateway::start();
    gw.create_container("tty1", "alice");
    let sock = format!("gh-e2e-{}", gw.port);
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&sock)
            .args(args)
            .output()
            .expect("tmux")
    };
    let ssh = format!(
        "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -tt alice@tty1@127.0.0.1; echo ssh-exit=$?; sleep 30",
        gw.port,
        gw.key("alice").display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &ssh,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = || stdout(&tmux(&["capture-pane", "-p", "-t", "t"]));
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = screen();
            if s.contains(needle) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("alice@tty1");
    tmux(&[
        "send-keys",
        "-t",
        "t",
        "echo size=$(stty size) tty=$(tty)",
        "Enter",
    ]);
    let s = wait_for("size=30 100");
    assert!(s.contains("tty=/dev/pts/"), "{s}");
    tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    std::thread::sleep(Duration::from_millis(200));
    tmux(&["send-keys", "-t", "t", "echo size=$(stty size)", "Enter"]);
    wait_for("size=40 120");
    tmux(&["send-keys", "-t", "t", "exit 4", "Enter"]);
    wait_for("ssh-exit=4");
    tmux(&["kill-server"]);
}
