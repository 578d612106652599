//! The embedded `native` runtime: containers made directly from Linux namespaces,
//! overlayfs and cgroups, each owned by its own supervisor process.
//!
//! ```text
//! gateway (tokio) ──unix socket──▶ supervisor (one per container, single-threaded)
//!                                     └─ clone(new pid/mnt/uts/ipc/net ns) ─▶ init (PID 1)
//!                                     └─ fork ─▶ setns ─▶ fork ─▶ session process
//! ```

mod agent;
mod args;
mod backup;
mod cgroups;
mod client;
mod confine;
mod console;
mod cpus;
mod disk;
pub mod dns;
pub mod error;
mod exec_child;
mod firewall;
mod forked;
mod handshake;
mod idmap;
mod init;
mod layered;
mod layout;
mod lxcfs;
mod net;
mod netsetup;
mod netsock;
mod passwd;
mod protocol;
mod pty;
mod rootfs;
mod rtnl;
mod supervisor;
pub mod syscall;

pub use args::SuperviseArgs;
pub use error::NativeError;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::layout::ContainerLayout;
pub use self::supervisor::EXIT_BUSY;
use self::supervisor::{Boot, EtcFiles, SupervisorConfig};
use crate::api::{
    Account, ContainerState, DiskUsage, ExecSpec, ExitStatus, Process, Runtime, StartOutcome,
    Usage, WindowSize,
};
use crate::error::{Result, RuntimeError};
use crate::images::{Images, ID_BASE};
use crate::inventory::{ContainerRecord, InitChoice, Inventory};
use crate::names::validate_container_name;
use crate::network::{hosts_file, resolv_conf, NetworkConfig};

/// Where the host's cgroup hierarchy is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long a stop waits for processes to exit before killing them.
const STOP_GRACE_MS: u64 = 10_000;
/// How long a start may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of the native runtime.
#[derive(Debug, Clone, Default)]
pub struct NativeOptions {
    /// Stop containers this long after their last session (`None`: never), unless a
    /// container says otherwise.
    pub idle_stop: Option<Duration>,
    /// The container network, if any (`[runtime.network]`).
    pub network: Option<NetworkConfig>,
}

/// The native runtime over a state directory.
pub struct NativeRuntime {
    state_dir: PathBuf,
    inventory: Inventory,
    images: Images,
    exe: PathBuf,
    options: NativeOptions,
}

impl NativeRuntime {
    /// Opens the runtime state under `state_dir`; `exe` is the gatehouse binary that
    /// serves `__supervise`.
    pub fn open(state_dir: &Path, exe: PathBuf, options: NativeOptions) -> Result<Self> {
        Ok(NativeRuntime {
            state_dir: state_dir.to_path_buf(),
            inventory: Inventory::open(state_dir.join("containers"))?,
            images: Images::open(state_dir.join("images"))?,
            exe,
            options,
        })
    }

    fn cgroup(&self, name: &str) -> cgroups::Cgroup {
        cgroups::Cgroup::for_container(Path::new(CGROUP_ROOT), &cgroup_name(&self.state_dir, name))
    }

    /// Refuses a rebase of a container whose own layer changed dpkg's database.
    async fn unchanged_packages(&self, name: &str) -> Result<()> {
        let layout = self.layout(name)?;
        let changed = tokio::task::spawn_blocking(move || {
            disk::ensure_mounted(&layout.dir)?;
            layered::own_package_changes(&layout.upper())
                .map_err(|e| RuntimeError::Tool(e.to_string()))
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))??;
        if changed.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::Invalid(format!(
            "container '{name}' changed its packages in its own layer (/var/lib/dpkg: {}): rebasing would hide the image's new packages under its old database; patch it with `gatehouse patch` instead",
            changed.join(", ")
        )))
    }

    /// Runs `f` on the container's own layer and its image's (a blocking task), with
    /// the container's disk mounted when it has one (or nothing is read in its place).
    async fn through_layers<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&Path, &Path) -> std::result::Result<T, NativeError> + Send + 'static,
    ) -> Result<T> {
        let record = self.inventory.get(name)?;
        let lower = self.images.layer(&record.image, record.generation)?;
        let layout = self.layout(name)?;
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            disk::ensure_mounted(&layout.dir)?;
            f(&layout.upper(), &lower).map_err(|e| RuntimeError::Supervisor {
                name,
                reason: e.to_string(),
            })
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))?
    }

    /// The container's cgroup when it runs (to freeze it for a consistent copy).
    async fn running_cgroup(&self, name: &str) -> Result<Option<cgroups::Cgroup>> {
        Ok(match self.state(name).await? {
            ContainerState::Running { .. } => Some(self.cgroup(name)),
            ContainerState::Stopped => None,
        })
    }

    fn layout(&self, name: &str) -> Result<ContainerLayout> {
        Ok(ContainerLayout::new(self.inventory.container_dir(name)?))
    }

    /// Runs a command as `login` to completion; returns its status and combined output.
    async fn run(&self, name: &str, login: &str, command: String) -> Result<(ExitStatus, String)> {
        self.exec(name, ExecSpec::command(login, command))
            .await?
            .finish()
            .await
    }

    async fn lock_is_free(&self, layout: &ContainerLayout) -> bool {
        let path = layout.lock();
        tokio::task::spawn_blocking(move || matches!(crate::lockfile::try_lock(&path), Ok(Some(_))))
            .await
            .unwrap_or(false)
    }
}

/// Entry point of the hidden `gatehouse __supervise` command (see [`SuperviseArgs`]).
/// Must run in a single-threaded process (no async runtime).
pub fn supervise_main(args: SuperviseArgs) -> i32 {
    let relaunch = args.to_args();
    let SuperviseArgs {
        state,
        name,
        idle_stop,
        network,
    } = args;
    let (state_dir, name) = (state.as_path(), name.as_str());
    let prepare = || -> Result<SupervisorConfig> {
        validate_container_name(name)?;
        let inventory = Inventory::open(state_dir.join("containers"))?;
        let record = inventory.get(name)?;
        let images = Images::open(state_dir.join("images"))?;
        images.ensure_shifted(&record.image, ID_BASE)?;
        let dir = inventory.container_dir(name)?;
        let id_base = inventory.assign_id_base(name, |from, to| move_files(&dir, from, to))?;
        let network = match network {
            Some(net) => {
                let addr = inventory.assign_address(name, &net)?;
                if net.domain.is_some() {
                    dns::write_entry(&net.bridge, name, addr)
                        .map_err(|e| RuntimeError::Tool(format!("container DNS: {e}")))?;
                }
                Some((net, addr))
            }
            None => None,
        };
        let dns = network.as_ref().is_some_and(|(n, _)| n.domain.is_some());
        // With DNS, containers find each other by asking it; /etc/hosts names only itself.
        let hosts = if dns {
            hosts_file(name, &[])
        } else {
            hosts_file(name, &peers(&inventory)?)
        };
        let resolv = network.as_ref().and_then(|(n, _)| resolv_conf(n));
        let image_rootfs = images.layer(&record.image, record.generation)?;
        let boot = match record.init {
            Some(InitChoice::Image) => Boot::Image,
            Some(InitChoice::Builtin) => Boot::Builtin,
            None if has_init(&image_rootfs) => Boot::Image,
            None => Boot::Builtin,
        };
        // A machine running its own init runs services, which are not sessions: it
        // stops when idle only if its record says so.
        let idle_stop = match (&record.idle_stop, boot) {
            (Some(own), _) => crate::limits::parse_duration(own)?,
            (None, Boot::Image) => None,
            (None, Boot::Builtin) => idle_stop,
        };
        Ok(SupervisorConfig {
            boot,
            relaunch: relaunch.clone(),
            name: name.to_string(),
            layout: ContainerLayout::new(inventory.container_dir(name)?),
            image_rootfs,
            limits: record.limits,
            cgroup_root: PathBuf::from(CGROUP_ROOT),
            cgroup_name: cgroup_name(state_dir, name),
            id_base,
            idle_stop,
            network,
            etc: EtcFiles { hosts, resolv },
            confinement: super::native::confine::Profile {
                nesting: record.nesting,
            },
        })
    };
    match prepare() {
        Ok(cfg) => supervisor::launch(cfg),
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Whether an image has an init of its own (`/sbin/init`, looked up inside the image's
/// root: an imported image's links cannot point the check at the host).
fn has_init(image_rootfs: &Path) -> bool {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let Ok(root) = rustix::fs::open(
        image_rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    rustix::fs::openat2(
        &root,
        "sbin/init",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .is_ok()
}

/// Moves a container's own files (its layer and its snapshots') from the id range at
/// `from` to the one at `to`.
fn move_files(dir: &Path, from: u32, to: u32) -> Result<()> {
    let mut layers = vec![ContainerLayout::new(dir).upper()];
    if let Ok(snaps) = std::fs::read_dir(dir.join("snapshots")) {
        layers.extend(snaps.flatten().map(|s| s.path().join("upper")));
    }
    for layer in layers.iter().filter(|l| l.exists()) {
        crate::images::move_tree(layer, from, to)?;
    }
    Ok(())
}

/// Starts the containers' DNS server for the lifetime of the returned value, with every
/// container of `state_dir` that has an address (see [`dns`]); `None` when the network
/// has no DNS.
pub fn start_dns(state_dir: &Path, net: &NetworkConfig) -> Result<Option<dns::DnsServer>> {
    let inventory = Inventory::open(state_dir.join("containers"))?;
    dns::DnsServer::start(net, &peers(&inventory)?)
        .map_err(|e| RuntimeError::Tool(format!("container DNS: {e}")))
}

/// Every container with an address, for `/etc/hosts` and DNS.
fn peers(inventory: &Inventory) -> Result<Vec<(String, std::net::Ipv4Addr)>> {
    Ok(inventory
        .list()?
        .into_iter()
        .filter_map(|r| r.address.map(|a| (r.name, a)))
        .collect())
}

/// How long a forwarded connection may take to connect inside a container.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The cgroup of a container: its name prefixed with a digest of the state directory,
/// so two gateways on one host (or parallel tests) never share a cgroup.
fn cgroup_name(state_dir: &Path, name: &str) -> String {
    use sha2::Digest;
    let canonical = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{short}.{name}")
}

#[async_trait]
impl Runtime for NativeRuntime {
    fn kind(&self) -> &'static str {
        "native"
    }

    async fn create(&self, record: ContainerRecord) -> Result<()> {
        validate_container_name(&record.name)?;
        // A new container starts on the image's newest generation.
        let mut record = record;
        record.generation = match self.images.latest(&record.image)? {
            1 => None,
            n => Some(n),
        };
        self.inventory.create(&record)?;
        if let Some(bytes) = record.limits.disk {
            let dir = self.layout(&record.name)?.dir;
            let made = tokio::task::spawn_blocking(move || disk::create(&dir, bytes))
                .await
                .map_err(|e| RuntimeError::Tool(e.to_string()))?;
            if let Err(e) = made {
                let _ = self.inventory.remove(&record.name);
                return Err(e);
            }
        }
        if let Some(net) = &self.options.network {
            let address = self.inventory.assign_address(&record.name, net)?;
            if net.domain.is_some() {
                // Answered by the DNS server from now on (it watches its entries).
                dns::write_entry(&net.bridge, &record.name, address)
                    .map_err(|e| RuntimeError::Tool(format!("container DNS: {e}")))?;
            }
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<ContainerRecord> {
        self.inventory.get(name)
    }

    async fn list(&self) -> Result<Vec<ContainerRecord>> {
        self.inventory.list()
    }

    async fn update(&self, record: &ContainerRecord) -> Result<()> {
        self.inventory.get(&record.name)?;
        self.inventory.save(record)
    }

    async fn state(&self, name: &str) -> Result<ContainerState> {
        let layout = self.layout(name)?;
        Ok(match client::ping(&layout.socket()).await {
            Some((_, since)) => ContainerState::Running { since },
            None => ContainerState::Stopped,
        })
    }

    async fn usage(&self, name: &str) -> Result<Option<Usage>> {
        if self.state(name).await? == ContainerState::Stopped {
            return Ok(None);
        }
        let u = self.cgroup(name).usage();
        Ok(Some(Usage {
            memory_bytes: u.memory,
            processes: u.pids,
            cpu_usec: u.cpu_usec,
        }))
    }

    async fn apply_limits(&self, name: &str) -> Result<bool> {
        let record = self.inventory.get(name)?;
        if self.state(name).await? == ContainerState::Stopped {
            return Ok(false);
        }
        self.cgroup(name).apply(&record.limits).map_err(|e| {
            RuntimeError::Invalid(format!(
                "cannot change the limits of running container '{name}': {e}"
            ))
        })?;
        Ok(true)
    }

    async fn start(&self, name: &str) -> Result<StartOutcome> {
        let record = self.inventory.get(name)?;
        self.images.layer(&record.image, record.generation)?;
        let layout = self.layout(name)?;
        if client::ping(&layout.socket()).await.is_some() {
            return Ok(StartOutcome::AlreadyRunning);
        }
        for other in crate::affinity::kept_apart(&self.inventory.list()?, name) {
            if client::ping(&self.layout(&other)?.socket()).await.is_some() {
                return Err(RuntimeError::Placement(format!(
                    "container '{name}' must not run on the same host as '{other}' (label {}); \
                     this runtime has one host: stop '{other}' first",
                    crate::affinity::DR_OF
                )));
            }
        }
        let dir = layout.dir.clone();
        tokio::task::spawn_blocking(move || disk::ensure_mounted(&dir))
            .await
            .map_err(|e| RuntimeError::Tool(e.to_string()))??;
        // The container's /proc figures come from LXCFS where it is installed.
        let _ = tokio::task::spawn_blocking(lxcfs::ensure).await;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let args = SuperviseArgs {
                state: self.state_dir.clone(),
                name: name.to_string(),
                idle_stop: self.options.idle_stop,
                network: self.options.network.clone(),
            };
            let out = tokio::process::Command::new(&self.exe)
                .arg("__supervise")
                .args(args.to_args())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .await
                .map_err(|e| RuntimeError::StartFailed {
                    name: name.into(),
                    reason: format!("cannot run {}: {e}", self.exe.display()),
                })?;
            match out.status.code() {
                Some(0) => return Ok(StartOutcome::Started),
                Some(EXIT_BUSY) => {
                    // Someone else is starting it (or it is stopping): wait and look again.
                    if client::ping(&layout.socket()).await.is_some() {
                        return Ok(StartOutcome::AlreadyRunning);
                    }
                    if Instant::now() > deadline {
                        return Err(RuntimeError::StartFailed {
                            name: name.into(),
                            reason: "timed out waiting for another start or stop".into(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                _ => {
                    return Err(RuntimeError::StartFailed {
                        name: name.into(),
                        reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    })
                }
            }
        }
    }

    async fn stop(&self, name: &str) -> Result<()> {
        self.inventory.get(name)?;
        let layout = self.layout(name)?;
        client::stop(name, &layout.socket(), STOP_GRACE_MS).await?;
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS + 5_000);
        while !self.lock_is_free(&layout).await {
            if Instant::now() > deadline {
                return Err(RuntimeError::Supervisor {
                    name: name.into(),
                    reason: "the supervisor did not exit after stopping".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.stop(name).await?;
        // Unmounted first: removing the directory must never reach into the disk.
        disk::remove(&self.layout(name)?.dir)?;
        self.inventory.remove(name)?;
        if let Some(net) = self.options.network.as_ref().filter(|n| n.domain.is_some()) {
            dns::remove_entry(&net.bridge, name);
        }
        Ok(())
    }

    async fn prepare_session(&self, name: &str, account: Option<&Account>) -> Result<()> {
        let mut script = String::new();
        if let Some(account) = account {
            script.push_str(&crate::accounts::script(account)?);
        }
        if self
            .options
            .network
            .as_ref()
            .is_some_and(|n| n.domain.is_none())
        {
            // Without DNS, containers started since this one learn of each other here.
            let hosts = hosts_file(name, &peers(&self.inventory)?);
            script.push_str(&format!(
                "cat > /etc/hosts.gatehouse <<'GATEHOUSE_HOSTS'\n{hosts}GATEHOUSE_HOSTS\nmv /etc/hosts.gatehouse /etc/hosts\n"
            ));
        }
        if script.is_empty() {
            return Ok(());
        }
        let (status, output) = self.run(name, "root", script).await?;
        if status != ExitStatus::Code(0) {
            return Err(RuntimeError::Invalid(format!(
                "cannot prepare a session in container '{name}': {}",
                output.trim()
            )));
        }
        Ok(())
    }

    async fn snapshot(&self, name: &str, snap: &str) -> Result<()> {
        let layout = self.layout(name)?;
        self.inventory.get(name)?;
        let cgroup = self.running_cgroup(name).await?;
        let snap = snap.to_string();
        tokio::task::spawn_blocking(move || {
            disk::ensure_mounted(&layout.dir)?;
            backup::snapshot(&layout, &snap, cgroup.as_ref()).map(drop)
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))?
    }

    async fn backup(&self, name: &str, file: &Path) -> Result<()> {
        let layout = self.layout(name)?;
        self.inventory.get(name)?;
        let cgroup = self.running_cgroup(name).await?;
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || {
            disk::ensure_mounted(&layout.dir)?;
            backup::backup(&layout, &file, cgroup.as_ref())
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))?
    }

    async fn restore(&self, file: &Path, as_name: Option<&str>) -> Result<String> {
        let inventory = self.inventory.clone();
        let root = self.state_dir.join("containers");
        let (file, as_name) = (file.to_path_buf(), as_name.map(str::to_owned));
        let name = tokio::task::spawn_blocking(move || {
            backup::restore(&inventory, &root, &file, as_name.as_deref())
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))??;
        if let Some(net) = &self.options.network {
            self.inventory.assign_address(&name, net)?;
        }
        Ok(name)
    }

    async fn set_disk(&self, name: &str, bytes: u64) -> Result<()> {
        self.inventory.get(name)?;
        let layout = self.layout(name)?;
        if !disk::check_change(&layout.dir, bytes)? {
            return Ok(());
        }
        let dir = layout.dir.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            // Held while the disk changes: no supervisor starts the container meanwhile.
            let Some(_stopped) = crate::lockfile::try_lock(&layout.lock())? else {
                return Err(RuntimeError::Invalid(format!(
                    "container '{name}' runs: stop it to change its disk"
                )));
            };
            if disk::exists(&dir) {
                disk::grow(&dir, bytes)
            } else {
                disk::adopt(&dir, bytes)
            }
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))?
    }

    async fn read_file(&self, name: &str, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let path = path.to_string();
        self.through_layers(name, move |upper, lower| {
            layered::read(upper, lower, &path, max)
        })
        .await
    }

    async fn list_dir(&self, name: &str, path: &str, max: usize) -> Result<Option<Vec<String>>> {
        let path = path.to_string();
        self.through_layers(name, move |upper, lower| {
            layered::list(upper, lower, &path, max)
        })
        .await
    }

    async fn rebase(&self, name: &str, image: Option<&str>) -> Result<(String, u32)> {
        let mut record = self.inventory.get(name)?;
        let image = image.unwrap_or(&record.image).to_string();
        let latest = self.images.latest(&image)?;
        if image == record.image && record.generation.unwrap_or(1) >= latest {
            return Err(RuntimeError::Invalid(format!(
                "container '{name}' is on the newest generation of {image} ({latest}) already"
            )));
        }
        self.unchanged_packages(name).await?;
        let running = !matches!(self.state(name).await?, ContainerState::Stopped);
        if running {
            self.stop(name).await?;
            // What it did until it stopped counts too.
            if let Err(e) = self.unchanged_packages(name).await {
                self.start(name).await?;
                return Err(e);
            }
        }
        record.image = image.clone();
        record.generation = (latest > 1).then_some(latest);
        self.inventory.save(&record)?;
        if running {
            self.start(name).await?;
        }
        Ok((image, latest))
    }

    async fn rollback(&self, name: &str, snap: &str) -> Result<()> {
        let layout = self.layout(name)?;
        self.inventory.get(name)?;
        let running = !matches!(self.state(name).await?, ContainerState::Stopped);
        if running {
            self.stop(name).await?;
        }
        let snap = snap.to_string();
        tokio::task::spawn_blocking(move || {
            disk::ensure_mounted(&layout.dir)?;
            backup::rollback(&layout, &snap)
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))??;
        if running {
            self.start(name).await?;
        }
        Ok(())
    }

    async fn disk_usage(&self, name: &str) -> Result<Option<DiskUsage>> {
        let dir = self.layout(name)?.dir;
        tokio::task::spawn_blocking(move || {
            if !disk::ensure_mounted(&dir)? {
                return Ok(None);
            }
            Ok(disk::usage(&dir))
        })
        .await
        .map_err(|e| RuntimeError::Tool(e.to_string()))?
    }

    async fn reconcile(&self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        for record in self.inventory.list()? {
            let layout = self.layout(&record.name)?;
            if !self.lock_is_free(&layout).await {
                continue; // a live supervisor owns it
            }
            if layout.socket().exists() {
                let _ = std::fs::remove_file(layout.socket());
                notes.push(format!(
                    "{}: its supervisor had died; marked stopped",
                    record.name
                ));
            }
            let cgroup = self.cgroup(&record.name);
            if cgroup.exists() {
                cgroup.remove();
                notes.push(format!("{}: removed its leftover cgroup", record.name));
            }
        }
        Ok(notes)
    }

    async fn exec(&self, name: &str, spec: ExecSpec) -> Result<Process> {
        let layout = self.layout(name)?;
        let req = protocol::ExecRequest {
            login: spec.login,
            command: spec.command,
            argv: spec.argv,
            session: spec.session,
            pty: spec.pty.map(|p| (p.term, p.size.cols, p.size.rows)),
            env: spec.env,
            sftp: spec.sftp,
        };
        client::exec(name, &layout.socket(), req).await
    }

    async fn listen(
        &self,
        name: &str,
        addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpListener> {
        let fd = client::socket(name, &self.layout(name)?.socket()).await?;
        let failed = |e: std::io::Error| {
            RuntimeError::Invalid(format!(
                "cannot listen on {addr} in container '{name}': {e}"
            ))
        };
        let std_socket = std::net::TcpStream::from(fd);
        std_socket.set_nonblocking(true).map_err(failed)?;
        let socket = tokio::net::TcpSocket::from_std_stream(std_socket);
        socket.set_reuseaddr(true).map_err(failed)?;
        socket.bind(addr.into()).map_err(failed)?;
        socket.listen(64).map_err(failed)
    }

    async fn end_session(&self, name: &str, session: &str, kill: bool) -> Result<usize> {
        validate_container_name(name)?;
        if !cgroups::valid_session_id(session) {
            return Err(RuntimeError::Invalid(format!(
                "invalid session id '{session}'"
            )));
        }
        let container = self.cgroup(name);
        let own = container.session(session);
        tokio::task::spawn_blocking(move || {
            let killed = if kill {
                let n = own.kill();
                // The killed are gone once the kernel has reaped them: give it a moment.
                std::thread::sleep(std::time::Duration::from_millis(50));
                n
            } else {
                Ok(0)
            };
            // An empty directory is removed now, a busy one at a later session's end or
            // at the stop.
            container.remove_empty_sessions();
            killed
        })
        .await
        .map_err(|e| RuntimeError::Engine(format!("session cleanup: {e}")))?
        .map_err(|e| {
            RuntimeError::Engine(format!(
                "cannot end the processes of session {session} in '{name}': {e}"
            ))
        })
    }

    async fn console(&self, name: &str, size: WindowSize) -> Result<Process> {
        let layout = self.layout(name)?;
        if matches!(self.state(name).await?, ContainerState::Stopped) {
            return Err(RuntimeError::Invalid(format!(
                "container '{name}' is not running (start it with `gatehouse container start {name}`)"
            )));
        }
        client::console(name, &layout.socket(), size).await
    }

    async fn agent_listener(
        &self,
        name: &str,
        login: &str,
    ) -> Result<(tokio::net::UnixListener, String)> {
        let (fd, path) = client::agent_listener(name, &self.layout(name)?.socket(), login).await?;
        let std_listener = std::os::unix::net::UnixListener::from(fd);
        let failed =
            |e: std::io::Error| RuntimeError::Invalid(format!("agent socket in '{name}': {e}"));
        std_listener.set_nonblocking(true).map_err(failed)?;
        let listener = tokio::net::UnixListener::from_std(std_listener).map_err(failed)?;
        Ok((listener, path))
    }

    async fn connect(
        &self,
        name: &str,
        addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpStream> {
        let fd = client::socket(name, &self.layout(name)?.socket()).await?;
        let failed = |e: std::io::Error| {
            RuntimeError::Invalid(format!(
                "cannot connect to {addr} in container '{name}': {e}"
            ))
        };
        let std_stream = std::net::TcpStream::from(fd);
        std_stream.set_nonblocking(true).map_err(failed)?;
        let socket = tokio::net::TcpSocket::from_std_stream(std_stream);
        match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr.into())).await {
            Ok(r) => r.map_err(failed),
            Err(_) => Err(failed(std::io::ErrorKind::TimedOut.into())),
        }
    }
}
