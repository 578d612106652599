//! The walking skeleton, end to end: the real OpenSSH client through the real gateway
//! into a persistent container of a real Debian rootfs — on the native runtime and on a
//! real LXD daemon, from the same test code.

use std::time::Duration;

use gatehouse_e2e::{on_every_runtime, stderr, stdout, Backend, Gateway, Terminal};

fn lands_in_the_container_as_the_login(backend: Backend) {
    let gw = Gateway::start_on(backend);
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

fn exit_status_stdin_and_streams_are_relayed(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("box1", "alice");
    let out = gw.ssh("alice", "alice@box1", "echo out; echo err >&2; exit 3");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
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

fn files_persist_across_sessions_stops_and_gateway_restarts(backend: Backend) {
    let mut gw = Gateway::start_on(backend);
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
    let boot_id = stdout(&gw.ssh("alice", "alice@web01", "cut -d' ' -f22 /proc/1/stat"));
    gw.kill();
    assert_eq!(gw.state_of("web01"), "running");
    gw.spawn();
    let out = gw.ssh(
        "alice",
        "alice@web01",
        "cut -d' ' -f22 /proc/1/stat; cat ~/note",
    );
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

fn bad_inputs_are_refused_cleanly(backend: Backend) {
    let mut gw = Gateway::start_on(backend);
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
fn pty_size_follows_the_clients_window(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("tty1", "alice");
    let term = Terminal::start(&gw.interactive_ssh("alice", "alice@tty1"), 100, 30);
    term.wait_for("alice@tty1");
    term.send(&["echo size=$(stty size) tty=$(tty)", "Enter"]);
    let s = term.wait_for("size=30 100");
    assert!(s.contains("tty=/dev/pts/"), "{s}");
    term.resize(120, 40);
    std::thread::sleep(Duration::from_millis(200));
    term.send(&["echo size=$(stty size)", "Enter"]);
    term.wait_for("size=40 120");
    term.send(&["exit 4", "Enter"]);
    term.wait_for("ssh-exit=4");
}

fn several_containers_give_a_picker_with_a_terminal_and_a_list_without(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("pick-a", "alice");
    gw.create_container("pick-b", "alice");
    let out = gw.ssh("alice", "alice", "hostname");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pick-a, pick-b"), "{}", stderr(&out));
    let term = Terminal::start(&gw.interactive_ssh("alice", "alice"), 100, 30);
    term.wait_for("choose 1-2");
    term.send(&["7", "Enter"]);
    term.wait_for("no such choice");
    term.send(&["2", "Enter"]);
    term.wait_for("alice@pick-b");
    term.send(&["exit", "Enter"]);
    term.wait_for("ssh-exit=0");
}

fn password_login_with_the_real_client(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("pw1", "alice");
    let out = gw.ssh_password("alice@pw1", &gatehouse_e2e::password_of("alice"), "id -un");
    assert_eq!(stdout(&out), "alice\n", "{}", stderr(&out));
    let out = gw.ssh_password("alice@pw1", "wrong", "id -un");
    assert_ne!(out.status.code(), Some(0));
    assert!(stdout(&out).is_empty());
    // bob's password does not open alice's account.
    let out = gw.ssh_password("alice@pw1", &gatehouse_e2e::password_of("bob"), "id -un");
    assert!(stdout(&out).is_empty());
}

on_every_runtime!(
    lands_in_the_container_as_the_login,
    exit_status_stdin_and_streams_are_relayed,
    files_persist_across_sessions_stops_and_gateway_restarts,
    bad_inputs_are_refused_cleanly,
    pty_size_follows_the_clients_window,
    several_containers_give_a_picker_with_a_terminal_and_a_list_without,
    password_login_with_the_real_client,
);
