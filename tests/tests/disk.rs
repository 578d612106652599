//! A disk of a container's own (`--disk`): `df /` inside shows it, filling it fails
//! with ENOSPC inside while the host's filesystem and other containers are untouched,
//! it grows (stopped), does not shrink, and survives snapshots, backup and restore.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use gatehouse_e2e::{stderr, stdout, Gateway};

fn container_dir(gw: &Gateway, name: &str) -> PathBuf {
    gw.dir.path().join("state/containers").join(name)
}

/// `df` of `/` inside, in MiB: (size, used).
fn df(gw: &Gateway, name: &str) -> (u64, u64) {
    let out = gw.ssh(
        "alice",
        &format!("alice@root@{name}"),
        "df -m --output=size,used / | tail -1",
    );
    let text = stdout(&out);
    let mut nums = text
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let size = nums.next().unwrap_or(0);
    let used = nums.next().unwrap_or(0);
    assert!(size > 0, "df in {name}: {text}{}", stderr(&out));
    (size, used)
}

/// Whether anything is mounted from under the container's directory.
fn mounted_under(gw: &Gateway, name: &str) -> bool {
    let dir = container_dir(gw, name);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|p| p.starts_with(&*dir.to_string_lossy()))
    })
}

#[test]
fn filling_its_disk_fails_inside_and_leaves_the_host_and_other_containers_alone() {
    let gw = Gateway::start();
    gw.cli_ok(&[
        "container",
        "create",
        "small",
        "--owner",
        "alice",
        "--purpose",
        "e2e",
        "--disk",
        "96M",
    ]);
    gw.create_container("other", "alice");
    let (size, _) = df(&gw, "small");
    assert!(
        (70..=96).contains(&size),
        "df / says {size} MiB for a 96M disk"
    );

    let out = gw.ssh(
        "alice",
        "alice@root@small",
        "echo keep > /root/marker; dd if=/dev/zero of=/var/tmp/fill bs=1M count=300 2>&1; echo rc=$?",
    );
    let text = stdout(&out);
    assert!(
        text.contains("No space left on device") && text.contains("rc=1"),
        "filling a 96M disk with 300M:\n{text}{}",
        stderr(&out)
    );
    // What it wrote went into its disk image, nowhere else on the host.
    let image = container_dir(&gw, "small").join("disk.ext4");
    let allocated = std::fs::metadata(&image).unwrap().blocks() * 512;
    assert!(allocated <= 96 << 20, "the image holds {allocated} bytes");
    let layer = container_dir(&gw, "small").join("upper");
    assert!(
        !layer.exists(),
        "a layer on the host's filesystem: {}",
        layer.display()
    );

    // The other container writes as before; this one still runs and can free space.
    let out = gw.ssh(
        "alice",
        "alice@root@other",
        "dd if=/dev/zero of=/var/tmp/f bs=1M count=120 2>/dev/null && echo wrote",
    );
    assert_eq!(stdout(&out), "wrote\n", "{}", stderr(&out));
    let out = gw.ssh(
        "alice",
        "alice@root@small",
        "rm /var/tmp/fill && cat /root/marker",
    );
    assert_eq!(stdout(&out), "keep\n", "{}", stderr(&out));
    let show = gw.cli_ok(&["container", "show", "small"]);
    assert!(
        show.contains("disk=96M") && show.contains("MiB used of"),
        "{show}"
    );

    // Grows when stopped; never shrinks.
    let out = gw.cli(&["container", "set", "small", "--disk", "160M"]);
    assert!(
        !out.status.success() && stderr(&out).contains("stop it"),
        "{}",
        stderr(&out)
    );
    gw.cli_ok(&["container", "stop", "small"]);
    gw.cli_ok(&["container", "set", "small", "--disk", "160M"]);
    let (size, _) = df(&gw, "small");
    assert!(
        (130..=160).contains(&size),
        "df / says {size} MiB after growing to 160M"
    );
    let out = gw.cli(&["container", "set", "small", "--disk", "100M"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not shrink"), "{}", stderr(&out));
    let out = gw.cli(&["container", "set", "small", "--disk", "none"]);
    assert!(!out.status.success(), "the disk was taken away");

    gw.cli_ok(&["container", "delete", "small"]);
    assert!(!container_dir(&gw, "small").exists());
    assert!(!mounted_under(&gw, "small"), "a mount is left behind");
}

#[test]
fn a_disk_survives_stop_snapshot_backup_and_restore_and_a_stopped_container_can_get_one() {
    let gw = Gateway::start();
    gw.create_container("plain", "alice");
    let out = gw.ssh(
        "alice",
        "alice@root@plain",
        "echo before > /root/marker && echo ok",
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    // A running container does not get a disk: its files would move under it.
    let out = gw.cli(&["container", "set", "plain", "--disk", "128M"]);
    assert!(
        !out.status.success() && stderr(&out).contains("stop it"),
        "{}",
        stderr(&out)
    );
    gw.cli_ok(&["container", "stop", "plain"]);
    gw.cli_ok(&["container", "set", "plain", "--disk", "128M"]);
    let (size, _) = df(&gw, "plain");
    assert!(
        (100..=128).contains(&size),
        "df / says {size} MiB for a 128M disk"
    );
    let out = gw.ssh("alice", "alice@root@plain", "cat /root/marker");
    assert_eq!(stdout(&out), "before\n", "{}", stderr(&out));

    gw.cli_ok(&["container", "snapshot", "plain", "--name", "snap1"]);
    let backup = gw.dir.path().join("plain.tar.zst");
    gw.cli_ok(&["container", "backup", "plain", backup.to_str().unwrap()]);
    gw.cli_ok(&["container", "stop", "plain"]);
    gw.cli_ok(&[
        "container",
        "restore",
        backup.to_str().unwrap(),
        "--as",
        "copy",
    ]);
    let (size, _) = df(&gw, "copy");
    assert!(
        (100..=128).contains(&size),
        "the restored copy's disk is {size} MiB"
    );
    let out = gw.ssh("alice", "alice@root@copy", "cat /root/marker");
    assert_eq!(stdout(&out), "before\n", "{}", stderr(&out));
    assert!(container_dir(&gw, "plain")
        .join("snapshots/snap1/upper/root/marker")
        .exists());
}

#[test]
fn a_disk_too_small_is_refused_before_anything_is_made() {
    let gw = Gateway::start();
    let out = gw.cli(&[
        "container",
        "create",
        "tiny",
        "--owner",
        "alice",
        "--purpose",
        "e2e",
        "--disk",
        "1M",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least"), "{}", stderr(&out));
    assert!(
        !container_dir(&gw, "tiny").exists(),
        "a refused create left files"
    );
}
