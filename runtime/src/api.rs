//! The `Runtime` trait: what the gateway needs from a container engine. The embedded
//! native runtime implements it; an LXD/Incus backend implements the same trait, so
//! nothing here assumes file descriptors, local processes or a single host.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Result, RuntimeError};
use crate::inventory::ContainerRecord;

/// A terminal window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Width in pixels (0 when unknown).
    pub px_width: u16,
    /// Height in pixels (0 when unknown).
    pub px_height: u16,
}

impl WindowSize {
    /// A size from the u32 fields of an SSH request, clamped to what a terminal can hold.
    pub fn from_ssh(cols: u32, rows: u32, px_width: u32, px_height: u32) -> Self {
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        WindowSize {
            cols: clamp(cols),
            rows: clamp(rows),
            px_width: clamp(px_width),
            px_height: clamp(px_height),
        }
    }
}

/// A terminal requested for a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtySpec {
    /// The `TERM` value.
    pub term: String,
    /// The initial size.
    pub size: WindowSize,
}

/// A process to run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// The account inside the container to run as.
    pub login: String,
    /// A command for the login shell's `-c`, or `None` for an interactive login shell.
    pub command: Option<String>,
    /// A program run directly (execve, no shell): its absolute path inside the container,
    /// then its arguments. Takes the place of `command` (which is still what is recorded).
    pub argv: Option<Vec<String>>,
    /// A terminal, or `None` for plain pipes (stdout and stderr kept apart).
    pub pty: Option<PtySpec>,
    /// Extra environment variables (already filtered by the caller).
    pub env: Vec<(String, String)>,
    /// Run an SFTP server instead of the shell (`command` is then ignored).
    pub sftp: Option<SftpServer>,
    /// The gateway's session id: the process and all it starts are kept together under
    /// it, so that [`Runtime::end_session`] can find them (letters, digits and `-`).
    pub session: Option<String>,
}

impl ExecSpec {
    /// A command run through the login's shell, without a terminal.
    pub fn command(login: &str, command: String) -> Self {
        ExecSpec {
            login: login.to_string(),
            command: Some(command),
            argv: None,
            session: None,
            pty: None,
            env: vec![],
            sftp: None,
        }
    }
}

/// Which SFTP server serves a session's `sftp` subsystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SftpServer {
    /// The image's own `sftp-server` (OpenSSH's) if it has one, else the gateway's.
    #[default]
    Auto,
    /// Always the gateway's own server.
    Builtin,
}

/// An account to create inside a container on first login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
    /// Login shell (default `/bin/bash`).
    pub shell: Option<String>,
    /// Home directory (default `/home/NAME`).
    pub home: Option<String>,
    /// Passwordless sudo (granted by policy); without it any sudo rule gatehouse made
    /// for the account is removed.
    pub sudo: bool,
    /// Reads the system journal (`systemd-journal` group, where the image has it): the
    /// container's owner, and people with sudo.
    pub journal: bool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal {
        /// The signal's SSH name without the `SIG` prefix (`TERM`, `KILL`, …).
        name: &'static str,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

/// Whether a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ContainerState {
    /// Not running.
    Stopped,
    /// Running since the given time.
    Running {
        /// When it started.
        since: DateTime<Utc>,
    },
}

impl ContainerState {
    /// "running" or "stopped".
    pub fn label(&self) -> &'static str {
        match self {
            ContainerState::Stopped => "stopped",
            ContainerState::Running { .. } => "running",
        }
    }
}

/// A running container's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Number of processes.
    pub processes: Option<u64>,
    /// CPU time used, in microseconds.
    pub cpu_usec: Option<u64>,
}

/// A container's own disk: its size and what is used of it, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Bytes in use.
    pub used: u64,
    /// The disk's size.
    pub size: u64,
}

/// What [`Runtime::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// It was running already.
    AlreadyRunning,
    /// It was stopped and has been started.
    Started,
}

/// A byte stream from a process.
pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;
/// A byte stream to a process.
pub type ByteWriter = Pin<Box<dyn AsyncWrite + Send>>;
/// Resolves when a process ends.
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<ExitStatus>> + Send>>;

/// A running process inside a container.
pub struct Process {
    /// Its standard input (the terminal with a PTY).
    pub stdin: ByteWriter,
    /// Its standard output (the terminal with a PTY).
    pub stdout: ByteReader,
    /// Its standard error; `None` with a PTY, where it shares the terminal.
    pub stderr: Option<ByteReader>,
    /// Resize and signal it.
    pub control: Box<dyn ProcessControl>,
    /// Resolves with its exit status.
    pub exit: ExitFuture,
}

impl Process {
    /// Runs it to the end with no input; returns its status and its output (stdout, then
    /// stderr).
    pub async fn finish(mut self) -> Result<(ExitStatus, String)> {
        use tokio::io::AsyncReadExt;
        drop(self.stdin);
        let mut out = Vec::new();
        let mut err = Vec::new();
        let stderr = self.stderr.take();
        let read_err = async {
            if let Some(mut s) = stderr {
                let _ = s.read_to_end(&mut err).await;
            }
        };
        let read_out = async {
            let _ = self.stdout.read_to_end(&mut out).await;
        };
        tokio::join!(read_out, read_err);
        let status = self.exit.await?;
        out.extend_from_slice(&err);
        Ok((status, String::from_utf8_lossy(&out).into_owned()))
    }
}

/// Control of a running process.
#[async_trait]
pub trait ProcessControl: Send + Sync {
    /// Changes the terminal size (no-op without a PTY).
    async fn resize(&self, size: WindowSize) -> Result<()>;
    /// Sends a signal, named as in SSH (`INT`, `TERM`, `HUP`, `KILL`, …).
    async fn signal(&self, name: &str) -> Result<()>;
}

/// A container engine.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// A short name of the backend, such as `native`.
    fn kind(&self) -> &'static str;
    /// Registers a new container (it starts on first use).
    async fn create(&self, record: ContainerRecord) -> Result<()>;
    /// Reads one container's record.
    async fn get(&self, name: &str) -> Result<ContainerRecord>;
    /// All containers, sorted by name.
    async fn list(&self) -> Result<Vec<ContainerRecord>>;
    /// Replaces a container's record (labels, purpose, limits, last login).
    async fn update(&self, record: &ContainerRecord) -> Result<()>;
    /// Whether it runs.
    async fn state(&self, name: &str) -> Result<ContainerState>;
    /// Resource use of a running container (`None` when stopped).
    async fn usage(&self, name: &str) -> Result<Option<Usage>>;
    /// Applies the record's limits to the running container; false when it is stopped
    /// (they apply at its next start).
    async fn apply_limits(&self, name: &str) -> Result<bool>;
    /// Gives the container a disk of its own of `bytes` (its writable layer moves onto
    /// it; it must be stopped for that) or grows the one it has. Runtimes without
    /// per-container disks refuse.
    async fn set_disk(&self, name: &str, bytes: u64) -> Result<()> {
        let _ = (name, bytes);
        Err(RuntimeError::Invalid(format!(
            "the {} runtime gives containers no disk of their own",
            self.kind()
        )))
    }
    /// The size and use of the container's own disk; `None` when it has none.
    async fn disk_usage(&self, name: &str) -> Result<Option<DiskUsage>> {
        let _ = name;
        Ok(None)
    }
    /// Starts it if it is stopped; returns as soon as it can run processes.
    async fn start(&self, name: &str) -> Result<StartOutcome>;
    /// Stops it gracefully (then forcibly after a timeout).
    async fn stop(&self, name: &str) -> Result<()>;
    /// Stops it and removes it with all its files.
    async fn delete(&self, name: &str) -> Result<()>;
    /// Gets a running container ready for a session: creates `account` unless it exists,
    /// and refreshes what the container knows about its peers (names and addresses).
    async fn prepare_session(&self, name: &str, account: Option<&Account>) -> Result<()>;
    /// Copies the container's own files as snapshot `snap` (kept with the container).
    async fn snapshot(&self, name: &str, snap: &str) -> Result<()>;
    /// Writes a compressed backup of the container (its files and record) to `file`.
    async fn backup(&self, name: &str, file: &std::path::Path) -> Result<()>;
    /// Restores a backup as a new, stopped container (named as in the backup, or
    /// `as_name`); returns its name.
    async fn restore(&self, file: &std::path::Path, as_name: Option<&str>) -> Result<String>;
    /// Brings the runtime's state in line with reality after a crash or reboot: leftovers
    /// of containers whose supervisor died are removed. Returns what it did, one line each.
    async fn reconcile(&self) -> Result<Vec<String>>;
    /// Runs a process inside the running container.
    async fn exec(&self, name: &str, spec: ExecSpec) -> Result<Process>;
    /// Opens a TCP connection to `addr` from inside the running container's network
    /// namespace (port forwarding: what the container reaches, never the host's network).
    async fn connect(
        &self,
        name: &str,
        addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpStream>;
    /// Listens on `addr` inside the running container's network namespace (remote
    /// forwarding: what connects is whatever runs in or reaches the container).
    async fn listen(
        &self,
        name: &str,
        addr: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpListener>;
    /// A session ended: with `kill`, every process it started that still runs in the
    /// container (also those it left behind with `setsid nohup …`) is killed; then what
    /// kept its processes together is removed once empty. Returns how many were killed.
    /// A runtime that cannot tell a session's processes apart kills none and says so.
    async fn end_session(&self, name: &str, session: &str, kill: bool) -> Result<usize> {
        let _ = (name, session);
        if kill {
            return Err(RuntimeError::Invalid(format!(
                "the {} runtime cannot find a session's processes",
                self.kind()
            )));
        }
        Ok(0)
    }
    /// Attaches to the running container's console (`/dev/console`: boot messages, a
    /// getty): its output so far and what follows come on `stdout`, `stdin` types into
    /// it, `control` resizes it; `exit` resolves when the console goes away (the
    /// container stopped). Runtimes without one refuse.
    async fn console(&self, name: &str, size: WindowSize) -> Result<Process> {
        let _ = (name, size);
        Err(RuntimeError::Invalid(format!(
            "the {} runtime offers no console",
            self.kind()
        )))
    }
    /// Reads a file of the container (`path`, absolute, as the container sees it) from
    /// outside it, running or not, without starting anything in it: `None` when it is
    /// not there. A file that is not a regular one, or larger than `max` bytes, is an
    /// error. Runtimes that cannot refuse.
    async fn read_file(&self, name: &str, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let _ = (name, path, max);
        Err(RuntimeError::Invalid(format!(
            "the {} runtime cannot read a container's files from outside",
            self.kind()
        )))
    }
    /// The names in a directory of the container (`path`, absolute, as the container
    /// sees it), read from outside like [`Runtime::read_file`]: `None` when it is not
    /// there; more than `max` names, or something other than a directory, is an error.
    async fn list_dir(&self, name: &str, path: &str, max: usize) -> Result<Option<Vec<String>>> {
        let _ = (name, path, max);
        Err(RuntimeError::Invalid(format!(
            "the {} runtime cannot list a container's files from outside",
            self.kind()
        )))
    }
    /// Puts the container's own files back as they were in snapshot `snap` (taken with
    /// [`Runtime::snapshot`]); a running container is stopped for it and started again.
    async fn rollback(&self, name: &str, snap: &str) -> Result<()> {
        let _ = (name, snap);
        Err(RuntimeError::Invalid(format!(
            "the {} runtime cannot roll a container back",
            self.kind()
        )))
    }
    /// Moves the container onto the newest generation of its image (or of `image`), by
    /// swapping the layer below its own; a running one is stopped for it and started
    /// again. Refused when its own layer changed the package database (packages
    /// installed, removed or upgraded in it): those are patched instead. Returns the
    /// image and generation it is on now.
    async fn rebase(&self, name: &str, image: Option<&str>) -> Result<(String, u32)> {
        let _ = (name, image);
        Err(RuntimeError::Invalid(format!(
            "the {} runtime cannot rebase a container (patch it with `gatehouse patch`)",
            self.kind()
        )))
    }
    /// A listening socket inside the running container, usable by `login` only, for a
    /// forwarded SSH agent; with its path inside the container.
    async fn agent_listener(
        &self,
        name: &str,
        login: &str,
    ) -> Result<(tokio::net::UnixListener, String)>;
}
