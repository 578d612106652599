//! End-to-end test harness: runs the real `gatehouse` binary with a fresh state
//! directory on a free loopback port, and drives it with the real OpenSSH client.
//!
//! Needs root (namespaces, mounts), `ssh`/`ssh-keygen`, and a Debian image. The image is
//! built once with `gatehouse image build` into `$GATEHOUSE_TEST_CACHE` (default
//! `/var/cache/gatehouse-test`) and shared by all tests through a symlink.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

pub mod ldap;
pub mod lxd;
use std::time::{Duration, Instant};

/// The gatehouse binary under test (built by `cargo build` before the tests run).
pub fn gatehouse_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GATEHOUSE_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/gatehouse");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

fn cache_dir() -> PathBuf {
    std::env::var_os("GATEHOUSE_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/gatehouse-test"))
}

static IMAGE_LOCK: Mutex<()> = Mutex::new(());

/// The cached lean Debian image directory (`…/images/debian-12`, built with
/// `--minimal`: the built-in init), built on first use.
pub fn debian_image() -> PathBuf {
    cached_image("debian-12", &["--minimal"], "usr/bin/bash")
}

/// The cached full Debian image (`…/images/debian-12-full`: systemd, D-Bus, curl), built
/// on first use.
pub fn full_debian_image() -> PathBuf {
    cached_image(
        "debian-12-full",
        &["--suite", "bookworm"],
        "usr/lib/systemd/systemd",
    )
}

/// An image of the test cache, built with `args` unless it has `marker` already.
fn cached_image(name: &str, args: &[&str], marker: &str) -> PathBuf {
    require_root();
    let _guard = IMAGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache_dir();
    let image = cache.join("images").join(name);
    if image.join("rootfs").join(marker).exists() {
        return image;
    }
    fs::create_dir_all(&cache).unwrap();
    let mut cmd = Command::new(gatehouse_bin());
    cmd.args(["image", "build", name]).args(args);
    if let Ok(m) = std::env::var("GATEHOUSE_TEST_MIRROR") {
        cmd.args(["--mirror", &m]);
    }
    let config = cache.join("build.toml");
    fs::write(
        &config,
        format!("[server]\nstate_dir = \"{}\"\n", cache.display()),
    )
    .unwrap();
    let status = cmd
        .arg("--config")
        .arg(&config)
        .status()
        .expect("run gatehouse image build");
    assert!(status.success(), "building the test image {name} failed");
    image
}

/// Whether this machine can run the end-to-end tests (root).
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Every end-to-end test comes through here (a gateway, the image, LXD, slapd): without
/// root, the test binary says so in one line and ends successfully, so that `cargo test`
/// works for a contributor without root; `scripts/test-all` runs as root and runs them.
pub fn require_root() {
    if !can_run() {
        // Straight to stderr: the test harness captures what `println!` prints.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the end-to-end tests in this binary need root (namespaces, mounts, \
             cgroups); run scripts/test-all as root"
        );
        std::process::exit(0);
    }
}

/// The password of a test user.
pub fn password_of(user: &str) -> String {
    format!("{user}-correct-horse")
}

fn password_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"gatehouse-e2e-salt").expect("salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2")
        .to_string()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Serves `dir` over HTTP on 127.0.0.1:`port` (python's `http.server`, a real server),
/// its request log in `log`; returns once it accepts connections.
pub fn serve_http(dir: &Path, port: u16, log: &Path) -> Kill {
    let server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .expect("python3 -m http.server");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Kill(server)
}

/// Makes `state/images/debian-12` point at the cached test image.
pub fn link_image(state: &Path) {
    fs::create_dir_all(state.join("images")).unwrap();
    std::os::unix::fs::symlink(debian_image(), state.join("images/debian-12")).unwrap();
}

/// Links the cached full image (systemd) into a state directory as `debian-12-full`.
pub fn link_full_image(state: &Path) {
    fs::create_dir_all(state.join("images")).unwrap();
    std::os::unix::fs::symlink(full_debian_image(), state.join("images/debian-12-full")).unwrap();
}

/// OpenSSH client options every test connection uses: no host key bookkeeping.
const CLIENT_OPTIONS: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=20",
];

/// A user of the test directory, with a key pair on disk.
pub struct TestUser {
    /// User name.
    pub name: String,
    /// Private key file.
    pub key: PathBuf,
}

/// The container runtime a test gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded native runtime.
    Native,
    /// A real LXD daemon (a project of its own per gateway).
    Lxd,
}

/// Runs each named test function (taking a [`Backend`]) once per runtime, as
/// `native::NAME` and `lxd::NAME`.
#[macro_export]
macro_rules! on_every_runtime {
    ($($name:ident),* $(,)?) => {
        mod native {
            $( #[test] fn $name() { super::$name($crate::Backend::Native) } )*
        }
        mod lxd {
            $( #[test] fn $name() { super::$name($crate::Backend::Lxd) } )*
        }
    };
}

/// A running gateway with its own state, users and port.
pub struct Gateway {
    /// Temporary directory holding everything.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
    /// The SSH port.
    pub port: u16,
    child: Option<Child>,
    /// Users: alice (uid 10001) and bob (uid 10002), each with a key.
    pub users: Vec<TestUser>,
    /// The LXD project its containers live in (LXD backend).
    pub lxd_project: Option<String>,
}

impl Gateway {
    /// Sets up state and users, then starts `gatehouse serve`.
    pub fn start() -> Gateway {
        Self::start_with("")
    }

    /// Like [`Gateway::start`], with extra TOML appended to the configuration.
    pub fn start_with(extra_config: &str) -> Gateway {
        Self::start_custom(None, "", extra_config)
    }

    /// A gateway on `backend`, otherwise like [`Gateway::start`].
    pub fn start_on(backend: Backend) -> Gateway {
        Self::start_on_with(backend, "")
    }

    /// A gateway on `backend` with `extra_config` appended.
    pub fn start_on_with(backend: Backend, extra_config: &str) -> Gateway {
        match backend {
            Backend::Native => Self::start_with(extra_config),
            Backend::Lxd => Self::start_lxd(extra_config, None),
        }
    }

    /// A gateway on LXD, in `project` (a new one if `None`; it is deleted with the
    /// gateway only if it was made here). `extra_config` goes right after `[runtime]
    /// kind = "lxd"`: keys for `[runtime]` first, then any tables.
    pub fn start_lxd(extra_config: &str, project: Option<&str>) -> Gateway {
        let socket = format!("socket = \"{}\"", lxd::SOCKET);
        Self::start_lxd_at(&socket, extra_config, project)
    }

    /// [`Gateway::start_lxd`] with `endpoint` (`socket = …`, or `url = …` and the
    /// certificates) in `[runtime.lxd]`.
    pub fn start_lxd_at(endpoint: &str, extra_config: &str, project: Option<&str>) -> Gateway {
        let (project, owned) = match project {
            Some(p) => (p.to_string(), false),
            None => (lxd::new_project(), true),
        };
        let mut gw = Self::start_custom(
            None,
            "",
            &format!(
                "[runtime]\nkind = \"lxd\"\n{extra_config}\n[runtime.lxd]\n{endpoint}\nproject = \"{project}\"\n"
            ),
        );
        gw.lxd_project = owned.then_some(project);
        gw
    }

    /// A gateway whose `[directory]` section is `directory` (default: the users file
    /// with alice and bob), with `server_extra` lines in `[server]` and `extra_config`
    /// appended.
    pub fn start_custom(
        directory: Option<&str>,
        server_extra: &str,
        extra_config: &str,
    ) -> Gateway {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("gh-e2e-")
            .tempdir()
            .unwrap();
        // Only root may enter the state directory's parent, as on a careful host.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        }
        let state = dir.path().join("state");
        link_image(&state);
        let mut users = Vec::new();
        let mut users_toml = String::new();
        for (name, uid) in [("alice", 10001), ("bob", 10002)] {
            let key = dir.path().join(format!("{name}_key"));
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key)
                .status()
                .expect("ssh-keygen")
                .success();
            assert!(ok);
            let public = fs::read_to_string(key.with_extension("pub")).unwrap();
            users_toml.push_str(&format!(
                "[[user]]\nname = \"{name}\"\nuid = {uid}\ngroups = [\"devs\"]\nkeys = [\"{}\"]\npassword_hash = \"{}\"\n\n",
                public.trim(),
                password_hash(&password_of(name)),
            ));
            users.push(TestUser {
                name: name.into(),
                key,
            });
        }
        fs::write(dir.path().join("users.toml"), users_toml).unwrap();
        let port = free_port();
        let config = dir.path().join("gatehouse.toml");
        fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\n{server_extra}\n{}\n{extra_config}\n",
                state.display(),
                directory.map(str::to_owned).unwrap_or_else(|| format!(
                    "[directory]\nkind = \"file\"\nfile = \"{}\"\n",
                    dir.path().join("users.toml").display()
                )),
            ),
        )
        .unwrap();
        let mut gw = Gateway {
            dir,
            config,
            port,
            child: None,
            users,
            lxd_project: None,
        };
        gw.spawn();
        gw
    }

    /// Starts (or restarts) the gateway process and waits until it accepts connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "gateway already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap();
        let child = Command::new(gatehouse_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("GATEHOUSE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start gatehouse serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "gateway did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the gateway with SIGKILL (containers must survive).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (as `systemctl stop` does) and waits up to `secs` for the gateway to
    /// exit; its exit status, or `None` if it is still running (then it is killed).
    pub fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Whether the gateway process is still alive.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// The public key of a test user, as one OpenSSH line.
    pub fn public_key(&self, user: &str) -> String {
        fs::read_to_string(self.key(user).with_extension("pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The key of a test user.
    pub fn key(&self, user: &str) -> &Path {
        &self
            .users
            .iter()
            .find(|u| u.name == user)
            .expect("test user")
            .key
    }

    /// Runs a gatehouse admin command against this gateway's state.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(gatehouse_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run gatehouse")
    }

    /// Runs a gatehouse admin command and asserts it succeeded; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "gatehouse {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The audit log as it stands.
    pub fn audit(&self) -> String {
        fs::read_to_string(self.dir.path().join("state/audit/audit.jsonl")).unwrap_or_default()
    }

    /// Every audit event of type `kind` (its fields beside `type`, `seq`, `time`), oldest
    /// first.
    pub fn audit_events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.audit()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// `scp` or `sftp` (`program`) with this gateway's port (`-P`), `key_of`'s key and the
    /// common test options, in batch mode.
    pub fn transfer_command(&self, program: &str, key_of: &str) -> Command {
        let mut c = Command::new(program);
        c.args(["-P", &self.port.to_string()])
            .arg("-i")
            .arg(self.key(key_of))
            .args(CLIENT_OPTIONS)
            .args([
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ]);
        c
    }

    /// `ssh -p PORT` with the common test options and this log level (`ERROR` keeps
    /// stderr to what the gateway says; `INFO` shows banners).
    pub fn client(&self, log_level: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-p", &self.port.to_string()])
            .args(CLIENT_OPTIONS)
            .args(["-o", &format!("LogLevel={log_level}")]);
        c
    }

    /// `sshpass -p PASSWORD ssh …` offering only that password, optionally from a
    /// given local source address.
    pub fn password_client(&self, password: &str, source: Option<&str>) -> Command {
        let mut c = Command::new("sshpass");
        c.args(["-p", password, "ssh", "-p", &self.port.to_string()]);
        if let Some(s) = source {
            c.args(["-b", s]);
        }
        c.args(CLIENT_OPTIONS)
            .args([
                "-o",
                "LogLevel=ERROR",
                "-o",
                "PreferredAuthentications=password",
            ])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ]);
        c
    }

    /// Key login as `ssh_user` with `key_of`'s key, batch mode.
    pub fn ssh_command(&self, key_of: &str, ssh_user: &str) -> Command {
        let mut c = self.client("ERROR");
        c.arg("-i")
            .arg(self.key(key_of))
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg(format!("{ssh_user}@127.0.0.1"));
        c
    }

    /// Password login with the real client (through sshpass): `ssh ssh_user@gw command`.
    pub fn ssh_password(&self, ssh_user: &str, password: &str, command: &str) -> Output {
        self.password_client(password, None)
            .arg(format!("{ssh_user}@127.0.0.1"))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run sshpass")
    }

    /// `ssh -i <key of user> ssh_user@gw command`, stdin empty.
    pub fn ssh(&self, key_of: &str, ssh_user: &str, command: &str) -> Output {
        self.ssh_command(key_of, ssh_user)
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// Like [`Gateway::ssh`] with `input` on stdin.
    pub fn ssh_with_input(
        &self,
        key_of: &str,
        ssh_user: &str,
        command: &str,
        input: &[u8],
    ) -> Output {
        let mut child = self
            .ssh_command(key_of, ssh_user)
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssh");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("ssh output");
        let _ = writer.join();
        out
    }

    /// Creates a container owned by `owner`.
    pub fn create_container(&self, name: &str, owner: &str) {
        self.cli_ok(&[
            "container",
            "create",
            name,
            "--owner",
            owner,
            "--purpose",
            "e2e test",
        ]);
    }

    /// Host pids of the supervisor of container `name` and of its init.
    pub fn supervisor_and_init(&self, name: &str) -> (Option<i32>, Option<i32>) {
        let state = self.dir.path().join("state");
        let want = format!("__supervise\0--state\0{}\0", state.display());
        let pids = || {
            fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        };
        let sup = pids().find(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains(&want)
                && cmdline
                    .trim_end_matches('\0')
                    .ends_with(&format!("\0{name}"))
        });
        // The init is the supervisor's child named `init` (its command line reads
        // `/sbin/init`: it shows no host path).
        let init = sup.and_then(|sup| {
            pids().find(|pid| {
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let parent = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                parent == Some(sup) && comm.trim() == "init"
            })
        });
        (sup, init)
    }

    /// Waits up to `secs` for container `name` to reach `state`.
    pub fn wait_for_state(&self, name: &str, state: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.state_of(name) == state {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The state of a container as `container list --json` reports it.
    pub fn state_of(&self, name: &str) -> String {
        let json = self.cli_ok(&["container", "list", "--json"]);
        let needle = format!("\"name\": \"{name}\"");
        let start = json
            .find(&needle)
            .unwrap_or_else(|| panic!("{name} not listed: {json}"));
        let rest = &json[start..];
        let s = rest.find("\"state\": \"").expect("state field") + "\"state\": \"".len();
        rest[s..].split('"').next().unwrap_or_default().to_string()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // A failing test shows what the gateway said (its last 60 lines).
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("--- gateway log (tail) ---\n{}", tail.join("\n"));
        }
        if std::env::var_os("GATEHOUSE_E2E_KEEP").is_some() {
            eprintln!("keeping {}", self.dir.path().display());
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            let _ = dir.keep();
        }
        if let Some(project) = &self.lxd_project {
            lxd::drop_project(project);
            return;
        }
        // Stop every container of this state directory so nothing is left running.
        if let Ok(out) = Command::new(gatehouse_bin())
            .arg("--config")
            .arg(&self.config)
            .args(["container", "list", "--json"])
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                if let Some(rest) = line.trim().strip_prefix("\"name\": \"") {
                    let name = rest.trim_end_matches("\",");
                    let _ = Command::new(gatehouse_bin())
                        .arg("--config")
                        .arg(&self.config)
                        .args(["container", "stop", name])
                        .output();
                }
            }
        }
        unmount_under(self.dir.path());
    }
}

/// Unmounts what is mounted under `dir` (containers' disks), deepest first, so removing
/// the directory never reaches into a mounted filesystem or leaves a loop device behind.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).output();
    }
}

/// Kills a child process (an ssh-agent, a client left running) when dropped, also when
/// a test fails: one left alive would keep the test run's output open.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A terminal for interactive tests: a detached tmux session running one command.
pub struct Terminal {
    socket: String,
}

impl Terminal {
    /// Starts `command` in a `cols`×`rows` terminal.
    pub fn start(command: &str, cols: u16, rows: u16) -> Terminal {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let term = Terminal {
            socket: format!("gh-e2e-{}-{n}", std::process::id()),
        };
        let out = term.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        term
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux")
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        stdout(&self.tmux(&["capture-pane", "-p", "-t", "t"]))
    }

    /// Types `text` (tmux key names allowed, e.g. `Enter`).
    pub fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Resizes the terminal.
    pub fn resize(&self, cols: u16, rows: u16) {
        self.tmux(&[
            "resize-window",
            "-t",
            "t",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
    }

    /// Waits until the screen shows `needle`; returns the screen.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(needle) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

impl Gateway {
    /// An interactive `ssh -tt` command line for `user_spec`, with the key of `key_of`;
    /// after ssh ends the terminal shows `ssh-exit=N`.
    pub fn interactive_ssh(&self, key_of: &str, user_spec: &str) -> String {
        format!(
            "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -tt {user_spec}@127.0.0.1; echo ssh-exit=$?; sleep 60",
            self.port,
            self.key(key_of).display()
        )
    }
}
