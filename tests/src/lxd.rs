//! A real LXD daemon for the end-to-end tests (Debian's `lxd` package): started if it is
//! not running, given a `dir` storage pool and no network, and a `debian-12` image built
//! once with `gatehouse image build` (kept in LXD's store for later runs). Each test
//! gateway works in a project of its own, so tests in parallel never share container
//! names, and dropping the gateway removes the project with everything in it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// LXD's socket.
pub const SOCKET: &str = "/var/lib/lxd/unix.socket";

const PRESEED: &str = "config: {}\nnetworks: []\nstorage_pools:\n- name: default\n  driver: dir\n  config: {}\nprofiles:\n- name: default\n  config: {}\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";

static READY: Mutex<Option<Result<(), String>>> = Mutex::new(None);

fn lxc(args: &[&str]) -> Result<String, String> {
    let out = Command::new("lxc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("lxc: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "lxc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn answers() -> bool {
    Path::new(SOCKET).exists() && lxc(&["info"]).is_ok()
}

fn start_daemon() -> Result<(), String> {
    if answers() {
        return Ok(());
    }
    Command::new("setsid")
        .args([
            "lxd",
            "--group",
            "root",
            "--logfile",
            "/var/log/gatehouse-test-lxd.log",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start lxd ({e}); is the lxd package installed?"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers() {
        if Instant::now() > deadline {
            return Err("lxd did not answer within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn initialise() -> Result<(), String> {
    if lxc(&["storage", "show", "default"]).is_ok() {
        return Ok(());
    }
    let mut child = Command::new("lxd")
        .args(["init", "--preseed"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("lxd init: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(PRESEED.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    match child.wait() {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("lxd init --preseed failed: {other:?}")),
    }
}

fn image() -> Result<(), String> {
    if lxc(&["image", "show", "debian-12"]).is_ok() {
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("lxd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nstate_dir = \"{}\"\n[runtime]\nkind = \"lxd\"\n",
            dir.path().join("state").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(crate::gatehouse_bin());
    cmd.arg("--config")
        .arg(&config)
        .args(["image", "build", "debian-12"]);
    if let Ok(m) = std::env::var("GATEHOUSE_TEST_MIRROR") {
        cmd.args(["--mirror", &m]);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("building the LXD test image failed: {other:?}")),
    }
}

/// Makes sure the daemon runs, is initialised and has the test image.
pub fn ensure() {
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if ready.is_none() {
        *ready = Some(
            start_daemon()
                .and_then(|()| initialise())
                .and_then(|()| image()),
        );
    }
    if let Some(Err(e)) = ready.as_ref() {
        panic!("LXD is not usable for the tests: {e}");
    }
}

/// A new, empty project sharing the default project's images and profiles.
pub fn new_project() -> String {
    ensure();
    let name = format!("gh{:08x}", rand_u32());
    lxc(&[
        "project",
        "create",
        &name,
        "-c",
        "features.images=false",
        "-c",
        "features.profiles=false",
    ])
    .expect("create an LXD project");
    name
}

/// Deletes every instance of `project`, then the project.
pub fn drop_project(project: &str) {
    if let Ok(list) = lxc(&["list", "--project", project, "-c", "n", "--format", "csv"]) {
        for name in list.lines().filter(|l| !l.is_empty()) {
            let _ = lxc(&["delete", "--force", "--project", project, name]);
        }
    }
    let _ = lxc(&["project", "delete", project]);
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    u32::from_ne_bytes(b) ^ std::process::id()
}
