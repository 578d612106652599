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
    crate::require_root();
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
    // An instance still busy (stopping) refuses the first delete: a few tries, so that no
    // instance is left to hold its id range.
    for _ in 0..5 {
        // Gone already (another gateway of the test dropped it).
        let Ok(list) = lxc(&["list", "--project", project, "-c", "n", "--format", "csv"]) else {
            return;
        };
        for name in list.lines().filter(|l| !l.is_empty()) {
            let _ = lxc(&["delete", "--force", "--project", project, name]);
        }
        if lxc(&["project", "delete", project]).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    u32::from_ne_bytes(b) ^ std::process::id()
}

/// Where the two members of the test cluster keep their state.
/// The main daemon's HTTPS address, for the remote-daemon tests.
pub const HTTPS: &str = "127.0.0.1:18443";

/// Certificates for reaching the main daemon over HTTPS, in [`REMOTE_DIR`].
pub struct RemoteCerts {
    /// A client certificate the daemon trusts, and its key.
    pub client: (String, String),
    /// A client certificate the daemon does not know, and its key.
    pub stranger: (String, String),
    /// The daemon's certificate.
    pub server: String,
    /// A certificate that is not the daemon's.
    pub impostor: String,
}

/// Where [`remote`] keeps its certificates.
pub const REMOTE_DIR: &str = "/tmp/gh-lxd-remote";

static REMOTE: Mutex<Option<Result<(), String>>> = Mutex::new(None);

/// Makes the main daemon listen on [`HTTPS`] and trust a fresh client certificate.
pub fn remote() -> RemoteCerts {
    ensure();
    let mut ready = REMOTE.lock().unwrap_or_else(|e| e.into_inner());
    if ready.is_none() {
        let script = format!(
            r#"set -e
mkdir -p {REMOTE_DIR}; cd {REMOTE_DIR}
for n in client stranger impostor; do
  [ -s $n.crt ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes \
    -keyout $n.key -out $n.crt -days 3650 -subj /CN=gatehouse-test-$n 2>/dev/null
done
lxc config set core.https_address {HTTPS}
# Trusted now, or already (a certificate is trusted once, by its fingerprint).
lxc config trust add client.crt --name gatehouse-test-client 2>/dev/null || \
  lxc config trust list --format csv | grep -qi "$(openssl x509 -in client.crt -noout \
    -fingerprint -sha256 | cut -d= -f2 | tr -d : | cut -c1-12)"
"#
        );
        let out = Command::new("sh").args(["-c", &script]).output();
        *ready = Some(match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Err(e.to_string()),
        });
    }
    if let Some(Err(e)) = ready.as_ref() {
        panic!("cannot reach LXD over HTTPS for the tests: {e}");
    }
    let pair = |n: &str| {
        (
            format!("{REMOTE_DIR}/{n}.crt"),
            format!("{REMOTE_DIR}/{n}.key"),
        )
    };
    RemoteCerts {
        client: pair("client"),
        stranger: pair("stranger"),
        server: "/var/lib/lxd/server.crt".into(),
        impostor: format!("{REMOTE_DIR}/impostor.crt"),
    }
}

const CLUSTER_DIRS: [&str; 2] = ["/tmp/gh-lxd-cluster-a", "/tmp/gh-lxd-cluster-b"];

/// Brings up two private LXD daemons on this machine (members `a` on 127.0.0.2 and `b`
/// on 127.0.0.3, a `dir` pool each, no network), joins them into a cluster and gives it
/// the `debian-12` image of the main daemon. Everything is removed on drop.
const CLUSTER_UP: &str = r#"set -e
A=/tmp/gh-lxd-cluster-a; B=/tmp/gh-lxd-cluster-b
for d in $A $B; do mkdir -p $d; chmod 711 $d; LXD_DIR=$d setsid lxd --group root --logfile $d.log </dev/null >/dev/null 2>&1 & done
for d in $A $B; do LXD_DIR=$d lxd waitready --timeout 60; done
printf 'config:\n  core.https_address: 127.0.0.2:8443\n  images.auto_update_interval: "0"\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\ncluster:\n  server_name: a\n  enabled: true\n' | LXD_DIR=$A lxd init --preseed
TOKEN=$(LXD_DIR=$A lxc cluster add b --quiet)
printf 'cluster:\n  enabled: true\n  server_name: b\n  server_address: 127.0.0.3:8443\n  cluster_token: %s\n  member_config:\n  - entity: storage-pool\n    name: default\n    key: source\n    value: ""\n' "$TOKEN" | LXD_DIR=$B lxd init --preseed
export_dir=$(mktemp -d)
env -u LXD_DIR lxc image export debian-12 $export_dir/image >/dev/null
LXD_DIR=$A lxc image import $export_dir/image* --alias debian-12 >/dev/null
rm -rf $export_dir
"#;

const CLUSTER_DOWN: &str = r#"
for d in /tmp/gh-lxd-cluster-b /tmp/gh-lxd-cluster-a; do
  [ -S $d/unix.socket ] || continue
  LXD_DIR=$d timeout 30 lxc stop --all --force >/dev/null 2>&1
done
for d in /tmp/gh-lxd-cluster-b /tmp/gh-lxd-cluster-a; do
  [ -S $d/unix.socket ] && LXD_DIR=$d timeout 60 lxd shutdown >/dev/null 2>&1
done
for m in $(awk '$2 ~ "^/tmp/gh-lxd-cluster-" {print $2}' /proc/self/mounts | sort -r); do umount -l "$m"; done
rm -rf /tmp/gh-lxd-cluster-a /tmp/gh-lxd-cluster-b /tmp/gh-lxd-cluster-a.log /tmp/gh-lxd-cluster-b.log
true
"#;

/// A two-member LXD cluster for placement tests (one at a time).
pub struct Cluster;

impl Cluster {
    /// Forms the cluster (a few seconds).
    pub fn start() -> Cluster {
        ensure();
        let _ = Command::new("bash").args(["-c", CLUSTER_DOWN]).status();
        let out = Command::new("bash")
            .args(["-c", CLUSTER_UP])
            .env_remove("LXD_DIR")
            .output()
            .expect("bash");
        let cluster = Cluster;
        assert!(
            out.status.success(),
            "forming the LXD test cluster failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// The first member's socket (any member answers for the whole cluster).
    pub fn socket(&self) -> String {
        format!("{}/unix.socket", CLUSTER_DIRS[0])
    }

    /// The member instance `name` is on, as LXD says.
    pub fn location(&self, name: &str) -> String {
        let out = Command::new("lxc")
            .args(["list", "-c", "nL", "-f", "csv"])
            .env("LXD_DIR", CLUSTER_DIRS[0])
            .output()
            .expect("lxc");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name},")))
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").args(["-c", CLUSTER_DOWN]).status();
    }
}
