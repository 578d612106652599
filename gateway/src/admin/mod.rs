//! The admin control plane over SSH: `ssh -p 2222 alice@+admin@gw container create web02
//! --owner bob --memory 1G`. The command runs inside the gateway (never a shell on the
//! host), as the person who connected: members of `[server] admin_group` may run every
//! command offered here, others what `[[admin]]` rules delegate to them, and
//! `[[self_service]]` rules let people create and manage containers of their own within
//! quotas. Each change is an audit event naming who made it; each refusal too.

mod authz;
mod console;
pub mod socket;

pub use authz::Visible;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use crate::app::App;
use crate::audit::AuditEvent;
use crate::commands::container::ContainerCommand;
use crate::commands::fleet::vuln_data::VulnDataCommand;
use crate::commands::fleet::FleetCommand;
use crate::commands::patch::PatchArgs;
use crate::commands::sessions::{AuditCommand, SessionsCommand};
use crate::commands::Console;
use crate::directory::User;

/// The commands offered over SSH (none of them takes a host path).
#[derive(Debug, Parser)]
#[command(name = "+admin", no_binary_name = true, disable_version_flag = true)]
struct AdminCli {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Manage containers (backup and restore take host paths: host only).
    #[command(subcommand)]
    Container(ContainerCommand),
    /// What the fleet's containers run (those your rights cover).
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Upgrade packages inside containers, recorded and audited, under a change reference.
    Patch(PatchArgs),
    /// Recorded sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// A recorded session as plain text.
    Replay {
        /// The session id.
        session: String,
        /// Plain text (the only form over SSH).
        #[arg(long, required = true)]
        text: bool,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// How a command ended.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Done {
    /// Its stdout.
    pub out: String,
    /// Its stderr.
    pub err: String,
    /// Its exit status.
    pub code: u32,
}

/// Serves one admin channel: waits for the command, runs it, reports.
pub async fn run(channel: Channel<Msg>, app: Arc<App>, user: User, peer: String) {
    let (mut rx, tx) = channel.split();
    let mut terminal = None;
    let command = loop {
        match rx.wait().await {
            Some(ChannelMsg::Exec { command, .. }) => {
                break Some(String::from_utf8_lossy(&command).into_owned())
            }
            Some(ChannelMsg::RequestShell { .. }) => break None,
            Some(ChannelMsg::RequestPty {
                col_width,
                row_height,
                ..
            }) => terminal = Some(console::size(col_width, row_height)),
            Some(ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    };
    if let Some(name) = command.as_deref().and_then(console::wanted) {
        let caller = Caller::Ssh { user, peer };
        return console::serve(rx, tx, &app, &caller, &name, terminal).await;
    }
    let done = match command {
        None => Done::failed(
            format!(
                "gatehouse: the admin control plane takes a command, e.g. ssh {}@+admin@gw container list\n",
                user.name
            ),
            2,
        ),
        Some(line) => execute(&app, &user, &peer, &line).await,
    };
    let _ = tx.data_bytes(done.out.into_bytes()).await;
    let _ = tx.extended_data(1, done.err.as_bytes()).await;
    let _ = tx.exit_status(done.code).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// Parses, authorizes and runs one command line.
async fn execute(app: &Arc<App>, user: &User, peer: &str, line: &str) -> Done {
    let Some(words) = shlex::split(line) else {
        return Done::failed(
            "gatehouse: cannot parse the command (unbalanced quotes)\n".into(),
            2,
        );
    };
    let caller = Caller::Ssh {
        user: user.clone(),
        peer: peer.to_string(),
    };
    execute_words(app, &caller, &words).await
}

/// Who runs an admin command.
pub enum Caller {
    /// A person over SSH, with their rights.
    Ssh {
        /// The person.
        user: User,
        /// From where.
        peer: String,
    },
    /// Root on the gateway host, through the local socket.
    Host {
        /// Who (the host account behind sudo, if any).
        by: String,
    },
}

impl Done {
    /// A command that failed before it produced output.
    pub(crate) fn failed(err: String, code: u32) -> Done {
        Done {
            out: String::new(),
            err,
            code,
        }
    }
}

impl Caller {
    /// The caller as a hosted session (a patch run) names them.
    fn viewer(&self, rights: &authz::Rights) -> crate::commands::hosted::Viewer {
        let (user, peer) = match self {
            Caller::Ssh { user, peer } => (user.name.clone(), peer.clone()),
            Caller::Host { by } => (by.clone(), "local".into()),
        };
        crate::commands::hosted::Viewer {
            user,
            peer,
            rights: rights.describe(),
        }
    }

    fn by(&self) -> String {
        match self {
            Caller::Ssh { user, peer } => format!("{} (over SSH from {peer})", user.name),
            Caller::Host { by } => by.clone(),
        }
    }
}

/// Decides whether `caller` may run `command` (and which containers a list shows).
async fn decide(
    app: &Arc<App>,
    caller: &Caller,
    command: &mut AdminCommand,
) -> Result<(authz::Rights, Option<Visible>), String> {
    let Caller::Ssh { user, .. } = caller else {
        return Ok((authz::Rights::Host, None));
    };
    match command {
        AdminCommand::Container(
            ContainerCommand::Backup { .. } | ContainerCommand::Restore { .. },
        ) => Err(
            "container backup and restore name host paths: run them on the gateway host"
                .to_string(),
        ),
        AdminCommand::Container(cmd) => authz::authorize(app, user, cmd).await,
        AdminCommand::Fleet(FleetCommand::Vulns { data: Some(_), .. }) => {
            Err("--data names a host path: run it on the gateway host".to_string())
        }
        AdminCommand::Fleet(FleetCommand::VulnData(VulnDataCommand::Update { from: Some(_) })) => {
            Err("--from makes the host fetch a URL: run it on the gateway host".to_string())
        }
        AdminCommand::Fleet(cmd @ FleetCommand::VulnData(_)) => {
            authz::unscoped(app, user, cmd.key())
        }
        AdminCommand::Fleet(cmd) => authz::over_containers(app, user, cmd.key()),
        AdminCommand::Patch(_) => authz::over_containers(app, user, "fleet.patch"),
        AdminCommand::Sessions(SessionsCommand::List { .. }) => {
            authz::unscoped(app, user, "sessions.list")
        }
        AdminCommand::Sessions(SessionsCommand::Search { .. }) => {
            authz::unscoped(app, user, "sessions.search")
        }
        AdminCommand::Replay { .. } => authz::unscoped(app, user, "replay"),
        AdminCommand::Audit(_) => authz::unscoped(app, user, "audit.verify"),
    }
}

/// Decides whether `caller` may run `command` (written `line`); a refusal is logged,
/// audited, and comes back as the command's end.
async fn authorized(
    app: &Arc<App>,
    caller: &Caller,
    command: &mut AdminCommand,
    line: &str,
) -> Result<(authz::Rights, Option<Visible>), Done> {
    let why = match decide(app, caller, command).await {
        Ok(allowed) => return Ok(allowed),
        Err(why) => why,
    };
    let by = caller.by();
    tracing::warn!(by = %by, command = %line, "admin command refused: {why}");
    app.audit
        .note(AuditEvent::AdminRefused {
            by: &by,
            command: line,
            reason: &why,
        })
        .await;
    Err(Done::failed(format!("gatehouse: {why}\n"), 1))
}

/// Parses, authorizes and runs one command (its words, without a program name).
pub async fn execute_words(app: &Arc<App>, caller: &Caller, words: &[String]) -> Done {
    let line = shlex::try_join(words.iter().map(String::as_str)).unwrap_or_default();
    let mut command = match AdminCli::try_parse_from(words) {
        Ok(cli) => cli.command,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            return Done::failed(e.render().to_string(), code);
        }
    };
    let by = caller.by();
    let mut console = Console {
        by: by.clone(),
        user: match caller {
            Caller::Ssh { user, .. } => Some(user.name.clone()),
            Caller::Host { .. } => None,
        },
        ..Default::default()
    };
    let rights = match authorized(app, caller, &mut command, &line).await {
        Ok((rights, visible)) => {
            console.visible = visible;
            rights
        }
        Err(done) => return done,
    };
    tracing::info!(by = %by, command = %line, rights = %rights.describe(), "admin command");
    // Every command is audited, reading ones too: who looked at which recordings.
    app.audit
        .note(AuditEvent::AdminCommand {
            by: &by,
            command: &line,
            rights: rights.describe(),
        })
        .await;
    let config = &app.config;
    let result = match command {
        AdminCommand::Container(cmd) => {
            crate::commands::container::run(config, app.runtime.as_ref(), cmd, &mut console).await
        }
        AdminCommand::Fleet(cmd) => {
            crate::commands::fleet::run(config, app.runtime.as_ref(), cmd, &mut console).await
        }
        AdminCommand::Patch(args) => {
            let cx = crate::commands::patch::Context {
                config,
                rt: app.runtime.as_ref(),
                audit: &app.audit,
                recordings: &app.recordings,
                viewer: caller.viewer(&rights),
            };
            crate::commands::patch::run(&cx, args, &mut console).await
        }
        AdminCommand::Sessions(cmd) => crate::commands::sessions::run(config, cmd, &mut console),
        AdminCommand::Replay { session, .. } => {
            crate::commands::sessions::replay_text(config, &session, &mut console)
        }
        AdminCommand::Audit(cmd) => crate::commands::sessions::audit(config, cmd, &mut console),
    };
    match result {
        Ok(()) => Done {
            out: console.out,
            err: console.err,
            code: 0,
        },
        Err(e) => Done {
            out: console.out,
            err: format!("{}gatehouse: {e:#}\n", console.err),
            code: 1,
        },
    }
}
