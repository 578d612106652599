//! The attacks an outside review made on "the host is the hypervisor", each replayed as
//! the attacker would and shown to fail. Each test is named after its attack.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use gatehouse_e2e::{stderr, stdout, Gateway};

fn policy_gateway(policy: &str) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("p.toml"), policy).unwrap();
    let gw = Gateway::start_with(&format!("[policy]\npaths = [\"{}\"]\n", policies.display()));
    (dir, gw)
}

fn upper(gw: &Gateway, container: &str) -> PathBuf {
    gw.dir
        .path()
        .join("state/containers")
        .join(container)
        .join("upper")
}

/// Runs `sh -c script` as host user and group `id`, without supplementary groups.
fn as_host_user(id: u32, script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={id}"),
            &format!("--regid={id}"),
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

/// Runs `sh -c script` as the host's unprivileged `nobody`.
fn as_nobody(script: &str) -> std::process::Output {
    as_host_user(65534, script)
}

/// Makes a device node (as the host's root, the way an old image, an import or a restore
/// would have left one in a container's files).
fn plant_device(dir: &Path, name: &str, major: u64, minor: u64, owner: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let out = Command::new("mknod")
        .args(["-m", "666"])
        .arg(&path)
        .args(["c", &major.to_string(), &minor.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::os::unix::fs::lchown(&path, Some(owner), Some(owner)).unwrap();
    std::os::unix::fs::lchown(dir, Some(owner), Some(owner)).unwrap();
}

#[test]
fn container_root_unmounting_dev_cannot_open_device_nodes_in_its_files() {
    let gw = Gateway::start();
    gw.create_container("dev1", "alice");
    // The container's root on the host (its files belong to it), as `id -u` maps it.
    let out = gw.ssh("alice", "alice@root@dev1", "touch /owner-probe");
    assert!(out.status.success(), "{}", stderr(&out));
    let base = std::fs::metadata(upper(&gw, "dev1").join("owner-probe"))
        .unwrap()
        .uid();
    // The host console (5:1) and the kernel log (1:11), as debootstrap's /dev or a
    // crafted archive would have put them in the container's files.
    let planted = upper(&gw, "dev1").join("srv/devs");
    plant_device(&planted, "console", 5, 1, base);
    plant_device(&planted, "kmsg", 1, 11, base);
    let marker = format!("gatehouse-attack-{}", std::process::id());
    let script = format!(
        "umount -l /dev 2>&1; ls -l /srv/devs; \
         timeout 5 head -c1 /srv/devs/console >/dev/null 2>&1; [ $? -ne 1 ] && echo console=opened || echo console=refused; \
         (echo {marker} > /srv/devs/kmsg) 2>/dev/null && echo kmsg=written || echo kmsg=refused"
    );
    let out = gw.ssh("alice", "alice@root@dev1", &script);
    let text = stdout(&out);
    assert!(text.contains("console=refused"), "{text}{}", stderr(&out));
    assert!(text.contains("kmsg=refused"), "{text}");
    let dmesg = Command::new("dmesg").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&dmesg.stdout).contains(&marker),
        "the container wrote to the host's kernel log"
    );
    // The overlay is nodev, and the flag is locked: container root cannot remount it away.
    let out = gw.ssh(
        "alice",
        "alice@root@dev1",
        "mount -o remount,dev / 2>/dev/null && echo remounted || echo locked; grep ' / ' /proc/self/mountinfo",
    );
    let text = stdout(&out);
    assert!(text.contains("locked"), "{text}");
    assert!(text.contains("nodev"), "{text}");
}

#[test]
fn a_crafted_restore_archive_cannot_plant_a_device_node() {
    let gw = Gateway::start();
    gw.create_container("bk1", "alice");
    assert!(gw.ssh("alice", "alice@bk1", "true").status.success());
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.tar.zst");
    gw.cli_ok(&["container", "backup", "bk1", good.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(&good).unwrap().permissions().mode() & 0o077,
        0,
        "a backup holds the container's secrets"
    );
    // Unpack it, add /dev/kmsg (1:11) to the layer, pack it again: GNU tar, run as the
    // host's root, would make the node.
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "{script}: {}", stderr(&out));
    };
    sh(&format!(
        "cd {t} && zstd -dc {g} | tar --xattrs --numeric-owner -xf - && mkdir -p upper/dev && mknod upper/dev/kmsg c 1 11 && tar --xattrs --numeric-owner -cf - container.json upper | zstd -q > {e}",
        t = tree.display(),
        g = good.display(),
        e = work.path().join("evil.tar.zst").display()
    ));
    let evil = work.path().join("evil.tar.zst");
    let out = gw.cli(&[
        "container",
        "restore",
        evil.to_str().unwrap(),
        "--as",
        "bk2",
    ]);
    assert!(!out.status.success(), "the restore went through");
    assert!(
        stderr(&out).contains("holds a device node") && stderr(&out).contains("upper/dev/kmsg"),
        "{}",
        stderr(&out)
    );
    assert!(!gw.dir.path().join("state/containers/bk2").exists());
    let leftovers = walk_devices(&gw.dir.path().join("state"));
    assert!(leftovers.is_empty(), "device nodes left: {leftovers:?}");
    // The untouched backup (with its whiteouts) still restores.
    let out = gw.cli(&[
        "container",
        "restore",
        good.to_str().unwrap(),
        "--as",
        "bk3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every device node under `root` other than whiteouts (0:0).
fn walk_devices(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let t = meta.file_type();
        if (t.is_char_device() || t.is_block_device()) && meta.rdev() != 0 {
            found.push(p);
        } else if t.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    found
}

#[test]
fn the_test_image_has_no_device_nodes() {
    let gw = Gateway::start();
    let images = gw.dir.path().join("state/images");
    let rootfs = std::fs::canonicalize(images.join("debian-12/rootfs")).unwrap();
    let found = walk_devices(&rootfs);
    assert!(found.is_empty(), "device nodes in the image: {found:?}");
}

#[test]
fn an_sftp_only_user_cannot_run_a_command_after_scp_t() {
    let (_p, gw) = policy_gateway(
        "[[allow]]\nname = \"files-only\"\nusers = [\"alice\"]\nowned = true\nactions = [\"sftp\"]\n",
    );
    gw.create_container("sf1", "alice");
    for attack in [
        "scp -t /tmp; touch /tmp/pwned1",
        "scp -t /tmp && touch /tmp/pwned2",
        "scp -t /tmp/$(touch /tmp/pwned3)",
        "scp -f /etc/hostname | touch /tmp/pwned4",
        "rsync --server --daemon --config=/tmp/x.conf .",
        "/tmp/scp -t /tmp",
    ] {
        let out = gw.ssh("alice", "alice@sf1", attack);
        assert!(!out.status.success(), "{attack} ran");
        assert!(
            stderr(&out).contains("no policy gives alice exec access"),
            "{attack}: {}",
            stderr(&out)
        );
    }
    for n in 1..=4 {
        assert!(
            !upper(&gw, "sf1").join(format!("tmp/pwned{n}")).exists(),
            "pwned{n}"
        );
    }
    // The transfers themselves still work, run without a shell.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f.txt");
    std::fs::write(&local, "legacy scp\n").unwrap();
    let scp = gw
        .transfer_command("scp", "alice")
        .arg("-O")
        .arg(&local)
        .arg("alice@sf1@127.0.0.1:/tmp/f.txt")
        .output()
        .unwrap();
    assert!(scp.status.success(), "{}", stderr(&scp));
    let rsync = Command::new("rsync")
        .arg("-a")
        .arg("-e")
        .arg(format!(
            "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            gw.port,
            gw.key("alice").display()
        ))
        .arg(&local)
        .arg("alice@sf1@127.0.0.1:/tmp/r.txt")
        .output()
        .unwrap();
    assert!(rsync.status.success(), "{}", stderr(&rsync));
    for f in ["tmp/f.txt", "tmp/r.txt"] {
        assert_eq!(
            std::fs::read_to_string(upper(&gw, "sf1").join(f)).unwrap(),
            "legacy scp\n"
        );
    }
}

#[test]
fn a_local_user_cannot_read_recordings_or_run_a_containers_setuid_copy() {
    let gw = Gateway::start();
    gw.create_container("lu1", "alice");
    let out = gw.ssh(
        "alice",
        "alice@root@lu1",
        "echo secret-typed-here; cp /bin/bash /tmp/rootbash; chmod 4755 /tmp/rootbash",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let state = gw.dir.path().join("state");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("recordings")), 0o700);
    assert_eq!(mode(&state.join("audit/audit.jsonl")), 0o600);
    let session = std::fs::read_dir(state.join("recordings"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_eq!(mode(&session), 0o700);
    for f in std::fs::read_dir(&session).unwrap().flatten() {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
    // Even with the test's own directory open to everyone, nobody gets in.
    let mut p = gw.dir.path().to_path_buf();
    loop {
        let m = mode(&p);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m | 0o005)).unwrap();
        if !p.pop() || p == Path::new("/") {
            break;
        }
    }
    let rootbash = upper(&gw, "lu1").join("tmp/rootbash");
    assert!(rootbash.exists());
    let out = as_nobody(&format!(
        "cat {}/*/channel-*.cast; {} -p -c id",
        state.join("recordings").display(),
        rootbash.display()
    ));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains("secret-typed-here"), "{text}");
    assert!(!text.contains("uid="), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
}

#[test]
fn self_service_cannot_label_its_container_dr_of_anothers() {
    let (_p, gw) = policy_gateway(
        r#"
[[allow]]
name = "own"
users = ["alice", "bob"]
owned = true

[[self_service]]
name = "boxes"
users = ["bob"]
images = ["debian-12"]
max_containers = 3
max_idle_stop = "1h"
label_keys = ["team"]
"#,
    );
    gw.create_container("web01", "alice");
    let admin = |command: &str| gw.ssh("bob", "bob@+admin", command);
    for (command, why) in [
        (
            "container create evil1 --label dr-of=web01",
            "'dr-of' decides where containers may run",
        ),
        (
            "container create evil2 --label gatehouse.self-service=other",
            "gateway's own",
        ),
        (
            "container create evil3 --label owner=alice",
            "rule 'boxes' allows team",
        ),
        (
            "container create evil4 --idle-stop never",
            "idle stop never is longer than rule 'boxes' allows (1h)",
        ),
        (
            "container create evil5 --idle-stop 2h",
            "idle stop 2h is longer",
        ),
    ] {
        let out = admin(command);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stdout(&out));
        assert!(stderr(&out).contains(why), "{command}: {}", stderr(&out));
    }
    let out = admin("container create ok1 --label team=blue --idle-stop 30m");
    assert!(out.status.success(), "{}", stderr(&out));
    // The attack itself: bob's running container does not keep alice's web01 from starting.
    assert!(gw.ssh("bob", "bob@ok1", "true").status.success());
    let out = gw.ssh("alice", "alice@web01", "hostname");
    assert_eq!(stdout(&out), "web01\n", "{}", stderr(&out));
}

#[test]
fn sftp_copy_data_is_audited_as_a_copy_not_as_an_empty_write() {
    let gw = Gateway::start();
    gw.create_container("cp1", "alice");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, "fifteen bytes!\n").unwrap();
    let batch = dir.path().join("batch");
    std::fs::write(
        &batch,
        format!("put {} /tmp/a\ncopy /tmp/a /tmp/b\n", local.display()),
    )
    .unwrap();
    let out = gw
        .transfer_command("sftp", "alice")
        .arg("-b")
        .arg(&batch)
        .arg("alice@cp1@127.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(upper(&gw, "cp1").join("tmp/b")).unwrap(),
        "fifteen bytes!\n"
    );
    // The audit of the files is complete once the session's end is.
    assert!(eventually(10, || !gw
        .audit_events("session.end")
        .is_empty()));
    let copies = gw.audit_events("file.copy");
    assert!(
        copies
            .iter()
            .any(|e| e["from"] == "/tmp/a" && e["to"] == "/tmp/b" && e["user"] == "alice"),
        "{copies:?}"
    );
    // What was written to /tmp/b never passed the gateway: no size 0, no empty digest.
    let writes: Vec<_> = gw
        .audit_events("file.write")
        .into_iter()
        .filter(|e| e["path"] == "/tmp/b")
        .collect();
    assert!(!writes.is_empty(), "{}", gw.audit());
    for w in &writes {
        assert!(w.get("sha256").is_none() && w.get("size").is_none(), "{w}");
        assert!(w["sha256_missing"].as_str().unwrap().contains("copy-data"));
    }
}

/// The seccomp classes the review got through, tried from container root with raw
/// syscalls (x86-64 numbers; perl is in every Debian image).
#[cfg(target_arch = "x86_64")]
#[test]
fn container_root_cannot_use_io_uring_nested_userns_the_new_mount_api_or_x32() {
    let gw = Gateway::start();
    gw.create_container("sc1", "alice");
    let script = r#"
        sys() { perl -e '$! = 0; my @a = map { $_ + 0 } @ARGV; my $r = syscall(shift @a, @a); print(($r == -1 ? "$!" : "ok"), "\n")' -- "$@"; }
        echo "io_uring=$(sys 425 8 0)"
        echo "kcmp=$(sys 312 1 1 0 0 0)"
        echo "fsopen=$(sys 430 0 0)"
        echo "open_tree=$(sys 428 0 0 0)"
        echo "mount_setattr=$(sys 442 0 0 0 0 0)"
        echo "clone3=$(sys 435 0 0)"
        echo "personality=$(sys 135 262144)"
        echo "vsock=$(sys 41 40 1 0)"
        echo "x32=$(sys 1073741863)"
        unshare -Urnm true 2>/dev/null && echo userns=made || echo userns=refused
        setarch x86_64 -R true 2>/dev/null && echo setarch=ran || echo setarch=refused
        echo "getpid=$(sys 39)"
    "#;
    let out = gw.ssh("alice", "alice@root@sc1", script);
    let text = stdout(&out);
    for expected in [
        "io_uring=Operation not permitted",
        "kcmp=Operation not permitted",
        "fsopen=Function not implemented",
        "open_tree=Function not implemented",
        "mount_setattr=Function not implemented",
        "clone3=Function not implemented",
        "personality=Operation not permitted",
        "vsock=Operation not permitted",
        "x32=Function not implemented",
        "userns=refused",
        "setarch=refused",
        "getpid=ok",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected} missing:\n{text}{}",
            stderr(&out)
        );
    }
    // Nesting is for the containers an admin configures for it.
    gw.cli_ok(&["container", "set", "sc1", "--nesting", "true"]);
    gw.cli_ok(&["container", "restart", "sc1"]);
    let out = gw.ssh(
        "alice",
        "alice@root@sc1",
        "unshare -Ur id -u && echo userns=made",
    );
    assert_eq!(stdout(&out), "0\nuserns=made\n", "{}", stderr(&out));
    assert!(gw
        .cli_ok(&["container", "show", "sc1"])
        .contains("nesting:    on"));
}

/// Low item: container root unmounts /proc's masks (or remounts /proc/sys writable, or
/// mounts a fresh /proc) to reach what they hide, and reads PID 1's command line and its
/// mountinfo for host paths; and a container's layer with `/proc` swapped for a symlink
/// (as a crafted restore could leave it) does not get host root to mount through it.
#[test]
fn container_root_cannot_unmount_proc_masks_or_see_host_paths() {
    let gw = Gateway::start();
    gw.create_container("pm1", "alice");
    let script = r#"
        try() { if "$@" >/dev/null 2>&1; then echo "$1 $2 $3=done"; else echo "$1 $2 $3=refused"; fi; }
        try umount /proc/kcore
        try umount -l /proc/sys
        try umount -l /proc
        try umount -l /sys/firmware
        try mount -o remount,bind,rw /proc/sys
        try mount -t proc proc /mnt
        try mount --bind / /mnt
        echo "kcore=$(head -c 16 /proc/kcore | wc -c)"
        echo 0 > /proc/sys/kernel/randomize_va_space 2>/dev/null && echo sysctl=written || echo sysctl=refused
        echo "cmdline=$(tr '\0' ' ' < /proc/1/cmdline | sed 's/ *$//')"
        cat /proc/self/mountinfo /proc/1/mountinfo 2>/dev/null
    "#;
    let out = gw.ssh("alice", "alice@root@pm1", script);
    let text = stdout(&out);
    for expected in [
        "umount /proc/kcore =refused",
        "umount -l /proc/sys=refused",
        "umount -l /proc=refused",
        "umount -l /sys/firmware=refused",
        "mount -o remount,bind,rw=refused",
        "mount -t proc=refused",
        "mount --bind /=refused",
        "kcore=0",
        "sysctl=refused",
        "cmdline=/sbin/init",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected} missing:\n{text}{}",
            stderr(&out)
        );
    }
    let state = gw.dir.path().to_string_lossy().into_owned();
    for leak in [state.as_str(), "__supervise", "gatehouse"] {
        assert!(!text.contains(leak), "'{leak}' shows inside:\n{text}");
    }
    // A layer whose /proc is a symlink to a host directory: the start is refused.
    gw.cli_ok(&["container", "stop", "pm1"]);
    let proc = upper(&gw, "pm1").join("proc");
    let _ = std::fs::remove_dir_all(&proc);
    std::os::unix::fs::symlink("/etc", &proc).unwrap();
    let out = gw.ssh("alice", "alice@pm1", "true");
    assert!(
        !out.status.success(),
        "the container started through a symlinked /proc"
    );
    let log = gw.log();
    assert!(
        log.contains("mount point (it must be a directory, not a link)"),
        "{}{log}",
        stderr(&out)
    );
    // The host's /etc is as it was: no proc (or anything else) was mounted on it.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.lines().any(|l| l.split(' ').nth(4) == Some("/etc")));
}

/// Low item: container root replaces `/etc/passwd` with a FIFO, which the supervisor's
/// helpers read (to find the login of a forwarded agent, of a session): nobody ever
/// writes to it, and a helper that waited for it would hang the container's supervisor.
#[test]
fn a_fifo_for_etc_passwd_does_not_hang_the_supervisor() {
    let gw = Gateway::start();
    gw.create_container("ff1", "alice");
    let out = gw.ssh(
        "alice",
        "alice@root@ff1",
        "cp -a /etc/passwd /root/passwd.kept && rm /etc/passwd && mkfifo -m 644 /etc/passwd && echo planted",
    );
    assert_eq!(stdout(&out), "planted\n", "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = gatehouse_e2e::Kill(
        Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(eventually(10, || sock.exists()), "ssh-agent did not start");
    // A forwarded agent and a session: both read the FIFO. `timeout` only guards the
    // test against the hang it looks for.
    let mut ssh = gw.ssh_command("alice", "alice@ff1");
    ssh.args(["-A", "true"]).env("SSH_AUTH_SOCK", &sock);
    let mut guarded = Command::new("timeout");
    guarded
        .arg("60")
        .arg(ssh.get_program())
        .args(ssh.get_args());
    guarded.env("SSH_AUTH_SOCK", &sock);
    let out = guarded.output().unwrap();
    assert_ne!(out.status.code(), Some(124), "the session hung on the FIFO");
    assert!(
        !out.status.success(),
        "a session started without /etc/passwd"
    );
    // The supervisor still serves: it answers the next session, and stops when told; with
    // the file back, root logs in again.
    let out = gw.ssh("alice", "alice@ff1", "true");
    assert!(stderr(&out).contains("no account"), "{}", stderr(&out));
    gw.cli_ok(&["container", "stop", "ff1"]);
    let upper = upper(&gw, "ff1");
    let passwd = upper.join("etc/passwd");
    std::fs::remove_file(&passwd).unwrap();
    std::fs::copy(upper.join("root/passwd.kept"), &passwd).unwrap();
    let owner = std::fs::metadata(upper.join("root/passwd.kept")).unwrap();
    std::os::unix::fs::lchown(&passwd, Some(owner.uid()), Some(owner.gid())).unwrap();
    let out = gw.ssh("alice", "alice@root@ff1", "id -u");
    assert_eq!(stdout(&out), "0\n", "{}", stderr(&out));
}

fn sh(script: &str) -> std::process::Output {
    Command::new("sh").args(["-c", script]).output().unwrap()
}

/// Waits up to `secs` for `f`; whether it came true.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    f()
}

/// Host processes whose command line is exactly `command`.
fn running(command: &str) -> bool {
    sh(&format!("pgrep -fx '{command}'")).status.success()
}

#[test]
fn a_revoked_person_keeps_nothing_through_an_open_controlmaster_connection() {
    let (_p, gw) = policy_gateway(
        "[[allow]]\nname = \"devs\"\ngroups = [\"devs\"]\nowned = true\nactions = [\"shell\", \"exec\", \"port-forward\", \"remote-forward\"]\n",
    );
    gw.create_container("rv1", "alice");
    let control = gw.dir.path().join("cm-%r@%h:%p");
    let ssh = format!(
        "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPath={} -o ControlPersist=60 alice@rv1@127.0.0.1",
        gw.port,
        gw.key("alice").display(),
        control.display()
    );
    let out = sh(&format!("{ssh} true"));
    assert!(out.status.success(), "{}", stderr(&out));
    // A session that leaves a process behind in a session of its own, and keeps running.
    let long = format!(
        "{ssh} 'setsid nohup sleep 4242 >/dev/null 2>&1 </dev/null & sleep 300' > {}/long.out 2>&1 &",
        gw.dir.path().display()
    );
    assert!(sh(&long).status.success());
    assert!(
        eventually(10, || running("sleep 4242")),
        "the process never started"
    );
    // A remote forward, asked for on the open connection.
    let out = sh(&format!("{ssh} -O forward -R 127.0.0.1:18765:127.0.0.1:9"));
    assert!(out.status.success(), "{}", stderr(&out));

    // alice leaves the devs group: a directory change, no policy change.
    let users = gw.dir.path().join("users.toml");
    let text = std::fs::read_to_string(&users).unwrap();
    let text = text.replacen("groups = [\"devs\"]", "groups = [\"former\"]", 1);
    std::fs::write(&users, text).unwrap();

    // The running session, the process it left and the remote forward all end.
    assert!(
        eventually(30, || !running("sleep 4242")),
        "the left-behind process survived the revocation"
    );
    assert!(eventually(10, || {
        std::fs::read_to_string(gw.dir.path().join("long.out"))
            .is_ok_and(|t| t.contains("access revoked"))
    }));
    assert!(
        eventually(10, || gw
            .audit_events("session.processes_ended")
            .iter()
            .any(|e| e["killed"].as_u64() >= Some(1))),
        "{}",
        gw.audit()
    );
    let revoked = gw.audit_events("session.revoked");
    assert!(
        revoked.iter().any(|e| e["action"] == "remote-forward"),
        "{revoked:?}"
    );
    // Nothing new on the open connection: no session, no forward, no jump.
    let out = sh(&format!("{ssh} id"));
    assert!(!out.status.success(), "a new session ran: {}", stdout(&out));
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    let out = sh(&format!("{ssh} -O forward -R 127.0.0.1:18766:127.0.0.1:9"));
    assert!(!out.status.success(), "a new remote forward was accepted");
    let out = sh(&format!(
        "ssh -p {p} -i {k} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes -o ProxyCommand='{ssh} -W %h:%p' root@rv1 id",
        p = gw.port,
        k = gw.key("alice").display(),
    ));
    assert!(
        !out.status.success(),
        "the jump got through: {}",
        stdout(&out)
    );

    // alice is deleted from the directory: the open connection itself is closed.
    let text = std::fs::read_to_string(&users).unwrap();
    let start = text.find("[[user]]\nname = \"bob\"").unwrap();
    std::fs::write(&users, &text[start..]).unwrap();
    assert!(
        eventually(30, || !sh(&format!("{ssh} -O check")).status.success()),
        "the connection stayed open"
    );
    assert!(!gw.audit_events("connection.closed").is_empty());
}

/// Host uid that root inside `container` maps to (its uid_map's second field).
fn root_on_host(gw: &Gateway, container: &str) -> u32 {
    let out = gw.ssh(
        "alice",
        &format!("alice@root@{container}"),
        "cat /proc/self/uid_map",
    );
    stdout(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no uid map: {}{}", stdout(&out), stderr(&out)))
}

#[test]
fn one_containers_root_is_nobody_to_another_container_and_to_the_image() {
    let gw = Gateway::start();
    gw.create_container("idm1", "alice");
    gw.create_container("idm2", "alice");
    let (one, two) = (root_on_host(&gw, "idm1"), root_on_host(&gw, "idm2"));
    let state = gw.dir.path().join("state");
    let image = std::fs::canonicalize(state.join("images/debian-12/rootfs")).unwrap();
    let image_owner = std::fs::metadata(image.join("etc")).unwrap().uid();
    assert_ne!(one, two, "two containers share an id range");
    assert!(one.abs_diff(two) >= 65536, "{one} and {two} overlap");
    assert_ne!(one, image_owner, "container root owns the image layer");
    assert_ne!(two, image_owner, "container root owns the image layer");
    // Inside, the image's files still belong to the container's root, and root plants a
    // setuid copy of bash, as the review's attacker did.
    let out = gw.ssh(
        "alice",
        "alice@root@idm1",
        "stat -c %u /etc/passwd /usr/bin/sudo; cp /bin/bash /tmp/rootbash; chmod 4755 /tmp/rootbash; touch /etc/made-in-1",
    );
    assert_eq!(stdout(&out), "0\n0\n", "{}", stderr(&out));
    let planted = state.join("containers/idm1/upper/tmp/rootbash");
    assert_eq!(std::fs::metadata(&planted).unwrap().uid(), one);
    // What that setuid program would run as on the host (its owner, the container's
    // root) can write neither the image layer nor another container's files: with every
    // directory on the way open, as a careless host would have them.
    let mut p = state.join("containers/idm2/upper");
    loop {
        let m = std::fs::metadata(&p).unwrap().permissions().mode();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m | 0o005)).unwrap();
        if !p.pop() || p == Path::new("/") {
            break;
        }
    }
    let out = as_host_user(
        one,
        &format!(
            "touch {}/etc/evil 2>&1; touch {}/evil 2>&1; echo done",
            image.display(),
            state.join("containers/idm2/upper").display()
        ),
    );
    let text = stdout(&out);
    assert_eq!(text.matches("Permission denied").count(), 2, "{text}");
    assert!(!image.join("etc/evil").exists());
    // The change root made in idm1 is not seen in idm2.
    let out = gw.ssh(
        "alice",
        "alice@idm2",
        "ls /etc/made-in-1 2>&1 || echo absent",
    );
    assert!(stdout(&out).contains("absent"), "{}", stdout(&out));
}

#[test]
fn cutting_the_audit_logs_tail_or_deleting_its_key_is_noticed() {
    let mut gw = Gateway::start();
    gw.create_container("au1", "alice");
    for word in ["one", "two"] {
        assert!(gw
            .ssh("alice", "alice@au1", &format!("echo {word}"))
            .status
            .success());
    }
    let key = gw.cli_ok(&["audit", "key"]);
    let mut lines = key.lines();
    let (public, fingerprint) = (lines.next().unwrap(), lines.next().unwrap());
    assert_eq!(public.len(), 64, "{key}");
    gw.terminate(10);
    let audit = gw.dir.path().join("state/audit");
    let log = audit.join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    // The last events removed: the chain that is left is whole, but the head says more.
    let n = text.lines().count();
    let kept: String = text.lines().take(n - 2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, kept).unwrap();
    let out = gw.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("removed from its end"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&log, &text).unwrap();
    // Without the key file nothing is taken on the log's word; the key kept elsewhere
    // is used, and named.
    std::fs::remove_file(audit.join("audit_ed25519_key")).unwrap();
    let out = gw.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--public-key"), "{}", stderr(&out));
    let verified = gw.cli_ok(&["audit", "verify", "--public-key", public]);
    assert!(
        verified.contains(&format!("trusted key: {fingerprint}"))
            && verified.contains("audit log intact"),
        "{verified}"
    );
    let wrong = "ab".repeat(32);
    assert!(!gw
        .cli(&["audit", "verify", "--public-key", &wrong])
        .status
        .success());
}

/// Where scripts/install-deps puts ssh-audit.
const SSH_AUDIT: &str = "/opt/gatehouse-test/ssh-audit/bin/ssh-audit";

#[test]
fn ssh_audit_finds_nothing_but_the_post_quantum_notes() {
    assert!(
        Path::new(SSH_AUDIT).exists(),
        "{SSH_AUDIT} is missing: run scripts/install-deps"
    );
    let gw = Gateway::start();
    let out = Command::new(SSH_AUDIT)
        .args(["-j", "-p", &gw.port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ssh-audit said: {e}\n{}{}", stdout(&out), stderr(&out)));
    let mut findings = vec![];
    for section in ["kex", "key", "enc", "mac"] {
        for alg in report[section].as_array().into_iter().flatten() {
            for level in ["fail", "warn"] {
                for note in alg["notes"][level].as_array().into_iter().flatten() {
                    let note = note.as_str().unwrap_or_default();
                    if !note.contains("post-quantum") {
                        findings.push(format!("{} {level}: {note}", alg["algorithm"]));
                    }
                }
            }
        }
    }
    assert!(findings.is_empty(), "{findings:#?}");
    assert_eq!(
        report["compression"],
        serde_json::json!(["none"]),
        "{report}"
    );
    let kex: Vec<&str> = report["kex"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["algorithm"].as_str())
        .collect();
    assert!(kex.contains(&"mlkem768x25519-sha256"), "{kex:?}");
    assert!(
        !kex.iter().any(|k| k.starts_with("diffie-hellman")),
        "{kex:?}"
    );
    // The connection-rate (DHEat) test has nothing to find: no DH group is offered.
    let text = format!("{report}");
    assert!(!text.contains("DHEat"), "{text}");
}
