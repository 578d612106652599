//! ProxyJump through the gateway with the real OpenSSH client: the gateway serves the
//! inner connection itself (recorded, policy-checked), each container presents its own
//! verifiable host key, and destinations that are not containers are refused.

use std::process::{Command, Output, Stdio};

use gatehouse_e2e::{stderr, stdout, Gateway, Terminal};

/// An ssh_config where `127.0.0.1` is the gateway (alice's key, no host key check) and
/// container names are checked against `known_hosts` (strictly).
fn client_config(gw: &Gateway, known_hosts: &std::path::Path) -> std::path::PathBuf {
    let cfg = gw.dir.path().join("jump_config");
    std::fs::write(
        &cfg,
        format!(
            "Host 127.0.0.1\n  Port {}\n  User alice\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n\
             Host *\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n",
            gw.port,
            gw.key("alice").display(),
            known_hosts.display()
        ),
    )
    .unwrap();
    cfg
}

fn jump(cfg: &std::path::Path, dest: &str, command: &str) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(cfg)
        .args(["-J", "127.0.0.1", dest, command])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn proxyjump_reaches_containers_with_verified_keys_and_nothing_else() {
    let gw = Gateway::start();
    gw.create_container("jmp1", "alice");
    gw.create_container("jmp2", "alice");
    // The admin exports known_hosts lines; the client trusts exactly those.
    let lines = gw.cli_ok(&["container", "hostkeys"]);
    assert!(
        lines.lines().count() == 2 && lines.contains("jmp1 ssh-ed25519 "),
        "{lines}"
    );
    let known = gw.dir.path().join("known_hosts");
    std::fs::write(&known, &lines).unwrap();
    let cfg = client_config(&gw, &known);

    let out = jump(&cfg, "root@jmp1", "id -u; hostname");
    assert_eq!(stdout(&out), "0\njmp1\n", "{}\n{}", stderr(&out), gw.log());
    let out = jump(&cfg, "alice@jmp2", "id -un; hostname; exit 3");
    assert_eq!(stdout(&out), "alice\njmp2\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(3));
    // ProxyCommand with -W works the same.
    let proxy = format!("ssh -F {} -W %h:%p 127.0.0.1", cfg.display());
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&cfg)
        .args([
            "-o",
            &format!("ProxyCommand={proxy}"),
            "root@jmp1",
            "echo via-proxycommand",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "via-proxycommand\n", "{}", stderr(&out));
    // A host key that does not match is refused by the client.
    let swapped: Vec<&str> = lines.lines().collect();
    std::fs::write(
        &known,
        format!(
            "jmp1 {}\njmp2 {}\n",
            swapped[1].split_once(' ').unwrap().1,
            swapped[0].split_once(' ').unwrap().1
        ),
    )
    .unwrap();
    let out = jump(&cfg, "root@jmp1", "true");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("HOST IDENTIFICATION HAS CHANGED")
            || stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&known, &lines).unwrap();
    // Not a container: refused, the gateway is no open proxy.
    for dest in ["root@nosuch", "root@localhost"] {
        let out = jump(&cfg, dest, "true");
        assert_eq!(out.status.code(), Some(255), "{dest}: {}", stdout(&out));
    }
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&cfg)
        .args(["-W", "example.org:80", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    // Interactive through the jump, recorded like any session.
    let term = Terminal::start(
        &format!("ssh -F {} -J 127.0.0.1 root@jmp1", cfg.display()),
        100,
        30,
    );
    term.wait_for("root@jmp1");
    term.send(&["echo jumped-$((6*7))", "Enter"]);
    term.wait_for("jumped-42");
    term.send(&["exit", "Enter"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = gw.cli_ok(&["sessions", "search", "jumped-42"]);
        if list.contains("jmp1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let json = gw.cli_ok(&["sessions", "list", "--json", "--container", "jmp1"]);
    assert!(
        json.contains("\"login\": \"root\"") && json.contains("\"user\": \"alice\""),
        "{json}"
    );
}
