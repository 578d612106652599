//! `gatehouse policy validate` and `gatehouse policy check`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use gatehouse_policies::{Action, Decision};

use crate::config::Config;

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files (default: the configured `[policy] paths`); every problem is
    /// reported as FILE:LINE:COL (exit 1 if there is any).
    Validate {
        /// Files or directories of `*.toml` files.
        paths: Vec<PathBuf>,
    },
    /// Explain one decision: the deciding rule and why every other rule did not decide
    /// (exit 0 allow, 1 deny).
    Check(Question),
}

/// One `policy check` question.
#[derive(Debug, Args)]
pub struct Question {
    /// Who (looked up in the directory for their groups unless --groups is given).
    #[arg(long)]
    user: String,
    /// Which container (its owner and labels come from the inventory).
    #[arg(long)]
    container: String,
    /// As which login (default: the user's own account).
    #[arg(long)]
    login: Option<String>,
    /// To do what: shell, exec, sftp, port-forward, agent-forward, x11.
    #[arg(long, default_value = "shell", value_parser = parse_action)]
    action: Action,
    /// Destination port, for port-forward.
    #[arg(long)]
    port: Option<u16>,
    /// Source address of the connection.
    #[arg(long)]
    from: Option<IpAddr>,
    /// The user's groups, instead of asking the directory (comma-separated).
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// When (RFC 3339; default now).
    #[arg(long, value_parser = parse_time)]
    at: Option<chrono::DateTime<chrono::Utc>>,
}

fn parse_action(s: &str) -> Result<Action, String> {
    Action::parse(s).ok_or_else(|| {
        format!("unknown action '{s}' (shell, exec, sftp, port-forward, agent-forward, x11)")
    })
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("'{s}' is not an RFC 3339 time: {e}"))
}

/// Runs a `policy` subcommand.
pub async fn run(config: &Config, cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Validate { paths } => validate(config, paths),
        PolicyCommand::Check(q) => check(config, q).await,
    }
}

fn validate(config: &Config, paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let paths = if paths.is_empty() {
        config.policy.paths.clone()
    } else {
        paths
    };
    if paths.is_empty() {
        anyhow::bail!("no policy files: give paths, or set [policy] paths in the configuration");
    }
    match gatehouse_policies::PolicySet::load(&paths) {
        Ok(set) => {
            let (allow, deny) = set.rules().iter().fold((0, 0), |(a, d), r| match r.effect {
                gatehouse_policies::rules::Effect::Allow => (a + 1, d),
                gatehouse_policies::rules::Effect::Deny => (a, d + 1),
            });
            println!("policy valid: {allow} allow and {deny} deny rules");
            Ok(())
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            anyhow::bail!("the policy is invalid ({} problems)", errors.0.len())
        }
    }
}

/// The groups the directory gives `user`.
async fn groups_of(config: &Config, user: &str) -> anyhow::Result<Vec<String>> {
    let directory = crate::wiring::open_directory(config)?;
    Ok(directory
        .lookup(user)
        .await
        .map_err(|e| anyhow::anyhow!("directory: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("no user '{user}' in the directory"))?
        .groups)
}

/// What an allow rule grants beyond access, in words.
fn granted(grants: &gatehouse_policies::Grants) -> Vec<String> {
    let mut extra = Vec::new();
    if grants.sudo {
        extra.push("sudo".to_string());
    }
    if grants.require_reason {
        extra.push("a reason is required".to_string());
    }
    if let Some(d) = grants.max_session {
        extra.push(format!("max_session {}", humantime::format_duration(d)));
    }
    if let Some(d) = grants.idle_timeout {
        extra.push(format!("idle_timeout {}", humantime::format_duration(d)));
    }
    extra
}

async fn check(config: &Config, q: Question) -> anyhow::Result<()> {
    let (policy, _) = crate::policy::read(&config.policy.paths)
        .map_err(|e| anyhow::anyhow!("the policy files are invalid:\n{e}"))?;
    let groups = match q.groups.clone() {
        Some(g) => g,
        None => groups_of(config, &q.user).await?,
    };
    let runtime = crate::wiring::open_runtime(config)?;
    let record = gatehouse_runtime::Runtime::get(runtime.as_ref(), &q.container).await?;
    let request = gatehouse_policies::Request {
        subject: gatehouse_policies::Subject {
            user: q.user.clone(),
            groups,
        },
        target: gatehouse_policies::Target {
            container: record.name.clone(),
            owner: record.owner.clone(),
            labels: record.labels.clone(),
        },
        login: q.login.unwrap_or_else(|| q.user.clone()),
        action: q.action,
        port: q.port,
        source: q.from,
        time: q.at.unwrap_or_else(chrono::Utc::now),
    };
    let e = policy.explain(&request);
    let what = format!(
        "{} → {} as {} ({})",
        request.subject.user, request.target.container, request.login, request.action
    );
    let rule_of = |name: &str| {
        e.traces
            .iter()
            .find(|t| t.rule == name)
            .map_or(name.to_string(), |t| {
                format!("{} '{}' ({})", t.effect, t.rule, t.origin)
            })
    };
    match &e.decision {
        Decision::Allow { rule, grants } => {
            println!("ALLOW {what}");
            println!("decided by: {}", rule_of(rule));
            let extra = granted(grants);
            if !extra.is_empty() {
                println!("with: {}", extra.join(", "));
            }
        }
        Decision::Deny { rule, reason } => {
            println!("DENY {what}");
            match rule {
                Some(r) => println!("decided by: {}", rule_of(r)),
                None => println!("decided by: default deny (no allow rule matches)"),
            }
            println!("the person is told: {reason}");
        }
    }
    println!("rules:");
    for t in &e.traces {
        println!("  {t}");
    }
    if e.decision.is_allowed() {
        Ok(())
    } else {
        Err(super::Quiet(1).into())
    }
}
