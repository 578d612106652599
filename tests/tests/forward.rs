//! Port forwarding with the real OpenSSH client: `ssh -L` reaches a service inside the
//! container, never the host's own loopback, and only on ports the policy allows.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gatehouse_e2e::{free_port, Gateway};

/// Kills a child process when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

fn audit(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.dir.path().join("state/audit/audit.jsonl")).unwrap_or_default()
}

#[test]
fn local_forwards_reach_the_container_not_the_host_and_only_allowed_ports() {
    let port = free_port();
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("p.toml"),
        format!(
            "[[allow]]\nname = \"own-fwd\"\nusers = [\"alice\"]\nowned = true\nactions = [\"shell\", \"exec\", \"port-forward\"]\nports = [{port}]\n"
        ),
    )
    .unwrap();
    let gw = Gateway::start_with(&format!(
        "[policy]\npaths = [\"{}\"]\n",
        policies.path().display()
    ));
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
    while !audit(&gw).contains("\"type\":\"forward.close\"") {
        assert!(Instant::now() < deadline, "{}", audit(&gw));
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = audit(&gw);
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
}
