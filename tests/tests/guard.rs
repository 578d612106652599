//! Brute-force protection: back-off and refusal per source address, while others still
//! get in; login grace time; a cap on unauthenticated connections.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use gatehouse_e2e::{password_of, stdout, Gateway};

fn password_from(gw: &Gateway, source: &str, user: &str, password: &str) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = gw
        .password_client(password, Some(source))
        .arg(format!("{user}@127.0.0.1"))
        .arg("echo in")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t0.elapsed())
}

#[test]
fn failures_from_one_address_are_slowed_then_refused_others_still_get_in() {
    let gw = Gateway::start_custom(None, "max_failures_per_address = 3\n", "");
    gw.create_container("g1", "alice");
    gw.create_container("g2", "bob");
    let (_, first) = password_from(&gw, "127.0.0.1", "alice@g1", "wrong1");
    let (_, _) = password_from(&gw, "127.0.0.1", "alice@g1", "wrong2");
    let (out, third) = password_from(&gw, "127.0.0.1", "alice@g1", "wrong3");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        third > first + Duration::from_millis(400),
        "no back-off: first {first:?}, third {third:?}"
    );
    // Now even the right password is refused from that address…
    let (out, _) = password_from(&gw, "127.0.0.1", "alice@g1", &password_of("alice"));
    assert_eq!(out.status.code(), Some(255), "refused address got in");
    assert!(
        gw.log().contains("too many failed logins from 127.0.0.1"),
        "{}",
        gw.log()
    );
    // …while another user from another address gets in, and so does alice from there.
    let (out, _) = password_from(&gw, "127.0.0.2", "bob@g2", &password_of("bob"));
    assert_eq!(stdout(&out), "in\n");
    let (out, _) = password_from(&gw, "127.0.0.2", "alice@g1", &password_of("alice"));
    assert_eq!(stdout(&out), "in\n");
}

fn server_greeting(port: u16) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 && buf.starts_with(b"SSH-2.0-") => Some(s),
        _ => None,
    }
}

#[test]
fn unauthenticated_connections_are_capped_and_timed_out() {
    let gw = Gateway::start_custom(None, "max_startups = 2\nlogin_grace_time = \"2s\"\n", "");
    // The harness's own readiness probe may still hold a slot for a moment: wait until
    // two connections fit.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (a, _b) = loop {
        let a = server_greeting(gw.port).expect("first connection");
        match server_greeting(gw.port) {
            Some(b) => break (a, b),
            None => {
                drop(a);
                assert!(
                    Instant::now() < deadline,
                    "second connection never accepted"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(
        server_greeting(gw.port).is_none(),
        "third unauthenticated connection accepted"
    );
    drop(a);
    // The gateway notices the closed connection and frees its slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        if let Some(c) = server_greeting(gw.port) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the slot of a closed connection was never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Silent connections are closed after the grace time.
    let t0 = Instant::now();
    let mut rest = Vec::new();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.read_to_end(&mut rest);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "not closed after the grace time: {:?}",
        t0.elapsed()
    );
    // The gateway logs it as it closes the connection: the line may follow the EOF.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("login grace time exceeded") {
        assert!(Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
