//! `gatehouse sessions list`, `gatehouse replay`, `gatehouse audit verify`.

use std::path::Path;

use clap::Subcommand;
use gatehouse_recordings::cast;
use gatehouse_recordings::store::{Recordings, SessionMeta};
use gatehouse_recordings::text;

use super::Console;
use crate::config::Config;

/// `sessions` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List recorded sessions.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Only those on this container.
        #[arg(long)]
        container: Option<String>,
        /// Only those started since (RFC 3339 time, or a duration back such as 2h).
        #[arg(long)]
        since: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Full-text search over what sessions showed, what was typed, and exec commands
    /// (exit 1 when nothing matches).
    Search {
        /// Text to find (case-insensitive).
        text: String,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain and every sealed recording's digest.
    Verify,
}

fn recordings(config: &Config) -> anyhow::Result<Recordings> {
    Ok(Recordings::open(
        config.server.state_dir.join("recordings"),
    )?)
}

fn parse_since(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    match gatehouse_runtime::limits::parse_duration(text)? {
        Some(d) => Ok(chrono::Utc::now() - chrono::Duration::from_std(d)?),
        None => anyhow::bail!(
            "--since {text}: use a time like 2026-11-26T10:00:00Z or a duration like 2h"
        ),
    }
}

/// The searchable lines of one session: commands, rendered screen text, typed lines.
fn searchable_lines(meta: &SessionMeta, dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for ch in &meta.channels {
        if let Some(c) = &ch.command {
            lines.push(format!("$ {c}"));
        }
        if let Ok((header, events)) = cast::read(&dir.join(&ch.file)) {
            lines.extend(text::render(&header, &events).lines().map(str::to_owned));
            lines.extend(
                text::typed_lines(&events)
                    .into_iter()
                    .map(|l| format!("(typed) {l}")),
            );
        }
    }
    lines
}

fn search(config: &Config, needle: &str, c: &mut Console) -> anyhow::Result<()> {
    let recs = recordings(config)?;
    let needle = needle.to_lowercase();
    let mut found = 0;
    for meta in recs.list()? {
        let Ok((_, dir)) = recs.get(&meta.id) else {
            continue;
        };
        for line in searchable_lines(&meta, &dir) {
            if line.to_lowercase().contains(&needle) {
                found += 1;
                c.say(format!(
                    "{} {}@{} {}: {}",
                    meta.id,
                    meta.user,
                    meta.container,
                    meta.start.format("%Y-%m-%d %H:%M:%S"),
                    line.trim_end()
                ));
            }
        }
    }
    if found == 0 {
        anyhow::bail!("no recorded session matches");
    }
    Ok(())
}

/// Runs `sessions …`.
pub fn run(config: &Config, cmd: SessionsCommand, c: &mut Console) -> anyhow::Result<()> {
    let (user, container, since, json) = match cmd {
        SessionsCommand::Search { text } => return search(config, &text, c),
        SessionsCommand::List {
            user,
            container,
            since,
            json,
        } => (user, container, since, json),
    };
    let since = since.as_deref().map(parse_since).transpose()?;
    let rows: Vec<SessionMeta> = recordings(config)?
        .list()?
        .into_iter()
        .filter(|s| user.as_ref().is_none_or(|u| *u == s.user))
        .filter(|s| container.as_ref().is_none_or(|c| *c == s.container))
        .filter(|s| since.is_none_or(|t| s.start >= t))
        .collect();
    if json {
        c.say(serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    c.say(format!(
        "{:<32} {:<10} {:<14} {:<10} {:<20} {:<12} {:<16} WHAT",
        "SESSION", "USER", "CONTAINER", "LOGIN", "START", "EXIT", "REASON"
    ));
    for s in rows {
        let what = s
            .channels
            .first()
            .map(|c| c.command.clone().unwrap_or_else(|| "shell".into()))
            .unwrap_or_default();
        let exit = s.exit.as_deref().unwrap_or("running");
        c.say(format!(
            "{:<32} {:<10} {:<14} {:<10} {:<20} {:<12} {:<16} {}",
            s.id,
            s.user,
            s.container,
            s.login,
            s.start.format("%Y-%m-%d %H:%M:%S"),
            exit.chars().take(12).collect::<String>(),
            s.reason.as_deref().unwrap_or("-"),
            what.chars().take(60).collect::<String>()
        ));
    }
    Ok(())
}

/// Runs `replay SESSION`.
pub async fn replay(
    config: &Config,
    id: &str,
    speed: f64,
    idle_limit: Option<f64>,
    as_text: bool,
) -> anyhow::Result<()> {
    if !(speed.is_finite() && speed > 0.0) {
        anyhow::bail!("--speed must be a positive number");
    }
    if as_text {
        let mut c = Console::local();
        let result = replay_text(config, id, &mut c);
        c.print();
        return result;
    }
    let (meta, dir) = recordings(config)?.get(id)?;
    let recs = recordings(config)?;
    let running = || recs.get(id).map(|(m, _)| m.end.is_none()).unwrap_or(false);
    for ch in &meta.channels {
        super::player::play(&dir.join(&ch.file), speed, idle_limit, &running).await?;
    }
    Ok(())
}

/// `replay SESSION --text`: the plain text of every channel.
pub fn replay_text(config: &Config, id: &str, c: &mut Console) -> anyhow::Result<()> {
    let (meta, dir) = recordings(config)?.get(id)?;
    for ch in &meta.channels {
        let (header, events) = cast::read(&dir.join(&ch.file))?;
        if let Some(command) = &ch.command {
            c.say(format!("$ {command}"));
        }
        c.out.push_str(&text::render(&header, &events));
    }
    let how = meta.exit.as_deref().unwrap_or("still running");
    c.say(format!(
        "[{} on {} as {}: {how}]",
        meta.user, meta.container, meta.login
    ));
    Ok(())
}

/// Runs `audit verify`: Ok when intact, an error naming the first broken place otherwise.
pub fn audit(config: &Config, cmd: AuditCommand, c: &mut Console) -> anyhow::Result<()> {
    let AuditCommand::Verify = cmd;
    let state = &config.server.state_dir;
    match gatehouse_recordings::verify::verify(&state.join("audit"), &state.join("recordings"))? {
        Ok(r) => {
            c.say(format!(
                "audit log intact: {} events, {} recording files match their sealed digests",
                r.events, r.files
            ));
            Ok(())
        }
        Err(place) => anyhow::bail!("audit verify FAILED: {place}"),
    }
}

/// Records an admin change made from this host in the audit log (fails the command if
/// the log cannot be written).
pub fn admin_event(
    state_dir: &Path,
    kind: &str,
    data: serde_json::Value,
    by: &str,
) -> anyhow::Result<()> {
    let log = gatehouse_recordings::audit::AuditLog::open(state_dir.join("audit"))?.signing()?;
    let mut data = data;
    data["by"] = serde_json::Value::String(by.to_string());
    log.append(kind, data)?;
    Ok(())
}
