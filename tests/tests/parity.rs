//! OpenSSH habits through the gateway: `tar | ssh … tar`, ControlMaster multiplexing,
//! SetEnv for an allow-listed set, keepalives.

use std::path::Path;
use std::process::Command;

use gatehouse_e2e::{stderr, stdout, Gateway};

fn sh(script: &str) -> std::process::Output {
    Command::new("sh").args(["-c", script]).output().unwrap()
}

/// The ssh command line (as a string for `sh -c`) for `user` with alice's key.
fn ssh_line(gw: &Gateway, user: &str, extra: &str) -> String {
    format!(
        "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes {extra} {user}@127.0.0.1",
        gw.port,
        gw.key("alice").display()
    )
}

#[test]
fn tar_through_exec_round_trips_a_directory_byte_for_byte() {
    let gw = Gateway::start();
    gw.create_container("par1", "alice");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    let binary: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("blob.bin"), &binary).unwrap();
    std::fs::write(src.join("sub/text.txt"), "ünïcode\r\nand lines\n").unwrap();
    std::fs::write(src.join("sub/deeper/empty"), "").unwrap();
    std::os::unix::fs::symlink("../blob.bin", src.join("sub/link")).unwrap();
    let back = dir.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let ssh = ssh_line(&gw, "alice@par1", "");
    let out = sh(&format!(
        "set -e; tar c -C {src} . | {ssh} 'rm -rf ~/t && mkdir ~/t && tar x -C ~/t' && {ssh} 'tar c -C ~/t .' | tar x -C {back}",
        src = src.display(),
        back = back.display()
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let diff = sh(&format!(
        "diff -r --no-dereference {} {}",
        src.display(),
        back.display()
    ));
    assert!(diff.status.success(), "{}{}", stdout(&diff), stderr(&diff));
    assert_eq!(std::fs::read(back.join("blob.bin")).unwrap(), binary);
    assert_eq!(
        std::fs::read_link(back.join("sub/link")).unwrap(),
        Path::new("../blob.bin")
    );
}

#[test]
fn one_controlmaster_connection_carries_ten_sessions() {
    let gw = Gateway::start();
    gw.create_container("par2", "alice");
    let control = gw.dir.path().join("cm-%r@%h:%p");
    let opts = format!(
        "-o ControlMaster=auto -o ControlPath={} -o ControlPersist=30",
        control.display()
    );
    let ssh = ssh_line(&gw, "alice@par2", &opts);
    let out = sh(&format!("{ssh} true"));
    assert!(out.status.success(), "{}", stderr(&out));
    let connections_before = gw
        .log()
        .matches("gatehouse::ssh::handler: connection")
        .count();
    // Ten sessions at once over the master connection.
    let script = (0..10)
        .map(|i| {
            format!(
                "({ssh} 'echo session-{i}; hostname') > {}/out{i} 2>&1 &",
                gw.dir.path().display()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\nwait";
    let out = sh(&script);
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..10 {
        let text = std::fs::read_to_string(gw.dir.path().join(format!("out{i}"))).unwrap();
        assert_eq!(text, format!("session-{i}\npar2\n"), "session {i}");
    }
    let connections_after = gw
        .log()
        .matches("gatehouse::ssh::handler: connection")
        .count();
    assert_eq!(
        connections_before, connections_after,
        "sessions did not share the connection"
    );
    let _ = sh(&format!("{ssh} -O exit"));
}

#[test]
fn setenv_passes_only_the_allow_list_and_keepalives_keep_the_session() {
    let gw = Gateway::start();
    gw.create_container("par3", "alice");
    let ssh = ssh_line(
        &gw,
        "alice@par3",
        "-o 'SetEnv=LANG=C.UTF-8 LC_TIME=C TERM=xterm-256color EVIL=1 LD_PRELOAD=/x.so'",
    );
    let out = sh(&format!(
        "{ssh} 'echo \"$LANG|$LC_TIME|$TERM|${{EVIL:-unset}}|${{LD_PRELOAD:-unset}}\"'"
    ));
    assert_eq!(
        stdout(&out),
        "C.UTF-8|C|xterm-256color|unset|unset\n",
        "{}",
        stderr(&out)
    );
    // The client's keepalives are answered: a quiet session outlives several rounds.
    let ssh = ssh_line(
        &gw,
        "alice@par3",
        "-o ServerAliveInterval=1 -o ServerAliveCountMax=2",
    );
    let out = sh(&format!("{ssh} 'sleep 5; echo still here'"));
    assert_eq!(stdout(&out), "still here\n", "{}", stderr(&out));
}

#[test]
fn a_large_paste_into_a_terminal_arrives_whole() {
    let gw = Gateway::start();
    gw.create_container("par4", "alice");
    let dir = tempfile::tempdir().unwrap();
    // About 1.2 MB of short lines (a terminal's line editor takes lines up to 4 KiB),
    // then Ctrl-D to end `cat`.
    let lines: String = (0..20_000)
        .map(|i| format!("line {i:05} {}\n", "abcdefghij".repeat(5)))
        .collect();
    std::fs::write(dir.path().join("paste"), format!("{lines}\u{4}")).unwrap();
    let ssh = ssh_line(&gw, "alice@par4", "-tt");
    let out = sh(&format!(
        "{ssh} 'stty -echo; cat > /tmp/paste' < {}",
        dir.path().join("paste").display()
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let sum = sh(&format!(
        "{} 'sha256sum < /tmp/paste'",
        ssh_line(&gw, "alice@par4", "")
    ));
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(lines.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        stdout(&sum).split_whitespace().next(),
        Some(expected.as_str())
    );
}
