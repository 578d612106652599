//! `gatehouse demo` prints an ssh line that works as printed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use gatehouse_e2e::{free_port, gatehouse_bin, link_image};

#[test]
fn demo_prints_a_working_ssh_line() {
    gatehouse_e2e::require_root();
    let dir = tempfile::Builder::new()
        .prefix("gh-demo-")
        .tempdir()
        .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = home.join(".ssh/id_ed25519");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let state = dir.path().join("state");
    link_image(&state);
    let port = free_port();
    let mut demo = Command::new(gatehouse_bin())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--state"])
        .arg(&state)
        .env("HOME", &home)
        .env("USER", "tester")
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.trim_start().starts_with("ssh "))
        .expect("demo printed no ssh line");
    let mut args: Vec<String> = line.split_whitespace().skip(1).map(str::to_owned).collect();
    let destination = args.pop().unwrap();
    assert_eq!(destination, "tester@demo@127.0.0.1", "{line}");
    args.extend([
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ]);
    // The gateway starts serving right after printing; retry briefly.
    let mut out = None;
    for _ in 0..300 {
        let o = Command::new("ssh")
            .args(&args)
            .arg(&destination)
            .arg("hostname; id -un; getent hosts demo.gatehouse >/dev/null && echo named")
            .output()
            .unwrap();
        if o.status.success() {
            out = Some(o);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = demo.kill();
    let _ = demo.wait();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[server]\nstate_dir = \"{}\"\n", state.display()),
    )
    .unwrap();
    let _ = Command::new(gatehouse_bin())
        .arg("--config")
        .arg(&config)
        .args(["container", "stop", "demo"])
        .output();
    // The demo's network: its DNS server (left by the killed demo) and bridge go too.
    if let Ok(pid) = std::fs::read_to_string("/run/gatehouse/dns/gh0.pid") {
        let _ = Command::new("kill").arg(pid.trim()).output();
    }
    let _ = Command::new("ip").args(["link", "del", "gh0"]).output();
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", "gatehouse-gh0"])
        .output();
    let out = out.expect("the printed ssh line never worked");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "demo\ntester\nnamed\n"
    );
}
