//! Containers over weeks: idle stop and start on demand, limits and live resizing,
//! recovery from a killed supervisor.

use std::time::{Duration, Instant};

use gatehouse_e2e::{stderr, stdout, Gateway};

#[test]
fn idle_containers_stop_and_the_next_ssh_starts_them() {
    let gw = Gateway::start_with("[runtime]\nidle_stop = \"2s\"\n");
    gw.create_container("idle1", "alice");
    gw.create_container("keep1", "alice");
    gw.cli_ok(&["container", "set", "keep1", "--idle-stop", "never"]);
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@idle1", "echo 1 > ~/mark; echo up")),
        "up\n"
    );
    assert_eq!(stdout(&gw.ssh("alice", "alice@keep1", "echo up")), "up\n");
    assert_eq!(gw.state_of("idle1"), "running");
    assert!(
        gw.wait_for_state("idle1", "stopped", 15),
        "idle container never stopped"
    );
    assert_eq!(
        gw.state_of("keep1"),
        "running",
        "the opted-out container stopped"
    );
    // A new connection starts it again, quickly, with its files.
    let t0 = Instant::now();
    let out = gw.ssh("alice", "alice@idle1", "cat ~/mark");
    assert_eq!(stdout(&out), "1\n", "{}", stderr(&out));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(gw.state_of("idle1"), "running");
    // A running session keeps it up past the idle time.
    let out = gw.ssh("alice", "alice@idle1", "sleep 3; echo still-here");
    assert_eq!(stdout(&out), "still-here\n");
}

#[test]
fn memory_and_process_limits_hold_and_resize_live() {
    let gw = Gateway::start();
    gw.cli_ok(&[
        "container",
        "create",
        "lim1",
        "--owner",
        "alice",
        "--memory",
        "64M",
        "--pids",
        "48",
    ]);
    let hog = "perl -e '$x = \"a\" x (160*1024*1024); print \"survived\\n\"'";
    let out = gw.ssh("alice", "alice@lim1", hog);
    assert!(
        !stdout(&out).contains("survived"),
        "the hog was not stopped"
    );
    assert_ne!(out.status.code(), Some(0));
    // The gateway and the container are fine.
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@lim1", "echo alive")),
        "alive\n"
    );
    let show = gw.cli_ok(&["container", "show", "lim1"]);
    assert!(
        show.contains("memory=64M") && show.contains("usage:"),
        "{show}"
    );
    // Raise the limit of the running container: the same hog now survives.
    gw.cli_ok(&["container", "set", "lim1", "--memory", "512M"]);
    assert_eq!(stdout(&gw.ssh("alice", "alice@lim1", hog)), "survived\n");
    // A fork bomb stops at the process limit.
    let bomb = "perl -e 'my $n = 0; for (1..200) { my $p = fork(); last unless defined $p; if ($p == 0) { sleep 3; exit 0 } $n++ } print \"forked $n\\n\"; 1 while wait() > 0'";
    let out = gw.ssh("alice", "alice@lim1", bomb);
    let text = stdout(&out);
    let n: u32 = text
        .trim()
        .strip_prefix("forked ")
        .and_then(|v| v.parse().ok())
        .unwrap_or(999);
    assert!(
        n < 48,
        "forked {n} processes past a limit of 48: {text}{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@lim1", "echo alive")),
        "alive\n"
    );
}

#[test]
fn a_killed_supervisor_leaves_nothing_behind_and_the_container_starts_again() {
    let mut gw = Gateway::start();
    gw.create_container("crash1", "alice");
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@crash1", "echo 1 > ~/f; echo up")),
        "up\n"
    );
    let (sup, init) = gw.supervisor_and_init("crash1");
    let (sup, init) = (sup.expect("supervisor"), init.expect("init"));
    // SAFETY: plain kill(2).
    assert_eq!(unsafe { libc::kill(sup, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{init}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the container's init outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gw.state_of("crash1"), "stopped");
    let state = gw.dir.path().join("state").display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&state), "mounts left behind:\n{mounts}");
    // A restarted gateway reconciles: the dead supervisor's leftovers are cleaned up.
    gw.kill();
    gw.spawn();
    let log = gw.log();
    assert!(log.contains("crash1: its supervisor had died"), "{log}");
    let out = gw.ssh("alice", "alice@crash1", "cat ~/f");
    assert_eq!(stdout(&out), "1\n", "{}", stderr(&out));
    assert_eq!(gw.state_of("crash1"), "running");
}

#[test]
fn simultaneous_first_connections_start_the_container_once() {
    let gw = Gateway::start();
    gw.create_container("race1", "alice");
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| gw.ssh("alice", "alice@race1", "cut -d' ' -f22 /proc/1/stat")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let starts: Vec<String> = outs.iter().map(stdout).collect();
    let errors: Vec<String> = outs.iter().map(stderr).collect();
    assert!(
        starts.iter().all(|s| !s.is_empty() && *s == starts[0]),
        "different inits: {starts:?} {errors:?}"
    );
    let log = std::fs::read_to_string(gw.dir.path().join("state/containers/race1/supervisor.log"))
        .unwrap();
    assert_eq!(log.matches("starting container").count(), 1, "{log}");
    // A second gateway process (restart) sees the same single supervisor.
    let (sup, _) = gw.supervisor_and_init("race1");
    assert!(sup.is_some());
}

#[test]
fn a_dr_twin_never_runs_beside_its_primary() {
    let gw = Gateway::start();
    gw.create_container("prim1", "alice");
    gw.cli_ok(&[
        "container",
        "create",
        "twin1",
        "--owner",
        "alice",
        "--label",
        "dr-of=prim1",
    ]);
    gw.cli_ok(&["container", "start", "prim1"]);
    let out = gw.cli(&["container", "start", "twin1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("container 'twin1' must not run on the same host as 'prim1' (label dr-of)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Through SSH the person is told the same, and nothing was started.
    let out = gw.ssh("alice", "alice@twin1", "true");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must not run on the same host as 'prim1'")
    );
    assert_eq!(gw.state_of("twin1"), "stopped");
    // With the primary stopped the twin starts, and now the primary is refused.
    gw.cli_ok(&["container", "stop", "prim1"]);
    gw.cli_ok(&["container", "start", "twin1"]);
    let out = gw.cli(&["container", "start", "prim1"]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("'prim1' must not run on the same host as 'twin1'"));
    gw.cli_ok(&["container", "stop", "twin1"]);
}
