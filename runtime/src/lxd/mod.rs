//! The LXD backend: containers are LXD instances, driven through LXD's REST API on its
//! unix socket or over HTTPS ([`client`], [`transport`]); the inventory lives in the
//! instances' config ([`records`]); processes run through the exec API's websockets
//! ([`exec`]); what is done inside an instance as root (boot wait, accounts, logins) is
//! in `inside.rs`.

pub mod agent;
pub mod boot_cache;
pub mod client;
pub mod exec;
mod files;
pub mod idle;
pub mod ids;
pub mod images;
mod inside;
pub mod netns;
pub mod placement;
pub mod records;
pub mod tls;
pub mod transport;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::Utc;
use hyper::Method;
use serde_json::{json, Value};

use self::client::LxdClient;
use self::inside::Login;
use crate::api::{
    Account, ContainerState, ExecSpec, Process, Runtime, StartOutcome, Usage, WindowSize,
};
use crate::error::{LxdRefusal, Result, RuntimeError};
use crate::inventory::ContainerRecord;
use crate::names::validate_container_name;

/// Where LXD and Incus put their local socket, in the order tried.
pub const SOCKETS: &[&str] = &[
    "/var/lib/lxd/unix.socket",
    "/var/snap/lxd/common/lxd/unix.socket",
    "/var/lib/incus/unix.socket",
];

/// `[runtime.lxd]`.
#[derive(Debug, Clone)]
pub struct LxdSettings {
    /// The daemon's unix socket (unless `remote` is set).
    pub socket: PathBuf,
    /// A remote daemon reached over HTTPS instead of the local socket. Port and agent
    /// forwarding need the gateway on the daemon's host, so they are refused then.
    pub remote: Option<transport::Remote>,
    /// The LXD project containers live in.
    pub project: String,
    /// Profiles given to new instances.
    pub profiles: Vec<String>,
    /// A storage pool for new instances' root disks (else the profiles' choice).
    pub pool: Option<String>,
    /// Stop an instance this long after the last session this gateway ran in it
    /// (`None`: never), unless its record says otherwise.
    pub idle_stop: Option<std::time::Duration>,
}

impl LxdSettings {
    /// The first of [`SOCKETS`] that exists (LXD's own path if none does).
    pub fn default_socket() -> PathBuf {
        SOCKETS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(SOCKETS[0]))
    }

    /// Where the daemon is: the remote one if set, else the local socket.
    pub fn endpoint(&self) -> Result<transport::Endpoint> {
        match &self.remote {
            Some(r) => transport::Endpoint::https(r),
            None => Ok(transport::Endpoint::unix(&self.socket)),
        }
    }
}

/// How long a graceful stop may take before it is forced.
const STOP_TIMEOUT_SECS: i64 = 30;

/// The LXD runtime.
pub struct LxdRuntime {
    client: LxdClient,
    settings: LxdSettings,
    /// Logins looked up, per instance boot.
    logins: boot_cache::PerBoot<Login>,
    /// Accounts made ready since the container started (container, account), so later
    /// sessions skip the round trip.
    prepared: boot_cache::PerBoot<()>,
    /// Sessions running per instance, for idle stop.
    sessions: idle::Sessions,
    /// Whether the idle sweeper runs.
    sweeping: std::sync::atomic::AtomicBool,
    /// This runtime, for the sweeper (set by [`LxdRuntime::new`]).
    me: std::sync::Weak<LxdRuntime>,
    /// One start at a time per container (LXD refuses a second while one runs).
    starting: std::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

fn instance(name: &str) -> Result<String> {
    validate_container_name(name)?;
    Ok(format!("/1.0/instances/{name}"))
}

/// LXD's "not found" for an instance, as ours.
fn missing(name: &str) -> impl Fn(RuntimeError) -> RuntimeError + '_ {
    move |e| match e {
        e if e.lxd_refusal() == Some(LxdRefusal::NotFound) => {
            RuntimeError::NoSuchContainer(name.to_string())
        }
        other => other,
    }
}

impl LxdRuntime {
    /// A runtime talking to the daemon `settings` name. Fails only on a remote daemon's
    /// unreadable or mismatched certificate files.
    pub fn new(settings: LxdSettings) -> Result<std::sync::Arc<Self>> {
        let endpoint = settings.endpoint()?;
        Ok(std::sync::Arc::new_cyclic(|me| LxdRuntime {
            sessions: idle::Sessions::default(),
            sweeping: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
            client: LxdClient::new(endpoint, &settings.project),
            settings,
            logins: boot_cache::PerBoot::default(),
            starting: std::sync::Mutex::new(HashMap::new()),
            prepared: boot_cache::PerBoot::default(),
        }))
    }

    /// Stops the instances idle for longer than their idle time.
    async fn stop_idle(&self) {
        let records = match self.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("idle stop: {e}");
                return;
            }
        };
        let default = self.settings.idle_stop;
        let idle_for = |name: &str| match records.iter().find(|r| r.name == name) {
            Some(r) => match &r.idle_stop {
                Some(own) => crate::limits::parse_duration(own).unwrap_or(default),
                None => default,
            },
            None => None,
        };
        let ops = format!(
            "/1.0/operations?recursion=1&project={}",
            self.settings.project
        );
        for name in self.sessions.idle(idle_for) {
            // Asked anew before each stop: the stop before it may have taken a while.
            match self.client.get(&ops).await {
                Ok(ops) if !idle::exec_running(&ops, &name) => {}
                Ok(_) => {
                    tracing::info!(container = %name, "idle here, but a session runs in it (another gateway's, or lxc exec): left running");
                    self.sessions.touch(&name);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(container = %name, "idle stop: {e}");
                    self.sessions.touch(&name);
                    continue;
                }
            }
            tracing::info!(container = %name, "stopping idle container");
            if let Err(e) = self.stop(&name).await {
                tracing::warn!(container = %name, "idle stop: {e}");
            }
        }
    }

    /// The API client (for images and tests).
    pub fn client(&self) -> &LxdClient {
        &self.client
    }

    async fn instance_json(&self, name: &str) -> Result<Value> {
        self.client
            .get(&instance(name)?)
            .await
            .map_err(missing(name))
    }

    async fn set_state(&self, name: &str, action: &str, force: bool) -> Result<()> {
        let body = json!({"action": action, "timeout": STOP_TIMEOUT_SECS, "force": force});
        self.client
            .call(
                Method::PUT,
                &format!("{}/state", instance(name)?),
                Some(&body),
            )
            .await
            .map(|_| ())
            .map_err(missing(name))
    }
}

const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";

#[async_trait]
impl Runtime for LxdRuntime {
    fn kind(&self) -> &'static str {
        "lxd"
    }

    async fn create(&self, record: ContainerRecord) -> Result<()> {
        if record.limits.disk.is_some() {
            return Err(RuntimeError::Invalid(
                "the lxd runtime gives containers no disk of their own (LXD sizes them \
                 through its storage pool)"
                    .into(),
            ));
        }
        let path = instance(&record.name)?;
        match self.client.get(&path).await {
            Ok(_) => return Err(RuntimeError::ContainerExists(record.name)),
            Err(e) if e.lxd_refusal() == Some(LxdRefusal::NotFound) => {}
            Err(e) => return Err(e),
        }
        let mut config = records::to_config(&record, None);
        config.retain(|_, v| v.as_str() != Some(""));
        // Started on demand by the gateway, never by LXD at boot.
        config.insert("boot.autostart".into(), json!("false"));
        // Held until the instance exists with the range it was given.
        let (ids, _ids_lock) = self.isolated_ids().await?;
        config.extend(ids);
        let target = self.placement(&record).await?;
        let mut body = json!({"name": record.name, "type": "container",
            "source": {"type": "image", "alias": record.image},
            "profiles": self.settings.profiles, "config": config});
        if let Some(pool) = &self.settings.pool {
            body["devices"] = json!({"root": {"type": "disk", "path": "/", "pool": pool}});
        }
        let create = match &target {
            Some(member) => format!("/1.0/instances?target={member}"),
            None => "/1.0/instances".to_string(),
        };
        match self.client.call(Method::POST, &create, Some(&body)).await {
            Ok(_) => Ok(()),
            Err(RuntimeError::Lxd(e)) if e.is_missing_image() => {
                Err(RuntimeError::NoSuchImage(record.image))
            }
            Err(e) => {
                // No half-created instance is left behind.
                let _ = self.client.call(Method::DELETE, &path, None).await;
                Err(e)
            }
        }
    }

    async fn get(&self, name: &str) -> Result<ContainerRecord> {
        records::from_instance(&self.instance_json(name).await?)?
            .ok_or_else(|| RuntimeError::NoSuchContainer(name.to_string()))
    }

    async fn list(&self) -> Result<Vec<ContainerRecord>> {
        let all = self.client.get("/1.0/instances?recursion=1").await?;
        let mut out = Vec::new();
        for i in all.as_array().into_iter().flatten() {
            if let Some(r) = records::from_instance(i)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn update(&self, record: &ContainerRecord) -> Result<()> {
        let current = self.instance_json(&record.name).await?;
        let config = records::to_config(record, current["config"].as_object());
        self.client
            .call(
                Method::PATCH,
                &instance(&record.name)?,
                Some(&json!({"config": config})),
            )
            .await
            .map(|_| ())
            .map_err(|e| match e {
                RuntimeError::Lxd(e) => {
                    RuntimeError::Invalid(format!("LXD refused the change: {e}"))
                }
                other => other,
            })
    }

    async fn state(&self, name: &str) -> Result<ContainerState> {
        let i = self.instance_json(name).await?;
        Ok(match i["status"].as_str() {
            Some("Running") | Some("Frozen") => ContainerState::Running {
                since: i["last_used_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
            },
            _ => ContainerState::Stopped,
        })
    }

    async fn usage(&self, name: &str) -> Result<Option<Usage>> {
        let s = self
            .client
            .get(&format!("{}/state", instance(name)?))
            .await
            .map_err(missing(name))?;
        if s["status"] != "Running" {
            return Ok(None);
        }
        Ok(Some(Usage {
            memory_bytes: s["memory"]["usage"].as_u64(),
            processes: s["processes"].as_u64(),
            cpu_usec: s["cpu"]["usage"].as_u64().map(|ns| ns / 1000),
        }))
    }

    async fn apply_limits(&self, name: &str) -> Result<bool> {
        // LXD applies limits as the config changes (update); nothing more to do.
        Ok(self.state(name).await? != ContainerState::Stopped)
    }

    async fn start(&self, name: &str) -> Result<StartOutcome> {
        let lock = self
            .starting
            .lock()
            .map(|mut m| m.entry(name.to_string()).or_default().clone())
            .unwrap_or_default();
        let _one_at_a_time = lock.lock().await;
        if self.state(name).await? != ContainerState::Stopped {
            return Ok(StartOutcome::AlreadyRunning);
        }
        let all = self.list().await?;
        let host_of = |n: &str| {
            all.iter()
                .find(|r| r.name == n)
                .and_then(|r| r.host.clone())
        };
        for other in crate::affinity::kept_apart(&all, name) {
            // On a cluster twins run at once, on different members (placed so at creation).
            if let (Some(mine), Some(theirs)) = (host_of(name), host_of(&other)) {
                if mine == theirs {
                    return Err(RuntimeError::Placement(format!(
                        "container '{name}' and its twin '{other}' are both on cluster member \
                         {mine}; move one (lxc move --target) before starting it"
                    )));
                }
                continue;
            }
            if self.state(&other).await? != ContainerState::Stopped {
                return Err(RuntimeError::Placement(format!(
                    "container '{name}' must not run on the same host as '{other}' (label {}); \
                     this LXD server is not a cluster: stop '{other}' first",
                    crate::affinity::DR_OF
                )));
            }
        }
        // Another gateway sharing this LXD may be starting it too: LXD then says it is
        // busy, or already running.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut result = self.set_state(name, "start", false).await;
        while matches!(&result, Err(e) if e.lxd_refusal() == Some(LxdRefusal::Busy))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if self.state(name).await? != ContainerState::Stopped {
                return Ok(StartOutcome::AlreadyRunning);
            }
            result = self.set_state(name, "start", false).await;
        }
        match result {
            Ok(()) => {
                self.settle(name).await;
                Ok(StartOutcome::Started)
            }
            Err(e) if e.lxd_refusal() == Some(LxdRefusal::AlreadyRunning) => {
                Ok(StartOutcome::AlreadyRunning)
            }
            Err(RuntimeError::Lxd(e)) => Err(RuntimeError::StartFailed {
                name: name.to_string(),
                reason: e.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn stop(&self, name: &str) -> Result<()> {
        if self.state(name).await? == ContainerState::Stopped {
            return Ok(());
        }
        if self.set_state(name, "stop", false).await.is_err() {
            self.set_state(name, "stop", true).await?;
        }
        self.forget_logins(name);
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.get(name).await?;
        if self.state(name).await? != ContainerState::Stopped {
            self.set_state(name, "stop", true).await?;
        }
        self.client
            .call(Method::DELETE, &instance(name)?, None)
            .await
            .map_err(missing(name))?;
        self.forget_logins(name);
        Ok(())
    }

    async fn prepare_session(&self, name: &str, account: Option<&Account>) -> Result<()> {
        let Some(account) = account else {
            return Ok(());
        };
        self.prepare_account(name, account).await
    }

    async fn snapshot(&self, name: &str, snap: &str) -> Result<()> {
        crate::names::validate_container_name(snap)
            .map_err(|_| RuntimeError::Invalid(format!("invalid snapshot name '{snap}'")))?;
        self.client
            .call(
                Method::POST,
                &format!("{}/snapshots", instance(name)?),
                Some(&json!({"name": snap, "stateful": false})),
            )
            .await
            .map(|_| ())
            .map_err(missing(name))
    }

    async fn backup(&self, name: &str, file: &Path) -> Result<()> {
        let base = instance(name)?;
        let backup = format!("gatehouse-{}", Utc::now().format("%Y%m%d%H%M%S"));
        self.client
            .call(
                Method::POST,
                &format!("{base}/backups"),
                Some(&json!({"name": backup, "instance_only": true, "compression_algorithm": "gzip"})),
            )
            .await
            .map_err(missing(name))?;
        // Written beside the target and renamed into place once complete.
        let partial = file.with_extension("partial");
        let got = self
            .client
            .download_to(&format!("{base}/backups/{backup}/export"), &partial)
            .await;
        let _ = self
            .client
            .call(Method::DELETE, &format!("{base}/backups/{backup}"), None)
            .await;
        if let Err(e) = got {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, file).map_err(|e| RuntimeError::io("cannot write", file, e))
    }

    async fn restore(&self, file: &Path, as_name: Option<&str>) -> Result<String> {
        let path = file.to_path_buf();
        let named = tokio::task::spawn_blocking(move || backup_name(&path))
            .await
            .map_err(|e| RuntimeError::Tool(e.to_string()))??;
        let name = as_name.unwrap_or(&named).to_string();
        validate_container_name(&name)?;
        if self.client.get(&instance(&name)?).await.is_ok() {
            return Err(RuntimeError::ContainerExists(name));
        }
        self.client
            .upload_file(
                "/1.0/instances",
                &[
                    ("X-LXD-name", name.as_str()),
                    ("X-Incus-name", name.as_str()),
                ],
                file,
            )
            .await?;
        // The backup's range is its original's: the restored instance gets its own.
        let (ids, _ids_lock) = self.isolated_ids().await?;
        if !ids.is_empty() {
            let body = json!({ "config": ids });
            self.client
                .call(Method::PATCH, &instance(&name)?, Some(&body))
                .await?;
        }
        Ok(name)
    }

    async fn reconcile(&self) -> Result<Vec<String>> {
        // LXD keeps its own state; nothing of ours can be left half-made.
        Ok(vec![])
    }

    async fn exec(&self, name: &str, spec: ExecSpec) -> Result<Process> {
        let l = self.login(name, &spec.login).await?;
        let mut env = vec![
            ("HOME".to_string(), l.home.clone()),
            ("USER".to_string(), spec.login.clone()),
            ("LOGNAME".to_string(), spec.login.clone()),
            ("SHELL".to_string(), l.shell.clone()),
            (
                "PATH".to_string(),
                if l.uid == 0 { ROOT_PATH } else { USER_PATH }.to_string(),
            ),
        ];
        if let Some(p) = &spec.pty {
            env.push(("TERM".to_string(), p.term.clone()));
        }
        for (k, v) in spec.env {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        let command = match (&spec.sftp, spec.argv, spec.command) {
            // The image's own server, as the login (LXD's instance SFTP endpoint would
            // serve as root); the built-in one runs only inside native containers.
            (Some(_), _, _) => vec![
                "/bin/sh".to_string(),
                "-c".into(),
                crate::sftp::image_server_command(),
            ],
            (None, Some(argv), _) if argv.first().is_some_and(|p| p.starts_with('/')) => argv,
            (None, Some(_), _) => {
                return Err(RuntimeError::Invalid(
                    "a program run directly needs an absolute path".into(),
                ))
            }
            (None, None, Some(c)) => vec![l.shell.clone(), "-c".into(), c],
            (None, None, None) => vec![l.shell.clone(), "-l".into()],
        };
        let req = exec::ExecRequest {
            command,
            env,
            pty: spec.pty.as_ref().map(|p| (p.size.cols, p.size.rows)),
            user: (l.uid, l.gid),
            cwd: l.home,
        };
        let mut process = exec::exec(&self.client, name, req).await?;
        // The session counts (for idle stop) until its exit is known or it is dropped.
        let guard = self.sessions.begin(name);
        let exit = process.exit;
        process.exit = Box::pin(async move {
            let _session = guard;
            exit.await
        });
        if !self
            .sweeping
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            idle::spawn_sweeper(self.me.clone());
        }
        Ok(process)
    }

    async fn connect(
        &self,
        name: &str,
        addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpStream> {
        netns::connect(self.init_pid(name).await?, addr).await
    }

    async fn listen(
        &self,
        name: &str,
        addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpListener> {
        netns::listen(self.init_pid(name).await?, addr).await
    }

    async fn read_file(&self, name: &str, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        validate_container_name(name)?;
        files::read(&self.client, name, path, max).await
    }

    async fn list_dir(&self, name: &str, path: &str, max: usize) -> Result<Option<Vec<String>>> {
        validate_container_name(name)?;
        files::list(&self.client, name, path, max).await
    }

    async fn rollback(&self, name: &str, snap: &str) -> Result<()> {
        crate::names::validate_container_name(snap)
            .map_err(|_| RuntimeError::Invalid(format!("invalid snapshot name '{snap}'")))?;
        self.client
            .call(
                Method::PUT,
                &instance(name)?,
                Some(&json!({ "restore": snap })),
            )
            .await
            .map(|_| ())
            .map_err(missing(name))
    }

    async fn console(&self, name: &str, size: WindowSize) -> Result<Process> {
        validate_container_name(name)?;
        if matches!(self.state(name).await?, ContainerState::Stopped) {
            return Err(RuntimeError::Invalid(format!(
                "container '{name}' is not running (start it with `gatehouse container start {name}`)"
            )));
        }
        exec::console(&self.client, name, size).await
    }

    async fn agent_listener(
        &self,
        name: &str,
        login: &str,
    ) -> Result<(tokio::net::UnixListener, String)> {
        let l = self.login(name, login).await?;
        let pid = self.init_pid(name).await?;
        let (listener, path) = agent::listen(pid, l.uid, l.gid)?;
        let listener = tokio::net::UnixListener::from_std(listener)
            .map_err(|e| RuntimeError::Engine(format!("agent socket: {e}")))?;
        Ok((listener, path))
    }
}

/// The instance name an LXD backup holds (`name:` in its `backup/index.yaml`).
fn backup_name(file: &Path) -> Result<String> {
    use std::io::Read;
    let not_backup = |why: String| {
        RuntimeError::Invalid(format!("{} is not an LXD backup: {why}", file.display()))
    };
    let f = std::fs::File::open(file).map_err(|e| RuntimeError::io("cannot open", file, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let entries = archive.entries().map_err(|e| not_backup(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| not_backup(e.to_string()))?;
        let path = entry.path().map_err(|e| not_backup(e.to_string()))?;
        if path.to_string_lossy().trim_start_matches("./") != "backup/index.yaml" {
            continue;
        }
        let mut text = String::new();
        entry
            .take(1024 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| not_backup(e.to_string()))?;
        return text
            .lines()
            .find_map(|l| l.strip_prefix("name: "))
            .map(|n| n.trim().trim_matches('"').to_string())
            .ok_or_else(|| not_backup("its index names no instance".into()));
    }
    Err(not_backup("no backup/index.yaml".into()))
}

impl LxdRuntime {
    /// The config that gives a new instance a host id range of its own (see [`ids`]),
    /// and the lock to hold until the instance has it. Only beside a local daemon are
    /// root's subordinate ids in view; elsewhere (and without them) nothing is set and
    /// instances share LXD's default map.
    async fn isolated_ids(
        &self,
    ) -> Result<(
        serde_json::Map<String, Value>,
        Option<crate::lockfile::Lock>,
    )> {
        let mut config = serde_json::Map::new();
        if !self.client.endpoint().is_local() {
            return Ok((config, None));
        }
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let Some(range) = ids::root_range(&read("/etc/subuid"), &read("/etc/subgid")) else {
            tracing::warn!("root has no subordinate ids in /etc/subuid and /etc/subgid: LXD instances share one id map");
            return Ok((config, None));
        };
        let lock = tokio::task::spawn_blocking(|| {
            let path = Path::new(ids::LOCK);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| RuntimeError::io("cannot create", dir, e))?;
            }
            crate::lockfile::lock(path)
        })
        .await
        .map_err(|e| RuntimeError::Engine(e.to_string()))??;
        let all = self
            .client
            .get("/1.0/instances?recursion=1&all-projects=true")
            .await?;
        let base = ids::choose(range, &ids::taken_bases(&all)).ok_or_else(|| {
            RuntimeError::Invalid(
                "no free id range is left in root's subordinate ids (/etc/subuid, /etc/subgid)"
                    .into(),
            )
        })?;
        for (k, v) in [
            ("security.idmap.isolated", "true".to_string()),
            ("security.idmap.base", base.to_string()),
            ("security.idmap.size", ids::SIZE.to_string()),
        ] {
            config.insert(k.into(), json!(v));
        }
        Ok((config, Some(lock)))
    }

    /// On a cluster, the member a new container must go to (see [`placement`]).
    async fn placement(&self, record: &ContainerRecord) -> Result<Option<String>> {
        let cluster = self.client.get("/1.0/cluster").await?;
        if cluster["enabled"] != true {
            return Ok(None);
        }
        let mut all = self.list().await?;
        all.push(record.clone());
        let twins: Vec<(String, Option<String>)> = crate::affinity::kept_apart(&all, &record.name)
            .into_iter()
            .map(|t| {
                let host = all
                    .iter()
                    .find(|r| r.name == t)
                    .and_then(|r| r.host.clone());
                (t, host)
            })
            .collect();
        let members =
            placement::members(&self.client.get("/1.0/cluster/members?recursion=1").await?);
        placement::choose(&members, &record.name, &twins)
    }

    /// The host pid of a running instance's init: only an instance of a local daemon, on
    /// this very member of a cluster, has one the gateway can enter (to forward a port
    /// or an agent).
    async fn init_pid(&self, name: &str) -> Result<i64> {
        if !self.client.endpoint().is_local() {
            return Err(RuntimeError::Invalid(format!(
                "forwarding into '{name}' needs the gateway on the LXD host; this gateway \
                 reaches LXD at {}",
                self.client.endpoint().describe()
            )));
        }
        let server = self.client.get("/1.0").await?;
        let here = server["environment"]["server_name"]
            .as_str()
            .unwrap_or_default();
        let record = self.get(name).await?;
        if server["environment"]["server_clustered"] == true
            && record.host.as_deref().is_some_and(|h| h != here)
        {
            return Err(RuntimeError::Invalid(format!(
                "forwarding into '{name}' needs the gateway on its cluster member ({}); this \
                 gateway runs beside {here}",
                record.host.as_deref().unwrap_or_default()
            )));
        }
        let s = self
            .client
            .get(&format!("{}/state", instance(name)?))
            .await
            .map_err(missing(name))?;
        match s["pid"].as_i64() {
            Some(pid) if pid > 0 && s["status"] == "Running" => Ok(pid),
            _ => Err(RuntimeError::Invalid(format!(
                "container '{name}' is not running"
            ))),
        }
    }
}
