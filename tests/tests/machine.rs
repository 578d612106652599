//! Containers that behave like VMs: the full image boots its own systemd, services come
//! back after a restart, `reboot` inside starts the container again with its files, and
//! `poweroff` stops it.

use std::time::{Duration, Instant};

use gatehouse_e2e::{stderr, stdout, Gateway};

/// A gateway whose state has the full image (systemd) as `debian-12-full`.
fn gateway() -> Gateway {
    let gw = Gateway::start();
    gatehouse_e2e::link_full_image(&gw.dir.path().join("state"));
    gw
}

/// Runs `command` as root in `name` until it prints `want` (the container may still be
/// booting, or coming back from a reboot); the last output otherwise.
fn until(gw: &Gateway, name: &str, command: &str, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = gw.ssh("alice", &format!("alice@root@{name}"), command);
        last = format!("{}{}", stdout(&out), stderr(&out));
        if stdout(&out).trim() == want {
            return last;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    last
}

/// Like [`until`], failing the test with what was last seen if `want` never comes.
fn expect_soon(gw: &Gateway, name: &str, command: &str, want: &str, secs: u64) {
    let seen = until(gw, name, command, want, secs);
    assert_eq!(seen.trim(), want, "`{command}` in {name}: {seen}");
}

/// What a failing test says of LXCFS: its processes, its mount, its log.
fn lxcfs_state() -> String {
    let procs = std::process::Command::new("pgrep")
        .args(["-a", "lxcfs"])
        .output()
        .map(|o| stdout(&o))
        .unwrap_or_default();
    let mounts: String = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("lxcfs"))
        .map(|l| format!("{l}\n"))
        .collect();
    let log = std::fs::read_to_string("/run/gatehouse/lxcfs.log").unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    format!(
        "--- lxcfs processes:\n{procs}--- lxcfs mounts:\n{mounts}--- lxcfs.log (last lines, newest first):\n{}",
        tail.join("\n")
    )
}

/// When `name` started, as `container list --json` says (`None` when stopped).
fn started(gw: &Gateway, name: &str) -> Option<String> {
    let json = gw.cli_ok(&["container", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json).expect("list --json");
    rows.as_array()?
        .iter()
        .find(|r| r["name"] == name)?
        .get("started")?
        .as_str()
        .map(str::to_string)
}

/// Waits (without logging in, which would start it) until `name` runs with a start time
/// other than `before`.
fn restarted_by_itself(gw: &Gateway, name: &str, before: &Option<String>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let now = started(gw, name);
        if now.is_some() && now != *before {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn systemd_boots_services_come_back_and_reboot_and_poweroff_act_like_a_vms() {
    let gw = gateway();
    gw.cli_ok(&[
        "container",
        "create",
        "vm1",
        "--owner",
        "alice",
        "--image",
        "debian-12-full",
    ]);
    // PID 1 is the image's systemd, and it reaches `running` (a login that starts the
    // container may come before systemd's bus is up, as on LXD).
    expect_soon(
        &gw,
        "vm1",
        "timeout 30 systemctl is-system-running --wait",
        "running",
        60,
    );
    let out = gw.ssh(
        "alice",
        "alice@root@vm1",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; readlink /proc/1/exe; \
         systemctl --failed --no-legend --plain; \
         awk '$5 ~ /^\\/sys\\/fs\\/cgroup\\/(systemd|memory)$/ {print $5, substr($6, 1, 2)}' /proc/self/mountinfo | sort",
    );
    assert_eq!(
        stdout(&out),
        "/sbin/init \n/usr/lib/systemd/systemd\n/sys/fs/cgroup/memory ro\n/sys/fs/cgroup/systemd rw\n",
        "{}",
        stderr(&out)
    );
    // No host path shows in what PID 1 or anyone else sees of the mounts.
    let out = gw.ssh(
        "alice",
        "alice@root@vm1",
        "cat /proc/1/mountinfo /proc/self/mountinfo; mount; findmnt -n -o SOURCE,TARGET /",
    );
    let seen = stdout(&out);
    let state = gw.dir.path().to_string_lossy().into_owned();
    for host in [
        state.as_str(),
        "/var/lib/lxcfs",
        "/var/cache/gatehouse",
        "/gatehouse/",
    ] {
        assert!(!seen.contains(host), "{host} shows inside:\n{seen}");
    }
    assert!(
        seen.contains("/proc/meminfo"),
        "LXCFS binds missing:\n{seen}\n{}",
        lxcfs_state()
    );

    // An enabled service survives a restart of the container.
    let out = gw.ssh(
        "alice",
        "alice@root@vm1",
        "cat > /etc/systemd/system/hello.service <<'UNIT'
[Unit]
Description=hello
[Service]
ExecStart=/bin/sh -c 'echo hello-from-unit; exec sleep infinity'
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable --now hello 2>/dev/null; systemctl is-active hello",
    );
    assert_eq!(stdout(&out), "active\n", "{}", stderr(&out));
    gw.cli_ok(&["container", "restart", "vm1"]);
    expect_soon(
        &gw,
        "vm1",
        "systemctl is-active hello; journalctl -b -u hello --no-pager -q | grep -c hello-from-unit",
        "active\n1",
        60,
    );
    // The owner reads the service's journal as themself.
    let out = gw.ssh(
        "alice",
        "alice@vm1",
        "id -un; journalctl -u hello --no-pager -q | grep -c hello-from-unit",
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("alice\n") && text.trim_end() != "alice\n0",
        "{text}{}",
        stderr(&out)
    );

    // `reboot` inside: the container comes back by itself, with its files and without
    // its /run.
    let before = started(&gw, "vm1");
    assert!(before.is_some());
    let _ = gw.ssh(
        "alice",
        "alice@root@vm1",
        "touch /root/kept /run/forgotten; systemctl reboot",
    );
    assert!(
        restarted_by_itself(&gw, "vm1", &before).is_some(),
        "not running again after reboot: {:?}",
        started(&gw, "vm1")
    );
    expect_soon(
        &gw,
        "vm1",
        "test -e /root/kept && test ! -e /run/forgotten && systemctl is-active hello",
        "active",
        60,
    );

    // `poweroff` inside stops it, and it stays stopped until the next login.
    let _ = gw.ssh("alice", "alice@root@vm1", "systemctl poweroff");
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.state_of("vm1") != "stopped" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(gw.state_of("vm1"), "stopped");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(gw.state_of("vm1"), "stopped", "it came back by itself");

    // The same container on the built-in init, when asked.
    gw.cli_ok(&["container", "set", "vm1", "--init", "builtin"]);
    assert!(gw
        .cli_ok(&["container", "show", "vm1"])
        .contains("init:       builtin"));
    let out = gw.ssh(
        "alice",
        "alice@root@vm1",
        "cat /proc/1/comm; test -d /run/systemd/system && echo systemd || echo no-systemd",
    );
    assert_eq!(stdout(&out), "init\nno-systemd\n", "{}", stderr(&out));
}

#[test]
fn free_and_uptime_show_the_containers_memory_limit_and_its_own_uptime() {
    let gw = Gateway::start();
    gw.create_container("small", "alice");
    gw.cli_ok(&["container", "set", "small", "--memory", "256M"]);
    let out = gw.ssh(
        "alice",
        "alice@small",
        "free -m | awk '/^Mem:/ {print $2}'; cut -d' ' -f1 /proc/uptime; grep -c . /proc/cpuinfo >/dev/null && echo cpuinfo",
    );
    let text = stdout(&out);
    let mut lines = text.lines();
    let total: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(
        (200..=256).contains(&total),
        "free -m says {total} MiB with a 256M limit:\n{text}{}\n{}",
        stderr(&out),
        lxcfs_state()
    );
    let uptime: f64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(-1.0);
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (0.0..60.0).contains(&uptime) && uptime < host,
        "container uptime {uptime} s, host {host} s"
    );
    assert_eq!(lines.next(), Some("cpuinfo"), "{text}");

    // nproc counts the CPUs a limit gives (as under LXD), in sessions and services alike.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (limit, want) = if cpus > 1 { ("1", 1) } else { ("0.5", 1) };
    gw.cli_ok(&["container", "set", "small", "--cpus", limit]);
    gw.cli_ok(&["container", "restart", "small"]);
    let out = gw.ssh(
        "alice",
        "alice@small",
        "nproc; nproc --all >/dev/null && grep Cpus_allowed_list /proc/1/status | cut -f2",
    );
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(want.to_string().as_str()),
        "{text}{}",
        stderr(&out)
    );
    let init_cpus = lines.next().unwrap_or_default();
    assert!(
        !init_cpus.contains(',') && !init_cpus.contains('-'),
        "init may run on {init_cpus}"
    );
    gw.cli_ok(&["container", "set", "small", "--cpus", "none"]);
    gw.cli_ok(&["container", "restart", "small"]);
    let out = gw.ssh("alice", "alice@small", "nproc");
    assert_eq!(stdout(&out).trim(), cpus.to_string(), "{}", stderr(&out));
}

#[test]
fn container_root_under_systemd_cannot_leave_or_lift_its_resource_cgroups() {
    let gw = gateway();
    gw.cli_ok(&[
        "container",
        "create",
        "vm2",
        "--owner",
        "alice",
        "--image",
        "debian-12-full",
        "--memory",
        "300M",
    ]);
    // The attacker is root inside, with systemd's hierarchy writable: it tries to move
    // itself out of the memory cgroup, to raise its limit, and to mount the memory
    // hierarchy afresh to do either there.
    let script = "limit=/sys/fs/cgroup/memory/memory.limit_in_bytes; cat $limit; \
         (echo $$ > /sys/fs/cgroup/memory/cgroup.procs) 2>/dev/null && echo moved || echo stayed; \
         (echo 9999999999 > $limit) 2>/dev/null && echo raised || echo kept; \
         mkdir -p /mnt/m && mount -t cgroup -o memory none /mnt/m 2>/dev/null && { \
           (echo 9999999999 > /mnt/m/memory.limit_in_bytes) 2>/dev/null && echo raised-again || echo kept-again; \
           mkdir /mnt/m/escape 2>/dev/null && echo made || echo refused; } || echo no-mount; \
         mkdir /sys/fs/cgroup/systemd/mine && echo own-cgroup; cat $limit";
    expect_soon(
        &gw,
        "vm2",
        "systemctl is-system-running --wait",
        "running",
        60,
    );
    let out = gw.ssh("alice", "alice@root@vm2", script);
    let text = stdout(&out);
    eprintln!("what container root got:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    let limit = (300u64 << 20).to_string();
    assert_eq!(
        lines.first(),
        Some(&limit.as_str()),
        "{text}{}",
        stderr(&out)
    );
    assert!(
        lines.contains(&"stayed") && lines.contains(&"kept"),
        "{text}"
    );
    assert!(
        lines.contains(&"no-mount")
            || (lines.contains(&"kept-again") && lines.contains(&"refused")),
        "{text}"
    );
    // What systemd needs it has: a cgroup of its own under the delegated hierarchy.
    assert!(lines.contains(&"own-cgroup"), "{text}{}", stderr(&out));
    assert_eq!(lines.last(), Some(&limit.as_str()), "{text}");
}

#[test]
fn a_machine_running_its_own_init_is_not_stopped_for_want_of_logins() {
    let gw = Gateway::start_with("[runtime]\nidle_stop = \"2s\"\n");
    gatehouse_e2e::link_full_image(&gw.dir.path().join("state"));
    gw.create_container("lean", "alice");
    gw.cli_ok(&[
        "container",
        "create",
        "server",
        "--owner",
        "alice",
        "--image",
        "debian-12-full",
    ]);
    for name in ["lean", "server"] {
        let out = gw.ssh("alice", &format!("alice@{name}"), "echo up");
        assert_eq!(stdout(&out), "up\n", "{name}: {}", stderr(&out));
    }
    // The built-in init's container has nothing running without a session: it stops.
    assert!(
        gw.wait_for_state("lean", "stopped", 15),
        "the idle lean container never stopped"
    );
    // The one booting systemd runs services: it keeps running (well past its idle time),
    // unless told otherwise.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(gw.state_of("server"), "running");
    gw.cli_ok(&["container", "set", "server", "--idle-stop", "2s"]);
    gw.cli_ok(&["container", "restart", "server"]);
    assert!(
        gw.wait_for_state("server", "stopped", 15),
        "an explicit idle stop was not honoured"
    );
}

#[test]
fn an_init_that_reboots_at_once_is_left_stopped_rather_than_looping() {
    let gw = Gateway::start();
    gw.create_container("loop", "alice");
    // An init of the container's own that counts its boots and reboots at once
    // (reboot(2), LINUX_REBOOT_CMD_RESTART, through perl-base's syscall).
    let out = gw.ssh(
        "alice",
        "alice@root@loop",
        "printf '#!/bin/sh\\necho boot >> /boots\\nexec perl -e \"syscall(169, 0xfee1dead, 672274793, 0x01234567)\"\\n' > /sbin/init; chmod 755 /sbin/init; echo ok",
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    gw.cli_ok(&["container", "stop", "loop"]);
    gw.cli_ok(&["container", "set", "loop", "--init", "image"]);
    gw.cli_ok(&["container", "start", "loop"]);
    let dir = gw.dir.path().join("state/containers/loop");
    let log = || std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log().contains("left stopped") {
        assert!(Instant::now() < deadline, "still looping:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gw.wait_for_state("loop", "stopped", 10));
    let boots = std::fs::read_to_string(dir.join("upper/boots")).unwrap();
    assert_eq!(boots.lines().count(), 6, "{boots}");
    // And it stays so.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(gw.state_of("loop"), "stopped");
    let again = std::fs::read_to_string(dir.join("upper/boots")).unwrap();
    assert_eq!(again, boots);
}
