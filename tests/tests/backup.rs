//! Backups and snapshots of containers, and image archives that try to escape.

use std::fs::File;

use gatehouse_e2e::{on_every_runtime, stderr, stdout, Backend, Gateway};

fn backup_delete_restore_gives_back_the_same_files(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("bk1", "alice");
    let setup = "echo precious > ~/data; mkdir -p ~/dir; head -c 100000 /dev/urandom > ~/dir/blob; sha256sum ~/data ~/dir/blob";
    let before = stdout(&gw.ssh("alice", "alice@bk1", setup));
    assert!(before.contains("/home/alice/data"), "{before}");
    // A file of the image deleted inside (an overlay whiteout) stays deleted.
    assert!(gw
        .ssh(
            "alice",
            "alice@root@bk1",
            "rm /etc/issue && echo 'root note' > /root/n"
        )
        .status
        .success());
    gw.cli_ok(&["container", "snapshot", "bk1", "--name", "before-backup"]);
    let file = gw.dir.path().join("bk1.tar.zst");
    let file_s = file.to_str().unwrap();
    gw.cli_ok(&["container", "backup", "bk1", file_s]); // while running: frozen, then thawed
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@bk1", "echo thawed")),
        "thawed\n"
    );
    gw.cli_ok(&["container", "delete", "bk1"]);
    assert!(gw.cli(&["container", "show", "bk1"]).status.code() == Some(1));

    gw.cli_ok(&["container", "restore", file_s]);
    let check = "sha256sum ~/data ~/dir/blob; stat -c %U ~/data; test -e /etc/issue && echo issue-back || echo issue-gone";
    let after = stdout(&gw.ssh("alice", "alice@bk1", check));
    assert_eq!(after, format!("{before}alice\nissue-gone\n"));
    assert_eq!(
        stdout(&gw.ssh("alice", "alice@root@bk1", "cat /root/n")),
        "root note\n"
    );
    // Restoring over an existing name is refused; --as makes a copy.
    let out = gw.cli(&["container", "restore", file_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    gw.cli_ok(&["container", "restore", file_s, "--as", "bk1-copy"]);
    let copy = gw.ssh("alice", "alice@bk1-copy", "cat ~/data; hostname");
    assert_eq!(stdout(&copy), "precious\nbk1-copy\n", "{}", stderr(&copy));
    // Garbage is not a backup.
    std::fs::write(gw.dir.path().join("junk"), b"not a backup").unwrap();
    let out = gw.cli(&[
        "container",
        "restore",
        gw.dir.path().join("junk").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("zstd") || stderr(&out).contains("backup"),
        "{}",
        stderr(&out)
    );
}

/// One archive member: name, type, link target.
type Member<'a> = (&'a str, tar::EntryType, &'a str);

/// A tarball whose member names are written raw, so they can be malicious.
fn raw_tarball(path: &std::path::Path, entries: &[Member]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (name, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(if *kind == tar::EntryType::Regular {
            1
        } else {
            0
        });
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"x"
        } else {
            b""
        };
        b.append(&h, data).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn malicious_image_archives_are_refused_with_a_clear_error() {
    let gw = Gateway::start();
    let reg = tar::EntryType::Regular;
    let cases: Vec<(&str, Vec<Member>, &str)> = vec![
        (
            "abs",
            vec![("bin/sh", reg, ""), ("/etc/evil", reg, "")],
            "absolute path",
        ),
        (
            "dotdot",
            vec![("bin/sh", reg, ""), ("bin/../../evil", reg, "")],
            "'..'",
        ),
        (
            "hardlink",
            vec![
                ("bin/sh", reg, ""),
                ("bin/ln", tar::EntryType::Link, "../../etc/shadow"),
            ],
            "hard link",
        ),
        (
            "symlink",
            vec![
                ("bin/sh", reg, ""),
                ("lib", tar::EntryType::Symlink, "/etc"),
                ("lib/evil", reg, ""),
            ],
            "outside",
        ),
    ];
    for (name, entries, needle) in cases {
        let path = gw.dir.path().join(format!("{name}.tar"));
        raw_tarball(&path, &entries);
        let out = gw.cli(&["image", "import", name, path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("refusing image archive") && err.contains(needle),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{name}: not one line: {err}");
        let list = gw.cli_ok(&["image", "list"]);
        assert!(!list.contains(name), "{name} left behind: {list}");
    }
    assert!(!std::path::Path::new("/etc/evil").exists());
}

on_every_runtime!(backup_delete_restore_gives_back_the_same_files);
