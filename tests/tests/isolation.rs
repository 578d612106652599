//! The host is the hypervisor: nothing a container's root does reaches the host.

use std::os::unix::fs::MetadataExt;

use gatehouse_e2e::{stderr, stdout, Gateway};

#[test]
fn root_inside_is_an_unprivileged_uid_on_the_host() {
    let gw = Gateway::start();
    gw.create_container("iso", "alice");
    let out = gw.ssh(
        "alice",
        "alice@root@iso",
        "id -u; cat /proc/self/uid_map; touch /made-by-root",
    );
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"), "{text}{}", stderr(&out));
    let map: Vec<u64> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert_eq!(map.len(), 3, "{text}");
    assert_eq!(map[0], 0);
    assert!(map[1] >= 65536, "root inside maps to host uid {}", map[1]);
    // The file root made is owned by that unprivileged uid on the host.
    let upper = gw
        .dir
        .path()
        .join("state/containers/iso/upper/made-by-root");
    assert_eq!(std::fs::metadata(upper).unwrap().uid() as u64, map[1]);
}

#[test]
fn kernel_modules_devices_and_host_processes_are_out_of_reach() {
    let gw = Gateway::start();
    gw.create_container("iso2", "alice");
    // init_module(2) and finit_module(2) straight from perl (no kmod in the image). The
    // seccomp denylist answers EPERM even where the kernel has no module support.
    let script = r#"
        perl -e 'my $i = "x" x 64; my $p = ""; $r = syscall(175, $i, 64, $p); print "init_module=$r $!\n"';
        perl -e 'my $p = ""; $r = syscall(313, 0, $p, 0); print "finit_module=$r $!\n"';
        mknod /tmp/disk b 8 0 2>/dev/null && echo mknod=ok || echo mknod=refused;
        mount -t ext4 /dev/null /mnt 2>/dev/null && echo mount=ok || echo mount=refused;
        echo b > /proc/sysrq-trigger 2>/dev/null && echo sysrq=ok || echo sysrq=refused;
        echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo sysctl=ok || echo sysctl=refused;
        ls /proc | grep -c '^[0-9]'
    "#;
    let out = gw.ssh("alice", "alice@root@iso2", script);
    let text = stdout(&out);
    assert!(
        text.contains("init_module=-1 Operation not permitted"),
        "{text}{}",
        stderr(&out)
    );
    assert!(
        text.contains("finit_module=-1 Operation not permitted"),
        "{text}"
    );
    for refused in [
        "mknod=refused",
        "mount=refused",
        "sysrq=refused",
        "sysctl=refused",
    ] {
        assert!(text.contains(refused), "{refused} missing:\n{text}");
    }
    let processes: usize = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(999);
    assert!(processes < 10, "sees {processes} processes:\n{text}");
}

#[test]
fn sudo_and_setuid_programs_still_work_inside() {
    let gw = Gateway::start();
    gw.create_container("sudo1", "alice");
    // alice's account exists after her first login; root grants her sudo.
    assert_eq!(stdout(&gw.ssh("alice", "alice@sudo1", "id -un")), "alice\n");
    let out = gw.ssh(
        "alice",
        "alice@root@sudo1",
        "echo 'alice ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/alice && chmod 440 /etc/sudoers.d/alice && echo granted",
    );
    assert_eq!(stdout(&out), "granted\n", "{}", stderr(&out));
    let out = gw.ssh(
        "alice",
        "alice@sudo1",
        "sudo -n id -u; grep NoNewPrivs /proc/self/status; grep -c . /proc/self/uid_map",
    );
    assert_eq!(stdout(&out), "0\nNoNewPrivs:\t0\n1\n", "{}", stderr(&out));
}
