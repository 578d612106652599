//! File transfer with the real OpenSSH `sftp` and `scp` (its SFTP mode and `-O`, the
//! legacy protocol) and `rsync` over ssh: 100 MiB round trips byte for byte, each file in
//! the audit log with its SHA-256, served by the image's `sftp-server` or the gateway's
//! own, and refused to a login whose policy has no `sftp`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gatehouse_e2e::{stderr, stdout, Gateway};

const SIZE: u64 = 100 * 1024 * 1024;

/// A random file of `SIZE` bytes and its SHA-256.
fn big_file(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("big.bin");
    let made = Command::new("head")
        .args(["-c", &SIZE.to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(&path).unwrap())
        .status()
        .unwrap();
    assert!(made.success());
    let sum = sha256(&path);
    (path, sum)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Waits until the audit log has a `kind` event for `path` (events are written as the
/// transfer's files close, alongside the client's exit); returns it.
fn file_event(gw: &Gateway, kind: &str, path: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(e) = gw
            .audit_events(kind)
            .into_iter()
            .rev()
            .find(|e| e["path"] == path)
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} event for {path} in:\n{}",
            gw.audit()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts the audit log records `path` moving `kind` way with `sum`, through `via`.
fn audited(gw: &Gateway, kind: &str, path: &str, sum: &str, via: &str) {
    let e = file_event(gw, kind, path);
    assert_eq!(e["sha256"], sum, "{e}");
    assert_eq!(e["size"], SIZE, "{e}");
    assert_eq!(e["via"], via, "{e}");
    assert_eq!(e["user"], "alice", "{e}");
    assert!(e["session"].is_string(), "{e}");
}

/// Uploads and downloads a 100 MiB file with `sftp`, then with `scp` in both of its
/// modes, checking each copy and each audit event.
fn round_trips(gw: &Gateway, container: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (big, sum) = big_file(dir.path());
    let remote = format!("alice@{container}@127.0.0.1");

    // sftp: put, get.
    let batch = dir.path().join("batch");
    let back = dir.path().join("back-sftp.bin");
    std::fs::write(
        &batch,
        format!(
            "put {} /tmp/sftp.bin\nget /tmp/sftp.bin {}\n",
            big.display(),
            back.display()
        ),
    )
    .unwrap();
    let out = gw
        .transfer_command("sftp", "alice")
        .arg("-b")
        .arg(&batch)
        .arg(&remote)
        .output()
        .unwrap();
    ok(&out, "sftp");
    assert_eq!(sha256(&back), sum);
    audited(gw, "file.write", "/tmp/sftp.bin", &sum, "sftp");
    audited(gw, "file.read", "/tmp/sftp.bin", &sum, "sftp");

    // scp over SFTP (OpenSSH's default) and the legacy protocol (-O).
    for (mode, flag, via) in [("sftp-mode", None, "sftp"), ("legacy", Some("-O"), "scp")] {
        let target = format!("/tmp/scp-{mode}.bin");
        let mut up = gw.transfer_command("scp", "alice");
        up.args(flag).arg(&big).arg(format!("{remote}:{target}"));
        ok(&up.output().unwrap(), &format!("scp {mode} upload"));
        let back = dir.path().join(format!("back-{mode}.bin"));
        let mut down = gw.transfer_command("scp", "alice");
        down.args(flag).arg(format!("{remote}:{target}")).arg(&back);
        ok(&down.output().unwrap(), &format!("scp {mode} download"));
        assert_eq!(sha256(&back), sum, "scp {mode}");
        audited(gw, "file.write", &target, &sum, via);
        audited(gw, "file.read", &target, &sum, via);
    }
    // The container holds what was sent.
    let out = gw.ssh(
        "alice",
        &format!("alice@{container}"),
        "sha256sum /tmp/sftp.bin /tmp/scp-legacy.bin",
    );
    ok(&out, "sha256sum in the container");
    assert_eq!(stdout(&out).matches(sum.as_str()).count(), 2);
}

#[test]
fn the_images_sftp_server_carries_sftp_and_scp_both_ways_with_file_level_audit() {
    let gw = Gateway::start();
    gw.create_container("tr1", "alice");
    round_trips(&gw, "tr1");
    // The session ran the image's own OpenSSH sftp-server.
    let start = gw
        .audit_events("session.start")
        .into_iter()
        .find(|e| e["subsystem"] == "sftp")
        .expect("an sftp session");
    assert_eq!(start["container"], "tr1");
}

#[test]
fn the_gateways_own_sftp_server_carries_the_same_transfers() {
    let gw = Gateway::start_with("[runtime]\nsftp_server = \"builtin\"\n");
    gw.create_container("tr2", "alice");
    round_trips(&gw, "tr2");
    // Operations besides reads and writes, and the login's permissions.
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch");
    std::fs::write(
        &batch,
        "mkdir /tmp/newdir\nrename /tmp/sftp.bin /tmp/newdir/moved.bin\nls /tmp/newdir\nrm /tmp/newdir/moved.bin\nrmdir /tmp/newdir\n-put /etc/hostname /etc/not-yours\n",
    )
    .unwrap();
    let out = gw
        .transfer_command("sftp", "alice")
        .arg("-b")
        .arg(&batch)
        .arg("alice@tr2@127.0.0.1")
        .output()
        .unwrap();
    ok(&out, "sftp operations");
    assert!(stdout(&out).contains("moved.bin"), "{}", stdout(&out));
    assert_eq!(file_event(&gw, "file.mkdir", "/tmp/newdir")["via"], "sftp");
    let renamed = gw.audit_events("file.rename");
    assert!(
        renamed
            .iter()
            .any(|e| e["from"] == "/tmp/sftp.bin" && e["to"] == "/tmp/newdir/moved.bin"),
        "{renamed:?}"
    );
    assert!(file_event(&gw, "file.remove", "/tmp/newdir/moved.bin")
        .get("error")
        .is_none());
    file_event(&gw, "file.rmdir", "/tmp/newdir");
    // alice may not write into /etc: refused by the container's own permissions, audited.
    let denied = file_event(&gw, "file.open", "/etc/not-yours");
    assert!(
        denied["error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("permission")),
        "{denied}"
    );
}

#[test]
fn rsync_over_ssh_round_trips_a_tree() {
    let gw = Gateway::start();
    gw.create_container("tr3", "alice");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/one.txt"), "one\n").unwrap();
    let blob: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(src.join("blob.bin"), &blob).unwrap();
    let ssh = format!(
        "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes -l alice@tr3",
        gw.port,
        gw.key("alice").display()
    );
    let rsync = |from: &str, to: &str| {
        Command::new("rsync")
            .args(["-a", "-e", &ssh, from, to])
            .output()
            .unwrap()
    };
    ok(
        &rsync(&format!("{}/", src.display()), "127.0.0.1:tree/"),
        "rsync up",
    );
    let back = dir.path().join("back");
    ok(
        &rsync("127.0.0.1:tree/", &format!("{}/", back.display())),
        "rsync down",
    );
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&src)
        .arg(&back)
        .output()
        .unwrap();
    ok(&diff, "diff");
    // Both runs are sessions whose command is rsync's server side.
    let rsyncs = gw
        .audit_events("session.start")
        .into_iter()
        .filter(|e| {
            e["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("rsync --server"))
        })
        .count();
    assert_eq!(rsyncs, 2);
}

#[test]
fn a_login_without_the_sftp_action_cannot_transfer_files() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("p.toml"),
        "[[allow]]\nname = \"no-files\"\nusers = [\"alice\"]\nowned = true\nactions = [\"shell\", \"exec\"]\n",
    )
    .unwrap();
    let gw = Gateway::start_with(&format!(
        "[policy]\npaths = [\"{}\"]\n",
        policies.path().display()
    ));
    gw.create_container("tr4", "alice");
    let ok_exec = gw.ssh("alice", "alice@tr4", "echo still-a-shell");
    ok(&ok_exec, "exec");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, "x").unwrap();
    let batch = dir.path().join("batch");
    std::fs::write(&batch, format!("put {} /tmp/f\n", local.display())).unwrap();
    let sftp = gw
        .transfer_command("sftp", "alice")
        .arg("-b")
        .arg(&batch)
        .arg("alice@tr4@127.0.0.1")
        .output()
        .unwrap();
    assert!(!sftp.status.success(), "sftp was let through");
    for flag in [None, Some("-O")] {
        let scp = gw
            .transfer_command("scp", "alice")
            .args(flag)
            .arg(&local)
            .arg("alice@tr4@127.0.0.1:/tmp/f")
            .output()
            .unwrap();
        assert!(!scp.status.success(), "scp {flag:?} was let through");
    }
    let nothing = gw.ssh(
        "alice",
        "alice@tr4",
        "test -e /tmp/f && echo there || echo absent",
    );
    assert_eq!(stdout(&nothing).trim(), "absent");
    let refusals: Vec<_> = gw
        .audit_events("policy.decision")
        .into_iter()
        .filter(|e| e["action"] == "sftp" && e["allowed"] == false)
        .collect();
    assert!(refusals.len() >= 3, "{}", gw.audit());
    assert!(gw.audit_events("file.write").is_empty());
}

#[test]
fn scp_and_sftp_through_proxyjump_are_audited_as_the_outer_login() {
    let gw = Gateway::start();
    gw.create_container("tr5", "alice");
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, gw.cli_ok(&["container", "hostkeys", "tr5"])).unwrap();
    // 127.0.0.1 is the gateway; tr5 is reached through it, its host key checked.
    let cfg = dir.path().join("config");
    std::fs::write(
        &cfg,
        format!(
            "Host 127.0.0.1\n  Port {}\n  User alice\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n\
             Host tr5\n  ProxyJump 127.0.0.1\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n",
            gw.port,
            gw.key("alice").display(),
            known.display()
        ),
    )
    .unwrap();
    let body: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let local = dir.path().join("j.bin");
    std::fs::write(&local, &body).unwrap();
    let sum = sha256(&local);
    let scp = Command::new("scp")
        .arg("-F")
        .arg(&cfg)
        .arg(&local)
        .arg("alice@tr5:/tmp/j.bin")
        .output()
        .unwrap();
    ok(&scp, "scp through ProxyJump");
    let batch = dir.path().join("batch");
    let back = dir.path().join("back.bin");
    std::fs::write(&batch, format!("get /tmp/j.bin {}\n", back.display())).unwrap();
    let sftp = Command::new("sftp")
        .arg("-F")
        .arg(&cfg)
        .arg("-b")
        .arg(&batch)
        .arg("alice@tr5")
        .output()
        .unwrap();
    ok(&sftp, "sftp through ProxyJump");
    assert_eq!(sha256(&back), sum);
    for kind in ["file.write", "file.read"] {
        let e = file_event(&gw, kind, "/tmp/j.bin");
        assert_eq!(e["sha256"], sum, "{e}");
        assert_eq!(e["user"], "alice", "{e}");
        assert_eq!(e["container"], "tr5", "{e}");
    }
}
