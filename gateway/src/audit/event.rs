//! The audit log's schema: every event the gateway and its admin commands write.
//!
//! Each line of `state_dir/audit/audit.jsonl` is `{"seq", "time", "type", "prev", …,
//! "data"}`; `type` is the kind named on each variant below and `data` holds the
//! variant's fields under the names shown (an absent `Option` is written as `null`
//! unless the field says it is left out). A SIEM integrator reads this file and
//! [`FileKind`]; nothing else writes to the log.

use serde::Serialize;
use serde_json::{Map, Value};

/// One audit event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AuditEvent<'a> {
    /// `connection`: a TCP connection reached the SSH server.
    Connection {
        /// The client's address and port.
        peer: &'a str,
    },
    /// `connection.closed`: the gateway closed a connection (the person left the
    /// directory or was locked).
    ConnectionClosed {
        /// The person.
        user: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// `auth.success`: a person authenticated.
    AuthSuccess {
        /// The person.
        user: &'a str,
        /// `publickey`, `password` or `keyboard-interactive`.
        method: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// Their directory groups.
        groups: &'a [String],
    },
    /// `auth.failure`: an authentication attempt failed.
    AuthFailure {
        /// The name given (not necessarily a person).
        user: &'a str,
        /// The method tried.
        method: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// Why it failed.
        reason: &'a str,
    },
    /// `policy.decision`: the policy decided a request (allowed or not), with the
    /// explanation of every rule it looked at.
    PolicyDecision {
        /// The person.
        user: &'a str,
        /// Their groups.
        groups: &'a [String],
        /// The container asked for.
        container: &'a str,
        /// The login asked for.
        login: &'a str,
        /// `shell`, `exec`, `sftp`, `forward`, …
        action: String,
        /// The decision.
        allowed: bool,
        /// The rule that decided it, if any.
        rule: Option<&'a str>,
        /// The client's address.
        source: Option<String>,
        /// The port, for forwards.
        port: Option<u16>,
        /// One line per rule considered.
        explanation: Vec<String>,
    },
    /// `policy.reloaded`: a new policy set is in force.
    PolicyReloaded {
        /// What triggered the reload (`SIGHUP`, `file changed`, …).
        why: &'a str,
        /// The policy files.
        paths: &'a [String],
        /// How many rules the new set has.
        rules: usize,
    },
    /// `policy.reload_failed`: the policy files did not parse; the previous set stays.
    PolicyReloadFailed {
        /// What triggered the reload.
        why: &'a str,
        /// The policy files.
        paths: &'a [String],
        /// Every error, positioned.
        errors: Vec<String>,
        /// Always `previous set`.
        kept: &'static str,
    },
    /// `session.start`: a session was allowed and starts (recording open).
    SessionStart {
        /// The session id (its recording's name).
        session: &'a str,
        /// The person.
        user: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// The container.
        container: &'a str,
        /// The login in the container.
        login: &'a str,
        /// The command, for `exec`.
        command: Option<&'a str>,
        /// The subsystem (`sftp`), if any.
        subsystem: Option<&'a str>,
        /// Whether a terminal was asked for.
        pty: bool,
        /// The rule that allowed it.
        rule: &'a str,
        /// The reason (ticket) given, if any.
        reason: Option<&'a str>,
    },
    /// `session.refused`: a session was refused after the policy allowed it (no valid
    /// reason, recording unwritable, runtime unavailable).
    SessionRefused(SessionRefused<'a>),
    /// `session.end`: a session ended; its recording is sealed.
    SessionEnd {
        /// The session id.
        session: &'a str,
        /// The person.
        user: &'a str,
        /// How it ended (`exit 0`, `signal TERM`, `revoked: …`).
        exit: &'a str,
        /// The recording's files and their SHA-256, when it was recorded and sealed
        /// (left out otherwise).
        #[serde(skip_serializing_if = "Option::is_none")]
        recording: Option<Map<String, Value>>,
    },
    /// `session.revoked`: a running session or forward lost its access.
    SessionRevoked {
        /// The session id.
        session: &'a str,
        /// The person.
        user: &'a str,
        /// The container.
        container: &'a str,
        /// The login.
        login: &'a str,
        /// The action it was allowed for.
        action: String,
        /// The rule that now denies, if any.
        rule: Option<String>,
        /// Why.
        reason: &'a str,
        /// The policy's explanation.
        explanation: Vec<String>,
    },
    /// `session.processes_ended`: the processes a session left behind were killed.
    SessionProcessesEnded {
        /// The session id.
        session: &'a str,
        /// The person.
        user: &'a str,
        /// The container.
        container: &'a str,
        /// How many were killed (left out on error).
        #[serde(skip_serializing_if = "Option::is_none")]
        killed: Option<usize>,
        /// Why they could not be (left out on success).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// `agent.forwarded`: the person's SSH agent is reachable in the container.
    AgentForwarded {
        /// The person.
        user: &'a str,
        /// The container.
        container: &'a str,
        /// The login.
        login: &'a str,
        /// The socket's path in the container.
        socket: &'a str,
    },
    /// `agent.refused`: agent forwarding was asked for and the policy refused it.
    AgentRefused {
        /// The person.
        user: &'a str,
        /// The container.
        container: &'a str,
        /// The login.
        login: &'a str,
    },
    /// `forward.open`: a local forward (`ssh -L`, `-W`, ProxyJump) connected.
    ForwardOpen {
        /// The person.
        user: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// The container.
        container: &'a str,
        /// The address in the container.
        to: String,
    },
    /// `forward.close`: a local forward ended.
    ForwardClose {
        /// The person.
        user: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// The container.
        container: &'a str,
        /// The address in the container.
        to: String,
        /// Bytes carried towards the container.
        bytes_to_container: u64,
        /// Bytes carried towards the client.
        bytes_to_client: u64,
        /// Why it ended, if not normally.
        error: Option<String>,
    },
    /// `forward.refused`: a forward was refused.
    ForwardRefused {
        /// The person.
        user: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// For a local forward: where it wanted to go.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// For a remote forward: where it wanted to listen.
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
        /// Whether it was a remote forward (`ssh -R`).
        remote: bool,
        /// Why.
        reason: &'a str,
    },
    /// `forward.remote`: a remote forward listens in the container.
    ForwardRemote {
        /// The person.
        user: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// The container.
        container: &'a str,
        /// The address it listens on.
        listen: String,
    },
    /// `forward.remote.connection`: a connection through a remote forward ended.
    ForwardRemoteConnection {
        /// The person.
        user: &'a str,
        /// The client's address and port.
        peer: &'a str,
        /// The container.
        container: &'a str,
        /// The port listened on.
        port: u32,
        /// Who connected, in the container.
        from: String,
        /// Bytes carried towards the client.
        bytes_to_client: u64,
        /// Bytes carried towards the container.
        bytes_to_container: u64,
        /// Why it ended, if not normally.
        error: Option<String>,
    },
    /// `file.*`: one file operation in an SFTP or scp transfer.
    File(FileRecord),
    /// `admin.command`: an admin command was run over SSH or the admin socket.
    AdminCommand {
        /// Who.
        by: &'a str,
        /// The command line.
        command: &'a str,
        /// The rights it was run with.
        rights: String,
    },
    /// `admin.refused`: an admin command was refused.
    AdminRefused {
        /// Who.
        by: &'a str,
        /// The command line.
        command: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// `container.*`: a container's life changed.
    Container(ContainerEvent<'a>),
    /// `patch.started`: a patch run began.
    PatchStarted {
        /// The run's id.
        run: &'a str,
        /// Who.
        by: &'a str,
        /// The change reference.
        reason: &'a str,
        /// The containers selected.
        containers: Vec<String>,
        /// Only security updates.
        security_only: bool,
        /// Snapshots taken first.
        snapshot: bool,
        /// Failures rolled back.
        rollback_on_failure: bool,
    },
    /// `patch.container`: how one container's patch went.
    PatchContainer {
        /// The run's id.
        run: &'a str,
        /// The container.
        container: &'a str,
        /// Who.
        by: &'a str,
        /// The change reference.
        reason: &'a str,
        /// `patched`, `current`, `failed` or `rolled-back`.
        result: &'a str,
        /// The recorded session of the upgrade, when one ran.
        session: Option<&'a str>,
        /// The packages upgraded (`name from -> to`).
        upgraded: Vec<String>,
        /// The snapshot taken first.
        snapshot: Option<&'a str>,
        /// What went wrong.
        error: Option<&'a str>,
    },
    /// `patch.finished`: a patch run ended.
    PatchFinished {
        /// The run's id.
        run: &'a str,
        /// Who.
        by: &'a str,
        /// Containers upgraded.
        patched: usize,
        /// Containers with nothing to do.
        current: usize,
        /// Containers that failed (rolled back or not).
        failed: usize,
    },
    /// `recording.deleted`: the retention period removed a recording.
    RecordingDeleted {
        /// The session id.
        session: &'a str,
        /// The person.
        user: &'a str,
        /// The container.
        container: &'a str,
        /// When the session started.
        start: chrono::DateTime<chrono::Utc>,
        /// Always `retention`.
        reason: &'static str,
    },
    /// `gateway.stop`: the gateway is stopping.
    GatewayStop {
        /// The signal.
        signal: &'a str,
        /// How many sessions were told to end.
        sessions: usize,
    },
}

/// `session.refused`: fields present depend on how far the session got.
#[derive(Debug, Serialize)]
pub struct SessionRefused<'a> {
    /// The session id, once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a str>,
    /// The person.
    pub user: &'a str,
    /// The client's address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<&'a str>,
    /// The container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<&'a str>,
    /// The login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<&'a str>,
    /// The rule that allowed it before it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    /// The runtime, when it was unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<&'a str>,
    /// Why.
    pub reason: String,
}

/// `container.*`: `by` is the person who did it (the admin, or the person whose login
/// started it on demand).
#[derive(Debug, Serialize)]
pub struct ContainerEvent<'a> {
    /// Which change.
    #[serde(skip)]
    pub change: ContainerChange,
    /// The container.
    pub container: &'a str,
    /// Who.
    pub by: &'a str,
    /// What changed, by change.
    #[serde(flatten)]
    pub detail: ContainerDetail,
}

/// The `container.*` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerChange {
    /// `container.created`
    Created,
    /// `container.started`
    Started,
    /// `container.stopped`
    Stopped,
    /// `container.restarted`
    Restarted,
    /// `container.deleted`
    Deleted,
    /// `container.changed`
    Changed,
    /// `container.snapshot`
    Snapshot,
    /// `container.backup`
    Backup,
    /// `container.restored`
    Restored,
    /// `container.rebased`
    Rebased,
}

/// What a `container.*` event records beyond the container and who.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ContainerDetail {
    /// Nothing more.
    None {},
    /// Started by a login (`on_demand: true`).
    OnDemand {
        /// Always true.
        on_demand: bool,
    },
    /// The record before and/or after (created: `after`; deleted: `before`; changed:
    /// both), as `container show --json` prints it.
    Record {
        /// Before.
        #[serde(skip_serializing_if = "Option::is_none")]
        before: Option<Value>,
        /// After.
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<Value>,
    },
    /// A snapshot's name.
    Snapshot {
        /// The snapshot.
        snapshot: String,
    },
    /// The backup archive written.
    Backup {
        /// Its path on the host.
        file: String,
    },
    /// The archive restored from.
    Restored {
        /// Its path on the host.
        from: String,
    },
    /// The image generation a container moved from and to.
    Rebased {
        /// The image and generation before (`debian-12@1`).
        from: String,
        /// After.
        to: String,
    },
}

/// One file operation: who, through what, and the operation's own fields.
#[derive(Debug, Serialize)]
pub struct FileRecord {
    /// Which operation.
    #[serde(skip)]
    pub kind: FileKind,
    /// `session`, `user`, `container`, `login`, `via` (`sftp` or `scp`), then the
    /// operation's fields (see [`FileKind`]).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// The `file.*` kinds and the fields each has besides who and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `file.open`: `path`, `flags`, `error` (when refused).
    Open,
    /// `file.read`: `path`, `size`, `sha256` (or `sha256_missing` and why), `note`.
    Read,
    /// `file.write`: `path`, `size`, `sha256` (or `sha256_missing`), `write_errors`,
    /// `note`; for scp also `name` and `mode`.
    Write,
    /// `file.list`: `path`.
    List,
    /// `file.remove`: `path`, `error`.
    Remove,
    /// `file.mkdir`: `path`, `mode` (scp), `error`.
    Mkdir,
    /// `file.rmdir`: `path`, `error`.
    Rmdir,
    /// `file.rename`: `from`, `to`, `replace` (posix-rename), `error`.
    Rename,
    /// `file.link`: `from`, `to` (hard link), `error`.
    Link,
    /// `file.symlink`: `target`, `path`, `error`.
    Symlink,
    /// `file.setstat`: `path`, `set` (`size`, `mode`, `uid`, `gid`, `mtime`) or
    /// `nofollow`, `error`.
    Setstat,
    /// `file.copy`: `from`, `to`, `offset`, `length` (copy-data), `error`.
    Copy,
    /// `file.extended`: `request` (an extension the observer does not follow).
    Extended,
    /// `file.audit_lost`: `reason`; the session ends after it.
    AuditLost,
}

impl FileKind {
    /// The event kind written to the log.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Open => "file.open",
            FileKind::Read => "file.read",
            FileKind::Write => "file.write",
            FileKind::List => "file.list",
            FileKind::Remove => "file.remove",
            FileKind::Mkdir => "file.mkdir",
            FileKind::Rmdir => "file.rmdir",
            FileKind::Rename => "file.rename",
            FileKind::Link => "file.link",
            FileKind::Symlink => "file.symlink",
            FileKind::Setstat => "file.setstat",
            FileKind::Copy => "file.copy",
            FileKind::Extended => "file.extended",
            FileKind::AuditLost => "file.audit_lost",
        }
    }
}

impl PartialEq<&str> for FileKind {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl ContainerChange {
    /// The event kind written to the log.
    pub fn name(self) -> &'static str {
        match self {
            ContainerChange::Created => "container.created",
            ContainerChange::Started => "container.started",
            ContainerChange::Stopped => "container.stopped",
            ContainerChange::Restarted => "container.restarted",
            ContainerChange::Deleted => "container.deleted",
            ContainerChange::Changed => "container.changed",
            ContainerChange::Snapshot => "container.snapshot",
            ContainerChange::Backup => "container.backup",
            ContainerChange::Restored => "container.restored",
            ContainerChange::Rebased => "container.rebased",
        }
    }
}

impl AuditEvent<'_> {
    /// The event's kind, as written to the log.
    pub fn kind(&self) -> &'static str {
        use AuditEvent::*;
        match self {
            Connection { .. } => "connection",
            ConnectionClosed { .. } => "connection.closed",
            AuthSuccess { .. } => "auth.success",
            AuthFailure { .. } => "auth.failure",
            PolicyDecision { .. } => "policy.decision",
            PolicyReloaded { .. } => "policy.reloaded",
            PolicyReloadFailed { .. } => "policy.reload_failed",
            SessionStart { .. } => "session.start",
            SessionRefused(_) => "session.refused",
            SessionEnd { .. } => "session.end",
            SessionRevoked { .. } => "session.revoked",
            SessionProcessesEnded { .. } => "session.processes_ended",
            AgentForwarded { .. } => "agent.forwarded",
            AgentRefused { .. } => "agent.refused",
            ForwardOpen { .. } => "forward.open",
            ForwardClose { .. } => "forward.close",
            ForwardRefused { .. } => "forward.refused",
            ForwardRemote { .. } => "forward.remote",
            ForwardRemoteConnection { .. } => "forward.remote.connection",
            File(f) => f.kind.name(),
            AdminCommand { .. } => "admin.command",
            AdminRefused { .. } => "admin.refused",
            Container(c) => c.change.name(),
            PatchStarted { .. } => "patch.started",
            PatchContainer { .. } => "patch.container",
            PatchFinished { .. } => "patch.finished",
            RecordingDeleted { .. } => "recording.deleted",
            GatewayStop { .. } => "gateway.stop",
        }
    }

    /// The event's `data`, as written to the log.
    pub fn data(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_has_the_documented_fields_and_nulls_for_absent_options() {
        let e = AuditEvent::ForwardClose {
            user: "alice",
            peer: "10.0.0.1:5000",
            container: "web01",
            to: "127.0.0.1:80".into(),
            bytes_to_container: 3,
            bytes_to_client: 4,
            error: None,
        };
        assert_eq!(e.kind(), "forward.close");
        let v = e.data().unwrap();
        assert_eq!(v["to"], "127.0.0.1:80");
        assert_eq!(v["bytes_to_client"], 4);
        assert!(v.as_object().unwrap().contains_key("error"));
    }

    #[test]
    fn container_events_flatten_their_detail() {
        let e = AuditEvent::Container(ContainerEvent {
            change: ContainerChange::Started,
            container: "web01",
            by: "alice",
            detail: ContainerDetail::OnDemand { on_demand: true },
        });
        assert_eq!(e.kind(), "container.started");
        assert_eq!(
            e.data().unwrap(),
            serde_json::json!({"container": "web01", "by": "alice", "on_demand": true})
        );
        let stopped = AuditEvent::Container(ContainerEvent {
            change: ContainerChange::Stopped,
            container: "web01",
            by: "root",
            detail: ContainerDetail::None {},
        });
        assert_eq!(
            stopped.data().unwrap(),
            serde_json::json!({"container": "web01", "by": "root"})
        );
    }

    #[test]
    fn file_events_carry_their_kind_outside_the_data() {
        let mut fields = Map::new();
        fields.insert("path".into(), "/etc/motd".into());
        let e = AuditEvent::File(FileRecord {
            kind: FileKind::Write,
            fields,
        });
        assert_eq!(e.kind(), "file.write");
        assert_eq!(e.data().unwrap(), serde_json::json!({"path": "/etc/motd"}));
        assert!(FileKind::AuditLost == "file.audit_lost");
    }
}
