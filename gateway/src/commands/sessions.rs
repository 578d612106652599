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
    /// Check the audit log's hash chain, its signatures and signed head, and every sealed
    /// recording's digest.
    Verify {
        /// The audit public key to trust (64 hex digits, as `audit key` prints it), kept
        /// away from this host; without it, the key in the state directory.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// Print the audit public key and its fingerprint, to keep elsewhere for `verify`.
    Key,
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

/// Text people typed or sent (commands, reasons, typed lines) as it may reach an admin's
/// terminal: control characters (escape sequences, carriage returns, C1 controls) are
/// shown escaped (`\u{1b}`), never passed on to the terminal.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
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
                    printable(line.trim_end())
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
            printable(&exit.chars().take(12).collect::<String>()),
            printable(s.reason.as_deref().unwrap_or("-")),
            printable(&what.chars().take(60).collect::<String>())
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
            c.say(format!("$ {}", printable(command)));
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
    let state = &config.server.state_dir;
    let public_key = match cmd {
        AuditCommand::Key => return audit_key(state, c),
        AuditCommand::Verify { public_key } => public_key,
    };
    let trusted = match public_key.as_deref() {
        None => None,
        Some(text) => Some(
            gatehouse_recordings::head::unhex(text.trim())
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("--public-key: give the 64 hex digits `audit key` prints")
                })?,
        ),
    };
    let audit = state.join("audit");
    match gatehouse_recordings::verify::verify(&audit, &state.join("recordings"), trusted)? {
        Ok(r) => {
            c.say(format!("trusted key: {}", r.key_fingerprint));
            c.say(format!(
                "audit log intact: {} events ({} signed checkpoints, signed head at event {}), {} recording files match their sealed digests",
                r.events, r.checkpoints, r.head, r.files
            ));
            if r.past_head > 0 {
                c.say(format!("note: {} event(s) after the signed head (written as the gateway stopped abruptly)", r.past_head));
            }
            Ok(())
        }
        Err(place) => anyhow::bail!("audit verify FAILED: {place}"),
    }
}

/// `audit key`: the public half of the audit signing key, and its fingerprint.
fn audit_key(state: &Path, c: &mut Console) -> anyhow::Result<()> {
    let dir = state.join("audit");
    let public = gatehouse_recordings::audit::public_key(&dir)
        .ok_or_else(|| anyhow::anyhow!("no audit key in {}", dir.display()))?;
    c.say(gatehouse_recordings::store::hex(&public));
    c.say(gatehouse_recordings::head::fingerprint(&public));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert_eq!(printable("ls -l"), "ls -l");
        assert_eq!(
            printable("echo \u{1b}]0;owned\u{7}\u{1b}[2J\r"),
            "echo \\u{1b}]0;owned\\u{7}\\u{1b}[2J\\r"
        );
        assert_eq!(printable("caf\u{e9} \u{9b}31m"), "caf\u{e9} \\u{9b}31m");
    }
}
