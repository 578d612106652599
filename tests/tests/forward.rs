//! Port forwarding with the real OpenSSH client: `ssh -L` reaches a service inside the
//! container, never the host's own loopback, and only on ports the policy allows.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gatehouse_e2e::{free_port, on_every_runtime, Backend, Gateway, Kill};

/// `ssh -N -L local:host:port user@gw`, running until dropped.
fn forward(gw: &Gateway, user: &str, local: u16, to: &str) -> Kill {
    let child = gw
        .ssh_command("alice", user)
        .args(["-N", "-L", &format!("127.0.0.1:{local}:{to}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Kill(child)
}

/// What a connection to `port` on the host's loopback reads, retrying while the forward
/// comes up; empty if the other side closes at once.
fn read_from(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            if !text.is_empty() || Instant::now() > deadline {
                return text;
            }
        }
        if Instant::now() > deadline {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks the SOCKS5 proxy on `proxy` (ssh -D) for `host:port` and reads what comes back,
/// retrying while the proxy comes up.
fn socks5_read(proxy: u16, host: &str, port: u16) -> String {
    use std::io::Write;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", proxy)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reply = [0u8; 2];
            let mut request = vec![5, 1, 0, 3, host.len() as u8];
            request.extend_from_slice(host.as_bytes());
            request.extend_from_slice(&port.to_be_bytes());
            let mut head = [0u8; 10];
            if s.write_all(&[5, 1, 0]).is_ok()
                && s.read_exact(&mut reply).is_ok()
                && reply == [5, 0]
                && s.write_all(&request).is_ok()
                && s.read_exact(&mut head).is_ok()
                && head[1] == 0
            {
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                return text;
            }
        }
        assert!(Instant::now() < deadline, "the SOCKS proxy did not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn local_forwards_reach_the_container_not_the_host_and_only_allowed_ports(backend: Backend) {
    let port = free_port();
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("p.toml"),
        format!(
            "[[allow]]\nname = \"own-fwd\"\nusers = [\"alice\"]\nowned = true\nactions = [\"shell\", \"exec\", \"port-forward\"]\nports = [{port}]\n"
        ),
    )
    .unwrap();
    let gw = Gateway::start_on_with(
        backend,
        &format!("[policy]\npaths = [\"{}\"]\n", policies.path().display()),
    );
    gw.create_container("fwd1", "alice");
    // The same port on the host's loopback answers differently: it must not be reached.
    let host = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let host_hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits = host_hits.clone();
    std::thread::spawn(move || {
        for c in host.incoming().flatten() {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut c = c;
            let _ = std::io::Write::write_all(&mut c, b"hello from the HOST\n");
        }
    });
    // A service inside the container, on its own loopback.
    let serve = format!(
        "exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => \"127.0.0.1\", LocalPort => {port}, Listen => 5, ReuseAddr => 1) or die \"listen: $!\"; while ($c = $s->accept) {{ print $c \"hello from inside\\n\"; close $c }}'"
    );
    let _service = Kill(
        gw.ssh_command("alice", "alice@fwd1")
            .arg(&serve)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let local = free_port();
    let _fwd = forward(&gw, "alice@fwd1", local, &format!("localhost:{port}"));
    assert_eq!(read_from(local), "hello from inside\n", "{}", gw.log());
    // Dynamic forwarding (-D, SOCKS5) lands in the same place, by name.
    let socks = free_port();
    let _dynamic = Kill(
        gw.ssh_command("alice", "alice@fwd1")
            .args(["-N", "-D", &format!("127.0.0.1:{socks}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(socks5_read(socks, "localhost", port), "hello from inside\n");
    // A port the policy does not list: the channel is refused, nothing comes through.
    let other = free_port();
    let local2 = free_port();
    let _fwd2 = forward(&gw, "alice@fwd1", local2, &format!("localhost:{other}"));
    std::thread::sleep(Duration::from_secs(1));
    let mut text = String::new();
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", local2)) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_string(&mut text);
    }
    assert_eq!(text, "");
    // Both are in the audit log: the forward with its bytes, the refusal with its reason.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.audit().contains("\"type\":\"forward.close\"") {
        assert!(Instant::now() < deadline, "{}", gw.audit());
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = gw.audit();
    assert!(
        a.lines()
            .any(|l| l.contains("\"type\":\"forward.close\"")
                && l.contains("\"bytes_to_client\":18")),
        "{a}"
    );
    assert!(
        a.lines().any(|l| l.contains("\"type\":\"forward.refused\"")
            && l.contains(&format!("localhost:{other}"))
            && l.contains("access denied")),
        "{a}"
    );
    assert!(
        a.lines().any(|l| l.contains("\"type\":\"policy.decision\"")
            && l.contains(&format!("port {other} is not among [{port}]"))),
        "{a}"
    );
    // The host's loopback was never reached.
    assert_eq!(host_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The rule has no remote-forward: ssh -R is refused.
    let out = gw
        .ssh_command("alice", "alice@fwd1")
        .args([
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            &format!("127.0.0.1:{}:127.0.0.1:9", free_port()),
        ])
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("remote port forwarding failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn a_forwarded_agent_answers_inside_the_container_where_policy_allows(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("agt1", "alice");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let agent = Kill(
        std::process::Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(gw.key("alice"))
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let run = |user: &str, extra: &[&str], cmd: &str| {
        gw.ssh_command("alice", user)
            .args(extra)
            .arg(cmd)
            .env("SSH_AUTH_SOCK", &sock)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // The container's own ssh-add lists the client's key through the forwarded agent.
    let fingerprint = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(gw.key("alice"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("no fingerprint")
        .to_string();
    let out = run("alice@agt1", &["-A"], "ssh-add -l");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.lines().count() == 1 && listed.contains(&fingerprint),
        "{listed}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    // Only the login can use it; without -A there is none.
    let out = run(
        "alice@agt1",
        &["-A"],
        "stat -c '%U %a' \"$(dirname \"$SSH_AUTH_SOCK\")\"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alice 700\n");
    let out = run("alice@agt1", &[], "echo \"${SSH_AUTH_SOCK:-none}\"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "none\n");
    // Each session's socket goes away with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(
            "alice@agt1",
            &[],
            "ls -d /tmp/gatehouse-agent-* 2>/dev/null | wc -l",
        );
        if String::from_utf8_lossy(&out.stdout) == "0\n" {
            break;
        }
        assert!(Instant::now() < deadline, "agent sockets left behind");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gw.audit().contains("\"type\":\"agent.forwarded\""));

    // A rule without agent-forward: the session runs, without the agent.
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("p.toml"),
        "[[allow]]\nusers = [\"alice\"]\nowned = true\n",
    )
    .unwrap();
    let gw2 = Gateway::start_on_with(
        backend,
        &format!("[policy]\npaths = [\"{}\"]\n", policies.path().display()),
    );
    gw2.create_container("agt2", "alice");
    let out = gw2
        .ssh_command("alice", "alice@agt2")
        .args(["-A"])
        .arg("echo \"${SSH_AUTH_SOCK:-none}\"")
        .env("SSH_AUTH_SOCK", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "none\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gw2.audit().contains("\"type\":\"agent.refused\""));
    drop(agent);
}

fn remote_forwards_listen_inside_the_container_only(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("rfw1", "alice");
    // What the client side offers.
    let client_side = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let client_port = client_side.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in client_side.incoming().flatten() {
            let mut c = c;
            let _ = std::io::Write::write_all(&mut c, b"hello from the client side\n");
        }
    });
    let rport = free_port();
    let _fwd = Kill(
        gw.ssh_command("alice", "alice@rfw1")
            .args([
                "-N",
                "-R",
                &format!("127.0.0.1:{rport}:127.0.0.1:{client_port}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Inside the container, the port answers with what the client side sent.
    let read = format!(
        "for i in $(seq 50); do perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(PeerAddr => \"127.0.0.1:{rport}\") or exit 1; print while <$s>' && exit 0; sleep 0.2; done; exit 1"
    );
    let out = gw.ssh("alice", "alice@rfw1", &read);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the client side\n",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    // Nothing listens on the host for it.
    assert!(TcpStream::connect(("127.0.0.1", rport)).is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw
        .audit()
        .contains("\"type\":\"forward.remote.connection\"")
    {
        assert!(Instant::now() < deadline, "{}", gw.audit());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.audit().contains("\"type\":\"forward.remote\""));
}

on_every_runtime!(
    a_forwarded_agent_answers_inside_the_container_where_policy_allows,
    local_forwards_reach_the_container_not_the_host_and_only_allowed_ports,
    remote_forwards_listen_inside_the_container_only,
);
