//! What is particular to the LXD backend, against a real LXD daemon: the inventory lives
//! in LXD (a new gateway with empty state sees it), limits change live, placement rules
//! hold on one LXD host, file transfer works, and an unreachable LXD is a clear refusal.

use gatehouse_e2e::{lxd, stderr, stdout, Gateway};

fn lxc_get(project: &str, name: &str, key: &str) -> String {
    let out = std::process::Command::new("lxc")
        .args(["config", "get", "--project", project, name, key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_inventory_lives_in_lxd_and_survives_a_new_gateway() {
    let project = lxd::new_project();
    {
        let gw = Gateway::start_lxd("", Some(&project));
        gw.create_container("inv1", "alice");
        gw.cli_ok(&[
            "container",
            "set",
            "inv1",
            "--purpose",
            "shop backend",
            "--label",
            "env=prod",
            "--memory",
            "512M",
            "--pids",
            "300",
        ]);
        let out = gw.ssh("alice", "alice@inv1", "echo kept > ~/f; hostname");
        assert_eq!(stdout(&out), "inv1\n", "{}", stderr(&out));
        assert_eq!(lxc_get(&project, "inv1", "user.gatehouse.owner"), "alice");
        assert_eq!(lxc_get(&project, "inv1", "limits.memory"), "536870912");
        // Live: the running instance's limit changes at once.
        gw.cli_ok(&["container", "set", "inv1", "--memory", "300M"]);
        assert_eq!(lxc_get(&project, "inv1", "limits.memory"), "314572800");
        assert_eq!(
            lxc_get(&project, "inv1", "user.gatehouse.label.env"),
            "prod"
        );
    }
    // A second gateway with a fresh state directory, on the same LXD project.
    let gw = Gateway::start_lxd("", Some(&project));
    let show = gw.cli_ok(&["container", "show", "inv1"]);
    for want in ["alice", "shop backend", "env=prod", "300"] {
        assert!(show.contains(want), "{want} missing from:\n{show}");
    }
    assert!(!show.contains("never"), "the last login was lost:\n{show}");
    let out = gw.ssh("alice", "alice@inv1", "cat ~/f");
    assert_eq!(stdout(&out), "kept\n", "{}", stderr(&out));
    gw.cli_ok(&["container", "set", "inv1", "--label", "env="]);
    assert_eq!(lxc_get(&project, "inv1", "user.gatehouse.label.env"), "");
    drop(gw);
    lxd::drop_project(&project);
}

#[test]
fn disaster_recovery_twins_never_run_together_on_one_lxd_host() {
    let gw = Gateway::start_lxd("", None);
    gw.create_container("app1", "alice");
    gw.cli_ok(&[
        "container",
        "create",
        "app1-dr",
        "--owner",
        "alice",
        "--label",
        "dr-of=app1",
    ]);
    let out = gw.ssh("alice", "alice@app1", "true");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gw.ssh("alice", "alice@app1-dr", "true");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("must not run on the same host as 'app1'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(gw.state_of("app1-dr"), "stopped");
}

#[test]
fn sftp_works_and_is_audited_on_lxd() {
    let gw = Gateway::start_lxd("", None);
    gw.create_container("files1", "alice");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("up.bin");
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &body).unwrap();
    let out = gw
        .transfer_command("scp", "alice")
        .arg(&local)
        .arg("alice@files1@127.0.0.1:/tmp/up.bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sum = stdout(&gw.ssh("alice", "alice@files1", "sha256sum < /tmp/up.bin"));
    let sum = sum
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(sum.len(), 64);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if gw
            .audit_events("file.write")
            .iter()
            .any(|e| e["path"] == "/tmp/up.bin" && e["sha256"] == sum.as_str())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", gw.audit());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The image's server is found where other distributions keep it…
    let out = gw.ssh(
        "alice",
        "alice@root@files1",
        "mv /usr/lib/openssh/sftp-server /usr/libexec/sftp-server",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let back = dir.path().join("back.bin");
    let fetch = |to: &std::path::Path| {
        gw.transfer_command("scp", "alice")
            .arg("alice@files1@127.0.0.1:/tmp/up.bin")
            .arg(to)
            .output()
            .unwrap()
    };
    let out = fetch(&back);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&back).unwrap() == body);
    // …and an image without one says so.
    gw.ssh("alice", "alice@root@files1", "rm /usr/libexec/sftp-server");
    let out = fetch(&dir.path().join("never.bin"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this image has no sftp-server"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_lxd_is_a_clear_refusal() {
    let mut gw = Gateway::start_custom(
        None,
        "",
        "[runtime]\nkind = \"lxd\"\n[runtime.lxd]\nsocket = \"/nonexistent/lxd.socket\"\n",
    );
    let out = gw.ssh("alice", "alice@web01", "true");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("the container runtime (lxd) is unavailable"),
        "{}",
        stderr(&out)
    );
    assert!(gw.log().contains("is LXD running?"), "{}", gw.log());
    assert!(
        gw.audit_events("session.refused")
            .iter()
            .any(|e| e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("cannot reach the daemon"))),
        "{}",
        gw.audit()
    );
    let out = gw.cli(&["container", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the daemon"),
        "{}",
        stderr(&out)
    );
    assert!(gw.is_alive());
}

#[test]
fn an_idle_instance_is_stopped_and_started_again_on_demand() {
    let gw = Gateway::start_lxd("idle_stop = \"2s\"\n", None);
    gw.create_container("idle1", "alice");
    let out = gw.ssh("alice", "alice@idle1", "echo up");
    assert_eq!(stdout(&out), "up\n", "{}", stderr(&out));
    assert!(
        gw.wait_for_state("idle1", "stopped", 40),
        "still {} after its idle time:\n{}",
        gw.state_of("idle1"),
        gw.log()
    );
    let out = gw.ssh("alice", "alice@idle1", "echo again");
    assert_eq!(stdout(&out), "again\n", "{}", stderr(&out));
}

#[test]
fn on_a_real_cluster_twins_are_placed_on_different_members_and_run_together() {
    let cluster = lxd::Cluster::start();
    let gw = Gateway::start_custom(
        None,
        "",
        &format!(
            "[runtime]\nkind = \"lxd\"\n[runtime.lxd]\nsocket = \"{}\"\n",
            cluster.socket()
        ),
    );
    gw.create_container("web01", "alice");
    gw.cli_ok(&[
        "container",
        "create",
        "web01-dr",
        "--owner",
        "alice",
        "--label",
        "dr-of=web01",
    ]);
    let (a, b) = (cluster.location("web01"), cluster.location("web01-dr"));
    assert!(
        ["a", "b"].contains(&a.as_str()) && ["a", "b"].contains(&b.as_str()) && a != b,
        "web01 on {a:?}, web01-dr on {b:?}"
    );
    // container list names the host; both run at once, each on its own member.
    let list = gw.cli_ok(&["container", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("web01-dr ") && l.split_whitespace().any(|w| w == b)),
        "{list}"
    );
    for name in ["web01", "web01-dr"] {
        let out = gw.ssh("alice", &format!("alice@{name}"), "hostname");
        assert_eq!(stdout(&out), format!("{name}\n"), "{}", stderr(&out));
    }
    assert_eq!(gw.state_of("web01"), "running");
    assert_eq!(gw.state_of("web01-dr"), "running");
    // A container whose twins occupy both members cannot be placed: refused, with why.
    gw.cli_ok(&["container", "set", "web01", "--label", "dr-of=n3"]);
    gw.cli_ok(&["container", "set", "web01-dr", "--label", "dr-of=n3"]);
    let out = gw.cli(&["container", "create", "n3", "--owner", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no online cluster member can take 'n3'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(gw.cli(&["container", "show", "n3"]).status.code(), Some(1));
    drop(gw);
}

#[test]
fn a_remote_lxd_is_reached_over_https_with_a_client_certificate_and_a_pinned_certificate() {
    let certs = lxd::remote();
    let endpoint = |(cert, key): &(String, String), server: &str| {
        format!(
            "url = \"https://{}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\nserver_cert = \"{server}\"",
            lxd::HTTPS
        )
    };
    let gw = Gateway::start_lxd_at(&endpoint(&certs.client, &certs.server), "", None);
    gw.create_container("far1", "alice");
    // Exec over TLS websockets: output, separate stderr, exit status.
    let out = gw.ssh(
        "alice",
        "alice@far1",
        "hostname; id -un; echo oops >&2; exit 3",
    );
    assert_eq!(stdout(&out), "far1\nalice\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("oops"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(3));
    // A terminal too.
    let out = gw
        .ssh_command("alice", "alice@far1")
        .args(["-tt", "tty; stty size"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(stdout(&out).contains("/dev/pts/"), "{}", stderr(&out));
    let list = gw.cli_ok(&["container", "list"]);
    assert!(list.contains("far1") && list.contains("running"), "{list}");

    // A daemon whose certificate is not the pinned one is never talked to.
    let project = gw.lxd_project.clone().unwrap();
    let pinned_wrong = Gateway::start_lxd_at(
        &endpoint(&certs.client, &certs.impostor),
        "",
        Some(&project),
    );
    let out = pinned_wrong.cli(&["container", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not the one pinned in [runtime.lxd] server_cert"),
        "{}",
        stderr(&out)
    );
    let out = pinned_wrong.ssh("alice", "alice@far1", "true");
    assert!(
        stderr(&out).contains("the container runtime (lxd) is unavailable"),
        "{}",
        stderr(&out)
    );
    assert!(
        pinned_wrong
            .audit_events("session.refused")
            .iter()
            .any(|e| e["reason"].as_str().is_some_and(|r| r.contains("pinned"))),
        "{}",
        pinned_wrong.audit()
    );

    // A client certificate the daemon does not trust gets LXD's refusal, explained.
    let stranger = Gateway::start_lxd_at(
        &endpoint(&certs.stranger, &certs.server),
        "",
        Some(&project),
    );
    let out = stranger.cli(&["container", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not trust this gateway's certificate"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_instance_another_gateway_runs_a_session_in_is_not_stopped_as_idle() {
    let a = Gateway::start_lxd("idle_stop = \"2s\"\n", None);
    let project = a.lxd_project.clone().unwrap();
    let b = Gateway::start_lxd("", Some(&project));
    a.create_container("idle2", "alice");
    let out = a.ssh("alice", "alice@idle2", "echo up");
    assert_eq!(stdout(&out), "up\n", "{}", stderr(&out));
    // B's session outlives A's idle time and A's first sweeps (every 10 s).
    let long = b
        .ssh_command("alice", "alice@idle2")
        .arg("sleep 24; echo done")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(22));
    assert_eq!(a.state_of("idle2"), "running", "{}", a.log());
    assert!(
        a.log().contains("a session runs in it"),
        "A never looked:\n{}",
        a.log()
    );
    let out = long.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "done\n", "B's session was cut");
    // Once nobody uses it, A stops it.
    assert!(
        a.wait_for_state("idle2", "stopped", 40),
        "still {}:\n{}",
        a.state_of("idle2"),
        a.log()
    );
}

#[test]
fn a_container_another_gateway_recreated_gets_its_accounts_again() {
    let a = Gateway::start_lxd("", None);
    let project = a.lxd_project.clone().unwrap();
    let b = Gateway::start_lxd("", Some(&project));
    a.create_container("same1", "alice");
    let out = a.ssh("alice", "alice@same1", "id -un; touch ~/old");
    assert_eq!(stdout(&out), "alice\n", "{}", stderr(&out));
    // B replaces it under the same name; A has served it before and must not trust
    // what it learned then.
    b.cli_ok(&["container", "delete", "same1"]);
    b.create_container("same1", "alice");
    let out = a.ssh("alice", "alice@same1", "id -un; ls ~");
    assert_eq!(stdout(&out), "alice\n", "{}", stderr(&out));
}

#[test]
fn a_rootfs_archive_is_imported_into_lxds_image_store() {
    let gw = Gateway::start_lxd("", None);
    let dir = tempfile::tempdir().unwrap();
    // A compressed LXD image (not a plain unified tarball): repacked, then published.
    let export = dir.path().join("debian");
    let run = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
    };
    run(&format!(
        "lxc image export debian-12 {0} >/dev/null && zstd -q -1 -T0 --rm {0}.tar -o {0}.tar.zst",
        export.display()
    ));
    let name = format!("imp-{}", std::process::id());
    let file = format!("{}.tar.zst", export.display());
    gw.cli_ok(&["image", "import", &name, &file]);
    assert!(gw.cli_ok(&["image", "list"]).contains(&name));
    gw.cli_ok(&[
        "container",
        "create",
        "imp1",
        "--owner",
        "alice",
        "--image",
        &name,
    ]);
    let out = gw.ssh("alice", "alice@imp1", "hostname; id -un");
    let cleanup = |gw: &Gateway| {
        gw.cli(&["container", "delete", "imp1"]);
        gw.cli(&["image", "delete", &name]);
    };
    if stdout(&out) != "imp1\nalice\n" {
        cleanup(&gw);
        panic!("{}{}", stdout(&out), stderr(&out));
    }
    // Something LXD cannot boot is refused before it reaches the store.
    let bare = dir.path().join("bare.tar");
    run(&format!(
        "mkdir -p {0}/etc && echo x > {0}/etc/hostname && tar -C {0} -cf {1} etc",
        dir.path().join("bare").display(),
        bare.display()
    ));
    let out = gw.cli(&["image", "import", "bare1", bare.to_str().unwrap()]);
    cleanup(&gw);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no /sbin/init"),
        "{}",
        stderr(&out)
    );
    assert!(!gw.cli_ok(&["image", "list"]).contains("bare1"));
}

/// Item 4 on LXD: one instance's root is nobody in another. Each instance, a restored
/// copy of one included, maps its ids 0-65535 onto a host range no other instance (of
/// any project) uses.
#[test]
fn each_instance_and_a_restored_copy_get_a_host_id_range_of_their_own() {
    let gw = Gateway::start_lxd("", None);
    let project = gw.lxd_project.clone().unwrap();
    let range = |name: &str| {
        let out = gw.ssh("alice", &format!("alice@{name}"), "cat /proc/self/uid_map");
        let text = stdout(&out);
        let fields: Vec<u64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        assert_eq!(fields.len(), 3, "{text}{}", stderr(&out));
        assert_eq!((fields[0], fields[2]), (0, 65536), "{text}");
        fields[1]
    };
    gw.create_container("id1", "alice");
    gw.create_container("id2", "alice");
    let (a, b) = (range("id1"), range("id2"));
    assert!(a.abs_diff(b) >= 65536, "overlapping ranges {a} and {b}");
    assert_eq!(lxc_get(&project, "id1", "security.idmap.isolated"), "true");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("id1.tar.gz");
    gw.cli_ok(&["container", "backup", "id1", file.to_str().unwrap()]);
    gw.cli_ok(&[
        "container",
        "restore",
        file.to_str().unwrap(),
        "--as",
        "id3",
    ]);
    let c = range("id3");
    for other in [a, b] {
        assert!(c.abs_diff(other) >= 65536, "the copy shares {other}: {c}");
    }
}

/// Item 8: the forwarded agent's socket used to be chmodded by path after `bind`, in a
/// directory of the instance's `/tmp`; container root, watching `/tmp`, swapped the
/// directory for one of its own whose `agent.sock` is a symlink to a host file, and host
/// root chmodded that file. The attack is run for the length of several agent sessions.
#[test]
fn container_root_swapping_the_agent_directory_cannot_make_the_host_chmod_its_files() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::{Command, Stdio};
    let gw = Gateway::start_lxd("", None);
    gw.create_container("ag1", "alice");
    let host = tempfile::tempdir().unwrap();
    let target = host.path().join("target");
    std::fs::write(&target, "host file\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let attack = format!(
        r#"cat > /root/swap.sh <<'END'
end=$(( $(date +%s) + 40 ))
while [ "$(date +%s)" -lt "$end" ]; do
  for d in /tmp/gatehouse-agent-*; do
    case "$d" in *'*'*|*.moved) continue;; esac
    if mv "$d" "$d.moved" 2>/dev/null; then
      mkdir -p "$d" && ln -s {target} "$d/agent.sock" && echo swapped >> /root/swap.log
    else
      echo refused >> /root/swap.log
    fi
  done
done
END
setsid nohup sh /root/swap.sh >/dev/null 2>&1 </dev/null &
echo started"#,
        target = target.display()
    );
    let out = gw.ssh("alice", "alice@root@ag1", &attack);
    assert_eq!(stdout(&out), "started\n", "{}", stderr(&out));
    let sock = host.path().join("agent.sock");
    let _agent = gatehouse_e2e::Kill(
        Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let added = Command::new("ssh-add")
        .arg(gw.key("alice"))
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    // Container root owns /tmp, so it can move the directory away (the agent of that
    // session then is not where SSH_AUTH_SOCK says: its own doing, in its own
    // container); the gateway bound and chmodded by descriptor in the directory it
    // made, so nothing reaches the host's file.
    for _ in 0..5 {
        let out = gw
            .ssh_command("alice", "alice@ag1")
            .args(["-A", "ssh-add -l >/dev/null; sleep 1; echo done"])
            .env("SSH_AUTH_SOCK", &sock)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(stdout(&out), "done\n", "{}", stderr(&out));
    }
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o644,
        "the host chmodded its own file through the swap"
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "the host chowned its own file"
    );
    let log = gw.ssh("alice", "alice@root@ag1", "cat /root/swap.log");
    let log = stdout(&log);
    assert!(
        log.contains("swapped") || log.contains("refused"),
        "the attack never saw the directory: {log}"
    );
}
