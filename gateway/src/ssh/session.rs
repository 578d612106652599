//! One session channel: collect the requests (pty, env), then start the process in the
//! container and relay bytes, window changes, signals, EOF and the exit status. One task
//! per channel, with a bounded queue towards the process's stdin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_policies::Action;
use gatehouse_runtime::{
    Account, ExecSpec, ExitStatus, Process, PtySpec, RuntimeError, StartOutcome, WindowSize,
};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::endings::Endings;
use super::files::FileAudit;
use super::wanted::Wanted;
use super::{agent, picker, reason, signals};
use crate::access::{self, Refusal};
use crate::app::App;
use crate::audit::{AuditEvent, ContainerChange, ContainerDetail, ContainerEvent, SessionRefused};
use crate::directory::User;
use crate::grammar::Target;
use crate::record::{Stream, Tap};
use gatehouse_recordings::channel::ChannelRecorder;
use gatehouse_recordings::store::{SessionMeta, SessionRecording};
use serde_json::json;

/// How long output may still drain after the process has exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long a process ended by the gateway (revoked, timed out) has after SIGHUP.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Messages queued towards the process's stdin before the client is slowed down.
const STDIN_QUEUE: usize = 32;
/// How much process output is read at a time: little while a session is idle or
/// interactive, growing while output streams.
const OUTPUT_CHUNK_MIN: usize = 4 * 1024;
const OUTPUT_CHUNK_MAX: usize = 64 * 1024;

/// What a session channel knows about its connection.
pub struct SessionContext {
    /// Shared gateway state.
    pub app: Arc<App>,
    /// The authenticated person.
    pub user: User,
    /// What they asked for.
    pub target: Target,
    /// Where they connect from.
    pub peer: String,
    /// The connection, for requests the channel half cannot send.
    pub handle: russh::server::Handle,
}

/// Environment variables accepted from the client (Debian's sshd `AcceptEnv LANG LC_*`,
/// and `TERM`, `TZ`); `GATEHOUSE_REASON` is taken as the session's reason.
fn env_allowed(name: &str) -> bool {
    matches!(name, "LANG" | "TZ" | "TERM") || name.starts_with("LC_")
}

/// What the client asked for on the channel before its shell, command or subsystem.
struct Requested {
    wanted: Wanted,
    pty: Option<PtySpec>,
    env: Vec<(String, String)>,
    reason: Option<String>,
    agent: bool,
}

/// Reads the channel's requests up to the shell, command or subsystem; `None` when the
/// client closes it first.
async fn requests(rx: &mut ChannelReadHalf) -> Option<Requested> {
    let mut r = Requested {
        wanted: Wanted::Shell,
        pty: None,
        env: Vec::new(),
        reason: None,
        agent: false,
    };
    r.wanted = loop {
        match rx.wait().await? {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                ..
            } => {
                let size = WindowSize::from_ssh(col_width, row_height, pix_width, pix_height);
                r.pty = Some(PtySpec { term, size });
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                if let Some(p) = &mut r.pty {
                    p.size = WindowSize::from_ssh(col_width, row_height, pix_width, pix_height);
                }
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => {
                if variable_name == reason::ENV {
                    r.reason = Some(variable_value);
                } else if env_allowed(&variable_name) && r.env.len() < 64 {
                    r.env.push((variable_name, variable_value));
                }
            }
            ChannelMsg::AgentForward { .. } => r.agent = true,
            ChannelMsg::RequestShell { .. } => break Wanted::Shell,
            ChannelMsg::Exec { command, .. } => {
                break Wanted::Exec(String::from_utf8_lossy(&command).into_owned())
            }
            // The connection answers the request; only `sftp` is accepted.
            ChannelMsg::RequestSubsystem { name, .. } if name == "sftp" => break Wanted::Sftp,
            ChannelMsg::Close => return None,
            _ => {}
        }
    };
    Some(r)
}

/// Runs one session channel to its end.
pub async fn run(channel: Channel<Msg>, ctx: SessionContext) {
    let (mut rx, tx) = channel.split();
    let Some(mut asked) = requests(&mut rx).await else {
        return;
    };
    let Some(resolved) = resolve(&ctx, &mut rx, &tx, &mut asked).await else {
        return;
    };
    let session_id = gatehouse_recordings::store::new_id();
    let Some(reason) = session_reason(&ctx, &resolved, &session_id, &mut rx, &tx, &mut asked).await
    else {
        return;
    };
    let (fail_tx, fail_rx) = mpsc::channel::<String>(1);
    let wanted = asked.wanted.clone();
    let command = wanted.command().map(str::to_string);
    let what = command.as_deref().or(wanted.subsystem());
    let opened = Opening {
        resolved: &resolved,
        id: &session_id,
        reason: reason.clone(),
        what,
        pty: asked.pty.as_ref(),
    };
    let Some((recording, tap)) = begin_recording(&ctx, &tx, opened, &fail_tx).await else {
        return;
    };
    let started = Started {
        resolved: &resolved,
        id: &session_id,
        command: command.as_deref(),
        subsystem: wanted.subsystem(),
        pty: asked.pty.is_some(),
        reason: reason.as_deref(),
    };
    if !audit_start(&ctx, &tx, started).await {
        return;
    }
    let (_registration, revoked) = ctx.app.live.register(&session_id, resolved.request.clone());
    let endings = Endings::new(
        revoked,
        resolved.grants.max_session,
        resolved.grants.idle_timeout,
    );
    let agent = asked.agent && agent_allowed(&ctx, &resolved).await;
    let files = wanted.watch().map(|w| {
        let who = json!({"session": session_id, "user": ctx.user.name,
            "container": resolved.container.name, "login": resolved.login});
        FileAudit::start(ctx.app.clone(), who, w, fail_tx.clone())
    });
    let taps = Taps {
        recording: tap.clone(),
        files: files.clone(),
    };
    let spec = exec_spec(&ctx, &resolved.login, &session_id, command, asked);
    let container = resolved.container.name.clone();
    let relayed = match start(&ctx, resolved, spec, agent).await {
        Ok((process, _agent)) => relay(process, rx, tx, &ctx, taps, fail_rx, endings).await,
        Err(message) => {
            refuse(&tx, &message).await;
            Relayed {
                description: "not started".to_string(),
                leftovers_too: false,
            }
        }
    };
    if let Some(f) = &files {
        f.finish().await;
    }
    if let Some(t) = &tap {
        t.finish().await;
    }
    seal(&ctx, &session_id, recording, relayed.description).await;
    // After the seal: what the session left running ends (or is tidied) last.
    end_processes(&ctx, &container, &session_id, relayed.leftovers_too).await;
}

/// What the runtime is asked to run for the session.
fn exec_spec(
    ctx: &SessionContext,
    login: &str,
    session_id: &str,
    command: Option<String>,
    asked: Requested,
) -> ExecSpec {
    let wanted = asked.wanted;
    ExecSpec {
        login: login.to_string(),
        command,
        argv: wanted.transfer().map(|t| t.argv),
        session: Some(session_id.to_string()),
        pty: asked.pty,
        env: asked.env,
        sftp: (wanted == Wanted::Sftp).then_some(ctx.app.config.runtime.sftp_server),
    }
}

/// What a person's own account in the container may do besides log in.
#[derive(Debug, Clone, Copy)]
struct Rights {
    sudo: bool,
    journal: bool,
}

/// What `session.start` says about a session.
struct Started<'a> {
    resolved: &'a access::Resolved,
    id: &'a str,
    command: Option<&'a str>,
    subsystem: Option<&'a str>,
    pty: bool,
    reason: Option<&'a str>,
}

/// Writes `session.start`; false once the session is refused because it cannot be
/// written and the configuration fails closed.
async fn audit_start(ctx: &SessionContext, tx: &ChannelWriteHalf<Msg>, s: Started<'_>) -> bool {
    let event = AuditEvent::SessionStart {
        session: s.id,
        user: &ctx.user.name,
        peer: &ctx.peer,
        container: &s.resolved.container.name,
        login: &s.resolved.login,
        command: s.command,
        subsystem: s.subsystem,
        pty: s.pty,
        rule: &s.resolved.rule,
        reason: s.reason,
    };
    let Err(e) = ctx.app.audit.event(event).await else {
        return true;
    };
    tracing::error!(session = %s.id, "audit: {e:#}");
    if !ctx.app.config.recording.fail_closed {
        return true;
    }
    refuse(tx, "the audit log cannot be written, so the session is refused; the administrators have the details").await;
    false
}

/// Decides the session on the policy, letting a person with a terminal choose among
/// their containers when they named none; `None` once refused.
async fn resolve(
    ctx: &SessionContext,
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
    asked: &mut Requested,
) -> Option<access::Resolved> {
    let action = asked.wanted.action();
    let mut target = ctx.target.clone();
    let source = ctx
        .peer
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip());
    loop {
        match access::resolve(&ctx.app, &ctx.user, &target, action, source, None).await {
            Ok(r) => return Some(r),
            Err(Refusal::Choose(list)) if asked.pty.is_some() => {
                match picker::choose(rx, tx, &mut asked.pty, &ctx.user.name, &list).await {
                    Some(name) => target.container = Some(name),
                    None => {
                        refuse(tx, "no container chosen").await;
                        return None;
                    }
                }
            }
            Err(r) => {
                refuse(tx, &r.message(&ctx.user.name)).await;
                return None;
            }
        }
    }
}

/// The reason given for the session: asked for when the rule requires one (`None` when
/// none valid came: the session is refused), else the one the client sent, if valid.
async fn session_reason(
    ctx: &SessionContext,
    resolved: &access::Resolved,
    session_id: &str,
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
    asked: &mut Requested,
) -> Option<Option<String>> {
    let given = asked.reason.take();
    if !resolved.grants.require_reason {
        return Some(given.and_then(|r| reason::clean(&r).ok()));
    }
    match reason::obtain(given.as_deref(), rx, tx, &mut asked.pty).await {
        Ok(r) => Some(Some(r)),
        Err(message) => {
            let detail = SessionRefused {
                session: Some(session_id),
                user: &ctx.user.name,
                peer: Some(&ctx.peer),
                container: Some(&resolved.container.name),
                login: Some(&resolved.login),
                rule: Some(&resolved.rule),
                runtime: None,
                reason: format!("no valid reason given: {message}"),
            };
            ctx.app.audit.note(AuditEvent::SessionRefused(detail)).await;
            refuse(tx, &message).await;
            None
        }
    }
}

/// What a session's recording is opened with.
struct Opening<'a> {
    resolved: &'a access::Resolved,
    id: &'a str,
    reason: Option<String>,
    what: Option<&'a str>,
    pty: Option<&'a PtySpec>,
}

/// Opens the session's recording and its tap, when recording is on; `None` when it
/// cannot be written and the configuration fails closed (the session is refused).
async fn begin_recording(
    ctx: &SessionContext,
    tx: &ChannelWriteHalf<Msg>,
    o: Opening<'_>,
    fail_tx: &mpsc::Sender<String>,
) -> Option<(Option<SessionRecording>, Option<Tap>)> {
    if !ctx.app.config.recording.enabled {
        return Some((None, None));
    }
    let size = o.pty.map_or((80, 24), |p| (p.size.cols, p.size.rows));
    let opened = open_recording(
        ctx,
        o.resolved,
        o.id,
        o.reason,
        o.what,
        o.pty.is_some(),
        size,
    );
    match opened {
        Ok((rec, channel)) => {
            let input = ctx.app.config.recording.input;
            let tap = ctx.app.recorders.tap(channel, input, fail_tx.clone()).await;
            Some((Some(rec), Some(tap)))
        }
        Err(e) if ctx.app.config.recording.fail_closed => {
            tracing::error!(session = %o.id, "recording: {e:#}");
            let detail = SessionRefused {
                session: Some(o.id),
                user: &ctx.user.name,
                peer: Some(&ctx.peer),
                container: Some(&o.resolved.container.name),
                login: None,
                rule: None,
                runtime: None,
                reason: format!("recording cannot be written: {e:#}"),
            };
            ctx.app.audit.note(AuditEvent::SessionRefused(detail)).await;
            refuse(tx, "this session cannot be recorded, so it is refused (recording.fail_closed); the administrators have the details").await;
            None
        }
        Err(e) => {
            tracing::warn!(session = %o.id, "continuing unrecorded: {e:#}");
            Some((None, None))
        }
    }
}

/// Seals the recording (its files' digests go into the end event) and writes
/// `session.end`.
async fn seal(
    ctx: &SessionContext,
    session_id: &str,
    recording: Option<SessionRecording>,
    exit: String,
) {
    let mut sealed = None;
    if let Some(mut rec) = recording {
        match rec.finish(exit.clone()) {
            Ok(digests) => {
                let files: serde_json::Map<String, serde_json::Value> = digests
                    .into_iter()
                    .map(|(name, d)| (name, serde_json::Value::String(d)))
                    .collect();
                sealed = Some(files);
            }
            Err(e) => tracing::error!(session = %session_id, "cannot seal the recording: {e}"),
        }
    }
    let end = AuditEvent::SessionEnd {
        session: session_id,
        user: &ctx.user.name,
        exit: &exit,
        recording: sealed,
    };
    ctx.app.audit.note(end).await;
}

/// Creates the session's recording directory and the channel's cast files.
fn open_recording(
    ctx: &SessionContext,
    resolved: &access::Resolved,
    id: &str,
    reason: Option<String>,
    command: Option<&str>,
    pty: bool,
    size: (u16, u16),
) -> anyhow::Result<(SessionRecording, ChannelRecorder)> {
    let meta = SessionMeta {
        id: id.to_string(),
        user: ctx.user.name.clone(),
        peer: ctx.peer.clone(),
        container: resolved.container.name.clone(),
        login: resolved.login.clone(),
        reason,
        start: chrono::Utc::now(),
        end: None,
        exit: None,
        channels: vec![],
    };
    let mut rec = ctx.app.recordings.start(meta)?;
    let channel = rec.channel(0, command, pty, size)?;
    Ok((rec, channel))
}

/// After a session: with `kill`, the processes it left running in the container end too
/// (audited with their number); in any case what kept them together is tidied.
async fn end_processes(ctx: &SessionContext, container: &str, session: &str, kill: bool) {
    let (killed, error) = match ctx.app.runtime.end_session(container, session, kill).await {
        Ok(n) => {
            if kill {
                tracing::info!(killed = n, "the session's remaining processes ended");
            }
            (Some(n), None)
        }
        Err(e) => {
            tracing::warn!("session processes: {e}");
            (None, Some(e.to_string()))
        }
    };
    if kill {
        let event = AuditEvent::SessionProcessesEnded {
            session,
            user: &ctx.user.name,
            container,
            killed,
            error,
        };
        ctx.app.audit.note(event).await;
    }
}

/// Refuses the session with one line on stderr and exit status 1.
async fn refuse(tx: &ChannelWriteHalf<Msg>, message: &str) {
    tracing::warn!("session refused: {message}");
    let _ = tx
        .extended_data(1, format!("gatehouse: {message}\r\n").as_bytes())
        .await;
    let _ = tx.exit_status(1).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// Starts the container on demand, creates the account, and starts the process.
async fn start(
    ctx: &SessionContext,
    resolved: access::Resolved,
    spec: ExecSpec,
    agent: bool,
) -> Result<(Process, Option<agent::Forwarded>), String> {
    let name = resolved.container.name.clone();
    let runtime = &ctx.app.runtime;
    let mut record = resolved.container.clone();
    record.last_login = Some(chrono::Utc::now());
    if let Err(e) = runtime.update(&record).await {
        tracing::warn!(container = %name, "cannot record last login: {e}");
    }
    tracing::info!(container = %name, login = %resolved.login, rule = %resolved.rule, peer = %ctx.peer, command = ?spec.command, pty = spec.pty.is_some(), "session start");
    // A container that is stopping right now (idle stop) is started again once.
    for attempt in 0..2 {
        match launch(
            ctx,
            &name,
            &resolved.login,
            Rights {
                sudo: resolved.grants.sudo,
                journal: resolved.grants.sudo || resolved.container.owner == ctx.user.name,
            },
            spec.clone(),
            agent,
        )
        .await
        {
            Err(RuntimeError::Stopping(_)) if attempt == 0 => {
                tracing::info!(container = %name, "container was stopping; starting it again");
                let _ = runtime.stop(&name).await;
            }
            Err(e) => {
                tracing::error!(container = %name, "session start failed: {e}");
                return Err(match e {
                    RuntimeError::StartFailed { .. } => format!(
                        "container '{name}' could not be started; the administrators have the details"
                    ),
                    other => format!("cannot start a session in '{name}': {other}"),
                });
            }
            Ok(p) => return Ok(p),
        }
    }
    Err(format!("container '{name}' keeps stopping; try again"))
}

/// Whether the policy lets this session forward the client's agent (a refusal is logged
/// and audited; the session goes on without it, as sshd's would).
async fn agent_allowed(ctx: &SessionContext, resolved: &access::Resolved) -> bool {
    let mut request = resolved.request.clone();
    request.action = Action::AgentForward;
    let decision = ctx.app.policy.current().decide(&request);
    if !decision.is_allowed() {
        tracing::warn!("agent forwarding refused by policy");
        ctx.app
            .audit
            .note(AuditEvent::AgentRefused {
                user: &ctx.user.name,
                container: &resolved.container.name,
                login: &resolved.login,
            })
            .await;
    }
    decision.is_allowed()
}

/// Starts the container if needed, creates the person's account in it, starts the process.
async fn launch(
    ctx: &SessionContext,
    name: &str,
    login: &str,
    rights: Rights,
    mut spec: ExecSpec,
    agent: bool,
) -> Result<(Process, Option<agent::Forwarded>), RuntimeError> {
    let runtime = &ctx.app.runtime;
    let t0 = Instant::now();
    if runtime.start(name).await? == StartOutcome::Started {
        tracing::info!(container = %name, ms = t0.elapsed().as_millis() as u64, "container started on demand");
        ctx.app
            .audit
            .note(AuditEvent::Container(ContainerEvent {
                change: ContainerChange::Started,
                container: name,
                by: &ctx.user.name,
                detail: ContainerDetail::OnDemand { on_demand: true },
            }))
            .await;
    }
    let account = (login == ctx.user.name).then(|| Account {
        name: ctx.user.name.clone(),
        uid: ctx.user.uid,
        gid: ctx.user.gid,
        shell: ctx.user.shell.clone(),
        home: ctx.user.home.clone(),
        sudo: rights.sudo,
        journal: rights.journal,
    });
    runtime.prepare_session(name, account.as_ref()).await?;
    let forwarded = if agent {
        agent::forward(&ctx.app, ctx.handle.clone(), name, login, &ctx.user.name).await
    } else {
        None
    };
    if let Some(f) = &forwarded {
        spec.env.push(("SSH_AUTH_SOCK".into(), f.path.clone()));
    }
    Ok((runtime.exec(name, spec).await?, forwarded))
}

/// How a relayed process ended.
enum Outcome {
    /// It exited.
    Exited(ExitStatus),
    /// The runtime lost it.
    Lost(gatehouse_runtime::RuntimeError),
    /// The gateway ended it (recording failed, access revoked, a time limit), saying why.
    Ended(String),
}

/// How a relay ended: its description (for the audit), and whether the processes the
/// session left running are to end too.
struct Relayed {
    description: String,
    leftovers_too: bool,
}

/// Where the relay copies what passes: the recording and the file audit.
#[derive(Clone)]
struct Taps {
    recording: Option<Tap>,
    files: Option<FileAudit>,
}

/// Relays until the process ends or the channel closes; returns how it ended.
async fn relay(
    process: Process,
    mut rx: russh::ChannelReadHalf,
    tx: ChannelWriteHalf<Msg>,
    ctx: &SessionContext,
    taps: Taps,
    mut recording_failed: mpsc::Receiver<String>,
    mut endings: Endings,
) -> Relayed {
    let Process {
        stdin,
        stdout,
        stderr,
        control,
        mut exit,
    } = process;
    let (in_tx, pumps) = Pumps::start(stdin, stdout, stderr, &tx, &taps);
    let mut in_tx = Some(in_tx);
    let mut leftovers_too = false;
    let status = loop {
        tokio::select! {
            status = &mut exit => break Some(match status {
                Ok(st) => Outcome::Exited(st),
                Err(e) => Outcome::Lost(e),
            }),
            Some(why) = recording_failed.recv() => {
                // Fail closed: no recording, no session.
                tracing::error!("{why}");
                let _ = tx.extended_data(1, format!("\r\ngatehouse: {why}\r\n").as_bytes()).await;
                let _ = control.signal("KILL").await;
                break Some(Outcome::Ended(why));
            }
            ending = endings.next() => {
                let why = ending.message;
                tracing::warn!("{why}");
                let _ = tx.extended_data(1, format!("\r\ngatehouse: {why}\r\n").as_bytes()).await;
                let _ = control.signal("HUP").await;
                if tokio::time::timeout(HANGUP_GRACE, &mut exit).await.is_err() {
                    let _ = control.signal("KILL").await;
                }
                leftovers_too = ending.processes_too;
                break Some(Outcome::Ended(why));
            }
            msg = rx.wait() => {
                if matches!(msg, Some(ChannelMsg::Data { .. })) {
                    endings.touch();
                }
                if !from_client(msg, &taps, &mut in_tx, control.as_ref()).await {
                    break None;
                }
            }
        }
    };
    drop(in_tx);
    let Some(status) = status else {
        tracing::info!("session closed by the client");
        pumps.abort();
        return Relayed {
            description: "closed".into(),
            leftovers_too: false,
        };
    };
    pumps.drain().await;
    let description = match &status {
        Outcome::Exited(ExitStatus::Code(code)) => format!("code {code}"),
        Outcome::Exited(ExitStatus::Signal { name, .. }) => format!("signal {name}"),
        Outcome::Lost(e) => format!("lost: {e}"),
        Outcome::Ended(why) => format!("ended: {why}"),
    };
    report_exit(ctx, &tx, status).await;
    Relayed {
        description,
        leftovers_too,
    }
}

/// The tasks that copy a process's standard streams to and from the channel.
struct Pumps {
    stdin: tokio::task::JoinHandle<()>,
    stdout: tokio::task::JoinHandle<()>,
    stderr: Option<tokio::task::JoinHandle<()>>,
}

impl Pumps {
    /// Starts them; returns where the client's input goes, and the pumps.
    fn start(
        stdin: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
        stdout: std::pin::Pin<Box<dyn AsyncRead + Send>>,
        stderr: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
        tx: &ChannelWriteHalf<Msg>,
        taps: &Taps,
    ) -> (mpsc::Sender<Bytes>, Pumps) {
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(STDIN_QUEUE);
        let err_taps = Taps {
            recording: taps.recording.clone(),
            files: None,
        };
        let pumps = Pumps {
            stdin: tokio::spawn(pump_stdin(stdin, in_rx)),
            stdout: tokio::spawn(pump_out(
                stdout,
                tx.make_writer(),
                taps.clone(),
                Stream::Out,
            )),
            stderr: stderr.map(|e| {
                let writer = tx.make_writer_ext(Some(1));
                tokio::spawn(pump_out(e, writer, err_taps, Stream::Err))
            }),
        };
        (in_tx, pumps)
    }

    /// The client left: nothing more is copied.
    fn abort(self) {
        self.stdin.abort();
        self.stdout.abort();
        if let Some(t) = self.stderr {
            t.abort();
        }
    }

    /// The process ended: its output drains (for a while) before the exit status is
    /// reported, as sshd does.
    async fn drain(self) {
        let output = async {
            let _ = self.stdout.await;
            if let Some(t) = self.stderr {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, output).await;
        self.stdin.abort();
    }
}

/// Passes one message of the client's on to the process (and the taps); false once the
/// client closed the channel (the process is hung up on).
async fn from_client(
    msg: Option<ChannelMsg>,
    taps: &Taps,
    stdin: &mut Option<mpsc::Sender<Bytes>>,
    control: &dyn gatehouse_runtime::ProcessControl,
) -> bool {
    match msg {
        Some(ChannelMsg::Data { data }) => {
            if let Some(t) = &taps.recording {
                t.input(&data).await;
            }
            if let Some(f) = &taps.files {
                f.client(&data).await;
            }
            if let Some(q) = stdin {
                if q.send(data).await.is_err() {
                    *stdin = None;
                }
            }
        }
        Some(ChannelMsg::Eof) => *stdin = None,
        Some(ChannelMsg::WindowChange {
            col_width,
            row_height,
            pix_width,
            pix_height,
        }) => {
            if let Some(t) = &taps.recording {
                t.resize(col_width, row_height).await;
            }
            let size = WindowSize::from_ssh(col_width, row_height, pix_width, pix_height);
            let _ = control.resize(size).await;
        }
        Some(ChannelMsg::Signal { signal }) => {
            let _ = control.signal(&signals::name(&signal)).await;
        }
        Some(ChannelMsg::Close) | None => {
            let _ = control.signal("HUP").await;
            return false;
        }
        Some(_) => {}
    }
    true
}

/// Tells the client how the process ended (exit status or signal, as sshd does), then
/// closes the channel.
async fn report_exit(ctx: &SessionContext, tx: &ChannelWriteHalf<Msg>, status: Outcome) {
    match status {
        Outcome::Exited(ExitStatus::Code(code)) => {
            tracing::info!(code, "session end");
            let _ = tx.exit_status(code as u32).await;
        }
        Outcome::Exited(ExitStatus::Signal { name, core_dumped }) => {
            tracing::info!(signal = name, "session end");
            let _ = ctx
                .handle
                .exit_signal_request(
                    tx.id(),
                    signals::from_name(name),
                    core_dumped,
                    String::new(),
                    String::new(),
                )
                .await;
        }
        Outcome::Lost(e) => {
            tracing::error!("session lost: {e}");
            let _ = tx
                .extended_data(1, format!("gatehouse: session lost: {e}\r\n").as_bytes())
                .await;
            let _ = tx.exit_status(255).await;
        }
        // The message was shown when the gateway ended it.
        Outcome::Ended(_) => {
            let _ = tx.exit_status(255).await;
        }
    }
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

async fn pump_stdin(
    mut stdin: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    while let Some(data) = rx.recv().await {
        if stdin.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

/// Copies a process's output to the channel, and to the recording and the file audit on
/// the way (the same buffer for all: they keep a reference, not a copy).
async fn pump_out(
    mut from: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    mut to: impl AsyncWrite + Unpin,
    taps: Taps,
    stream: Stream,
) {
    let mut buf = bytes::BytesMut::new();
    let mut size = OUTPUT_CHUNK_MIN;
    loop {
        buf.reserve(size);
        let n = match from.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if n >= size {
            size = (size * 2).min(OUTPUT_CHUNK_MAX);
        } else if n < size / 4 {
            size = (size / 2).max(OUTPUT_CHUNK_MIN);
        }
        let chunk = buf.split().freeze();
        if let Some(t) = &taps.recording {
            t.output(stream, chunk.clone()).await;
        }
        if let Some(f) = &taps.files {
            f.server(&chunk).await;
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.flush().await;
}
