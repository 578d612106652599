//! `container console`: a container's `/dev/console` reached from the host's terminal and
//! over SSH (`+admin`, the `container.console` right), recorded and audited like a
//! session; what container root can do with its console stays inside.

use std::time::{Duration, Instant};

use gatehouse_e2e::{gatehouse_bin, on_every_runtime, stderr, stdout, Backend, Gateway, Terminal};

/// The command line that attaches this gateway's CLI to `name`'s console in a terminal.
fn console_command(gw: &Gateway, name: &str) -> String {
    format!(
        "{} --config {} container console {name}; echo console-exit=$?; sleep 60",
        gatehouse_bin().display(),
        gw.config.display()
    )
}

/// The `session.start` events of console attachments.
fn console_starts(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.audit_events("session.start")
        .into_iter()
        .filter(|e| e["subsystem"] == "console")
        .collect()
}

/// The recording of a session as text.
fn replay_text(gw: &Gateway, session: &str) -> String {
    gw.cli_ok(&["replay", session, "--text"])
}

/// Natively the full image boots systemd; LXD's test image is the full one.
fn the_host_attaches_to_the_console_of_a_booted_systemd_container_and_it_is_recorded(
    backend: Backend,
) {
    let gw = Gateway::start_on(backend);
    let image = match backend {
        Backend::Native => {
            gatehouse_e2e::link_full_image(&gw.dir.path().join("state"));
            "debian-12-full"
        }
        Backend::Lxd => "debian-12",
    };
    gw.cli_ok(&[
        "container",
        "create",
        "vm1",
        "--owner",
        "alice",
        "--image",
        image,
    ]);
    gw.cli_ok(&["container", "start", "vm1"]);
    let term = Terminal::start(&console_command(&gw, "vm1"), 100, 30);
    // systemd's console getty (boot messages before it are in the console's history).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !term.screen().contains("vm1 login:") {
        assert!(
            Instant::now() < deadline,
            "no getty on the console:\n{}",
            term.screen()
        );
        term.send(&["Enter"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    // What is typed reaches the getty, which hands it to login.
    term.send(&["nosuchuser", "Enter"]);
    term.wait_for("Password:");
    term.send(&["C-]"]);
    let screen = term.wait_for("console-exit=0");
    assert!(screen.contains("detached"), "{screen}");

    let starts = console_starts(&gw);
    assert_eq!(starts.len(), 1, "{}", gw.audit());
    let start = &starts[0];
    assert_eq!(start["container"], "vm1");
    assert_eq!(start["rule"], "root on the gateway host");
    let id = start["session"].as_str().unwrap().to_string();
    let ends: Vec<_> = gw
        .audit_events("session.end")
        .into_iter()
        .filter(|e| e["session"] == id.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "{}", gw.audit());
    assert_eq!(ends[0]["exit"], "detached");
    assert!(ends[0]["recording"].is_object(), "unsealed: {}", ends[0]);
    let text = replay_text(&gw, &id);
    assert!(
        text.contains("vm1 login:") && text.contains("nosuchuser"),
        "{text}"
    );
    assert!(gw.cli_ok(&["sessions", "list"]).contains(&id));
}

#[test]
fn a_lean_container_has_a_console_too_and_what_root_does_with_it_stays_inside() {
    let gw = Gateway::start();
    gw.create_container("web01", "alice");
    // Refused while stopped, with what to do.
    let out = gw.cli(&["container", "console", "web01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    assert!(console_starts(&gw).is_empty());

    // Root inside writes to its console; much more than any buffer holds, and the
    // write does not block on a console nobody watches.
    let out = gw.ssh(
        "alice",
        "alice@root@web01",
        "timeout 20 sh -c 'head -c 8M /dev/zero | tr \"\\0\" x > /dev/console' && echo wrote; \
         echo hello-console > /dev/console; \
         umount /dev/console 2>&1 | head -c 0; mountpoint -q /dev/console && echo still-bound; \
         stat -c '%U %G %a' /dev/console",
    );
    assert_eq!(
        stdout(&out),
        "wrote\nstill-bound\nroot tty 620\n",
        "{}",
        stderr(&out)
    );
    // Its supervisor kept a bounded history, not 8 MiB.
    let (sup, _) = gw.supervisor_and_init("web01");
    let rss = std::fs::read_to_string(format!("/proc/{}/status", sup.unwrap())).unwrap();
    let kb: u64 = rss
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(kb < 16 * 1024, "supervisor RSS {kb} kB");

    // The host's console shows the latest of it, with stdin from a pipe: its end
    // detaches.
    let mut child = std::process::Command::new(gatehouse_bin())
        .arg("--config")
        .arg(&gw.config)
        .args(["container", "console", "web01"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.ends_with("hello-console\r\n"),
        "{:?}",
        &shown[shown.len().saturating_sub(200)..]
    );
    assert!(
        shown.len() <= 64 * 1024 + 1024,
        "history of {} bytes",
        shown.len()
    );
    assert!(
        stderr(&out).contains("detached (end of input)"),
        "{}",
        stderr(&out)
    );

    // The console ends with the container.
    let term = Terminal::start(&console_command(&gw, "web01"), 80, 24);
    term.wait_for("hello-console");
    gw.cli_ok(&["container", "stop", "web01"]);
    let screen = term.wait_for("console-exit=0");
    assert!(screen.contains("the console ended"), "{screen}");
}

#[test]
fn over_ssh_the_console_takes_a_right_of_its_own_and_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.toml"),
        r#"
[[allow]]
name = "own"
groups = ["devs"]
owned = true
logins = ["root", "$user"]

[[admin]]
name = "operators"
users = ["alice"]
commands = ["container.console"]
containers = ["web*"]

[[admin]]
name = "leads"
users = ["bob"]
commands = ["container.*", "*"]
"#,
    )
    .unwrap();
    let gw = Gateway::start_with(&format!("[policy]\npaths = [\"{}\"]\n", policies.display()));
    gw.create_container("web01", "bob");
    gw.create_container("db01", "bob");
    gw.cli_ok(&["container", "start", "web01"]);
    gw.cli_ok(&["container", "start", "db01"]);

    // A wildcard does not grant the console.
    let out = gw.ssh("bob", "bob@+admin", "container console web01");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("may not"), "{}", stderr(&out));
    // Nor does a rule for other containers.
    let out = gw.ssh("alice", "alice@+admin", "container console db01");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The right one does, with a terminal.
    let out = gw.ssh("alice", "alice@+admin", "container console web01");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs a terminal"),
        "{}",
        stderr(&out)
    );
    let refused = gw.audit_events("admin.refused");
    assert!(
        refused
            .iter()
            .any(|e| e["command"] == "container console web01"
                && e["by"].as_str().unwrap().starts_with("bob")),
        "{refused:?}"
    );
    assert!(console_starts(&gw).is_empty());

    let out = gw.ssh("bob", "bob@root@web01", "echo from-inside > /dev/console");
    assert!(out.status.success(), "{}", stderr(&out));
    let cmd = gw.interactive_ssh("alice", "alice@+admin").replacen(
        "@127.0.0.1;",
        "@127.0.0.1 container console web01;",
        1,
    );
    let term = Terminal::start(&cmd, 80, 24);
    term.wait_for("from-inside");
    term.send(&["C-]"]);
    let screen = term.wait_for("ssh-exit=0");
    assert!(screen.contains("detached"), "{screen}");
    let starts = console_starts(&gw);
    assert_eq!(starts.len(), 1, "{}", gw.audit());
    assert_eq!(starts[0]["user"], "alice");
    assert_eq!(starts[0]["rule"], "admin rule 'operators'");
    let text = replay_text(&gw, starts[0]["session"].as_str().unwrap());
    assert!(text.contains("from-inside"), "{text}");
}

on_every_runtime!(
    the_host_attaches_to_the_console_of_a_booted_systemd_container_and_it_is_recorded
);
