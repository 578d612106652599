//! For unit tests of the session flow without root: a [`FakeRuntime`] (an in-memory
//! inventory whose processes are tasks on `tokio::io::duplex` pipes), a gateway [`App`]
//! assembled on it in a temporary directory, and an in-process russh client.
//!
//! A fake process does what its command says: `exit N` exits with N, `echo TEXT` prints
//! TEXT, `wait` runs until it is signalled (and dies of the signal); a shell echoes its
//! input until end of file.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gatehouse_runtime::api::{
    Account, ContainerState, ExecSpec, ExitStatus, Process, ProcessControl, StartOutcome, Usage,
    WindowSize,
};
use gatehouse_runtime::{ContainerRecord, Result, Runtime, RuntimeError};
use russh::keys::PrivateKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::app::App;

/// Containers in memory; every one of them runs.
#[derive(Default)]
pub struct FakeRuntime {
    records: Mutex<BTreeMap<String, ContainerRecord>>,
}

fn unsupported(what: &str) -> RuntimeError {
    RuntimeError::Invalid(format!("the fake runtime does not {what}"))
}

impl FakeRuntime {
    /// A runtime holding one container `name` of `owner`.
    pub fn with(name: &str, owner: &str) -> Self {
        let rt = FakeRuntime::default();
        let record = ContainerRecord::new(name, owner, "fake");
        if let Ok(mut r) = rt.records.lock() {
            r.insert(name.into(), record);
        }
        rt
    }
}

/// The control of a fake process: signals go to its task.
struct FakeControl(mpsc::Sender<String>);

#[async_trait]
impl ProcessControl for FakeControl {
    async fn resize(&self, _size: WindowSize) -> Result<()> {
        Ok(())
    }

    async fn signal(&self, name: &str) -> Result<()> {
        let _ = self.0.send(name.to_string()).await;
        Ok(())
    }
}

/// Runs what `command` says on the far ends of the pipes; its exit status.
async fn act(
    command: Option<String>,
    mut stdin: tokio::io::DuplexStream,
    mut stdout: tokio::io::DuplexStream,
    mut signals: mpsc::Receiver<String>,
) -> ExitStatus {
    let command = command.unwrap_or_default();
    let (verb, rest) = command.split_once(' ').unwrap_or((command.as_str(), ""));
    match verb {
        "exit" => ExitStatus::Code(rest.trim().parse().unwrap_or(255)),
        "echo" => {
            let _ = stdout.write_all(format!("{rest}\n").as_bytes()).await;
            ExitStatus::Code(0)
        }
        "wait" => {
            let name = signals.recv().await.unwrap_or_default();
            ExitStatus::Signal {
                name: gatehouse_runtime::signals::signal_name(
                    gatehouse_runtime::signals::signal_number(&name).unwrap_or(9),
                ),
                core_dumped: false,
            }
        }
        _ => {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 || stdout.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            ExitStatus::Code(0)
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn create(&self, record: ContainerRecord) -> Result<()> {
        let mut r = self.records.lock().map_err(|_| unsupported("lock"))?;
        r.insert(record.name.clone(), record);
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<ContainerRecord> {
        let r = self.records.lock().map_err(|_| unsupported("lock"))?;
        r.get(name)
            .cloned()
            .ok_or_else(|| RuntimeError::NoSuchContainer(name.into()))
    }

    async fn list(&self) -> Result<Vec<ContainerRecord>> {
        let r = self.records.lock().map_err(|_| unsupported("lock"))?;
        Ok(r.values().cloned().collect())
    }

    async fn update(&self, record: &ContainerRecord) -> Result<()> {
        self.create(record.clone()).await
    }

    async fn state(&self, _name: &str) -> Result<ContainerState> {
        Ok(ContainerState::Running {
            since: chrono::Utc::now(),
        })
    }

    async fn usage(&self, _name: &str) -> Result<Option<Usage>> {
        Ok(None)
    }

    async fn apply_limits(&self, _name: &str) -> Result<bool> {
        Ok(false)
    }

    async fn start(&self, _name: &str) -> Result<StartOutcome> {
        Ok(StartOutcome::AlreadyRunning)
    }

    async fn stop(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let mut r = self.records.lock().map_err(|_| unsupported("lock"))?;
        r.remove(name);
        Ok(())
    }

    async fn prepare_session(&self, _name: &str, _account: Option<&Account>) -> Result<()> {
        Ok(())
    }

    async fn snapshot(&self, _name: &str, _snap: &str) -> Result<()> {
        Err(unsupported("snapshot"))
    }

    async fn backup(&self, _name: &str, _file: &std::path::Path) -> Result<()> {
        Err(unsupported("back up"))
    }

    async fn restore(&self, _file: &std::path::Path, _as_name: Option<&str>) -> Result<String> {
        Err(unsupported("restore"))
    }

    async fn reconcile(&self) -> Result<Vec<String>> {
        Ok(vec![])
    }

    async fn exec(&self, name: &str, spec: ExecSpec) -> Result<Process> {
        self.get(name).await?;
        let (stdin, stdin_far) = tokio::io::duplex(4096);
        let (stdout, stdout_far) = tokio::io::duplex(4096);
        let (signal_tx, signal_rx) = mpsc::channel(4);
        let task = tokio::spawn(act(spec.command, stdin_far, stdout_far, signal_rx));
        Ok(Process {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: None,
            control: Box::new(FakeControl(signal_tx)),
            exit: Box::pin(async move { task.await.map_err(|e| unsupported(&e.to_string())) }),
        })
    }

    async fn connect(
        &self,
        _name: &str,
        _addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpStream> {
        Err(unsupported("forward"))
    }

    async fn listen(
        &self,
        _name: &str,
        _addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpListener> {
        Err(unsupported("forward"))
    }

    async fn agent_listener(
        &self,
        _name: &str,
        _login: &str,
    ) -> Result<(tokio::net::UnixListener, String)> {
        Err(unsupported("forward agents"))
    }
}

/// A gateway on a [`FakeRuntime`], serving on a loopback port, with alice's key.
pub struct TestGateway {
    /// Its state, users file and policies.
    pub dir: tempfile::TempDir,
    /// The gateway's parts.
    pub app: Arc<App>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// alice's key.
    pub key: Arc<PrivateKey>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestGateway {
    /// A gateway with container `web01` of `owner`; `policy` (a policy file's text)
    /// replaces the built-in owner policy when given.
    pub async fn start(owner: &str, policy: Option<&str>) -> TestGateway {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
            &seed,
        ));
        let public = key.public_key().to_openssh().expect("public key");
        let users = dir.path().join("users.toml");
        std::fs::write(
            &users,
            format!("[[user]]\nname = \"alice\"\nuid = 10001\ngroups = [\"devs\"]\nkeys = [\"{public}\"]\n"),
        )
        .expect("users file");
        let mut config = crate::config::Config::default();
        config.server.state_dir = dir.path().join("state");
        config.directory.file = users.clone();
        if let Some(text) = policy {
            let policies = dir.path().join("policies");
            std::fs::create_dir(&policies).expect("policies");
            std::fs::write(policies.join("p.toml"), text).expect("policy");
            config.policy.paths = vec![policies];
        }
        let state = config.server.state_dir.clone();
        std::fs::create_dir_all(&state).expect("state");
        let app = Arc::new(App {
            directory: Arc::new(crate::directory::UsersFile::open(&users).expect("users")),
            runtime: Arc::new(FakeRuntime::with("web01", owner)),
            policy: Arc::new(
                crate::policy::PolicyStore::open(&config.policy.paths).expect("policy"),
            ),
            live: Default::default(),
            guard: crate::guard::Guard::new(config.server.limits().expect("limits")),
            audit: crate::audit::Audit::open(&state).expect("audit"),
            recordings: gatehouse_recordings::store::Recordings::open(state.join("recordings"))
                .expect("recordings"),
            recorders: crate::record::Recorders::start(1).expect("recorders"),
            config,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("address");
        let served = app.clone();
        let server = tokio::spawn(async move {
            let _ = crate::ssh::serve_on(served, listener).await;
        });
        TestGateway {
            dir,
            app,
            addr,
            key: Arc::new(key),
            server,
        }
    }

    /// Connects as SSH user `user` with alice's key.
    pub async fn connect(&self, user: &str) -> russh::client::Handle<Client> {
        let config = Arc::new(russh::client::Config::default());
        let mut handle = russh::client::connect(config, self.addr, Client)
            .await
            .expect("connect");
        let key = russh::keys::PrivateKeyWithHashAlg::new(self.key.clone(), None);
        let auth = handle
            .authenticate_publickey(user, key)
            .await
            .expect("authenticate");
        assert!(auth.success(), "the key was refused");
        handle
    }

    /// The audit events of `kind`, in order.
    pub fn audit_events(&self, kind: &str) -> Vec<serde_json::Value> {
        let log = self.app.config.server.state_dir.join("audit/audit.jsonl");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == kind)
            .collect()
    }
}

/// The client side: trusts the gateway's host key (the test made it).
pub struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        Ok(true)
    }
}

/// What came back on a session channel: output, errors, and the exit status or signal.
#[derive(Debug, Default)]
pub struct Outcome {
    /// stdout.
    pub out: String,
    /// stderr.
    pub err: String,
    /// The exit status, if one came.
    pub status: Option<u32>,
    /// The exit signal, if one came.
    pub signal: Option<String>,
}

/// Reads a session channel to its end (a test that would hang fails after 10 s instead).
pub async fn outcome(channel: &mut russh::Channel<russh::client::Msg>) -> Outcome {
    tokio::time::timeout(std::time::Duration::from_secs(10), read_to_end(channel))
        .await
        .expect("the session did not end within 10 s")
}

async fn read_to_end(channel: &mut russh::Channel<russh::client::Msg>) -> Outcome {
    let mut o = Outcome::default();
    while let Some(msg) = channel.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => o.out.push_str(&String::from_utf8_lossy(&data)),
            russh::ChannelMsg::ExtendedData { data, .. } => {
                o.err.push_str(&String::from_utf8_lossy(&data))
            }
            russh::ChannelMsg::ExitStatus { exit_status } => o.status = Some(exit_status),
            russh::ChannelMsg::ExitSignal { signal_name, .. } => {
                o.signal = Some(format!("{signal_name:?}"))
            }
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    o
}
