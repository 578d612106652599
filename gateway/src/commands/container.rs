//! `gatehouse container create|list|show|start|stop|restart|delete|set`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use gatehouse_runtime::limits::{format_memory, parse_cpus, parse_memory, parse_pids};
use gatehouse_runtime::names::{is_user_name, validate_container_name};
use gatehouse_runtime::{ContainerRecord, ContainerState, Limits, Runtime};
use serde::Serialize;

use super::Console;
use crate::audit::{AuditEvent, ContainerChange, ContainerDetail, ContainerEvent};
use crate::config::Config;
use ContainerChange::*;

/// Container commands.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Register a container owned by a user (it starts on first use).
    Create {
        /// Container name (a DNS label).
        name: String,
        /// The owning user (over SSH: by default, the person creating it).
        #[arg(long)]
        owner: Option<String>,
        /// Image (default: [runtime] default_image).
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List containers.
    List {
        /// Only this owner's.
        #[arg(long)]
        owner: Option<String>,
        /// Only those with this label (k=v); repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one container.
    Show {
        /// Container name.
        name: String,
    },
    /// Start a container.
    Start {
        /// Container name.
        name: String,
    },
    /// Stop a container.
    Stop {
        /// Container name.
        name: String,
    },
    /// Stop and start a container.
    Restart {
        /// Container name.
        name: String,
    },
    /// Stop and delete a container with all its files.
    Delete {
        /// Container name.
        name: String,
    },
    /// `known_hosts` lines for the host keys containers present through ProxyJump
    /// (`ssh -J user@gw root@NAME`).
    Hostkeys {
        /// Only this container's.
        name: Option<String>,
    },
    /// Copy a container's files as a snapshot kept with it.
    Snapshot {
        /// Container name.
        name: String,
        /// Snapshot name (default: snap-<date>-<time>).
        #[arg(long = "name")]
        snap: Option<String>,
    },
    /// Move a container onto the newest generation of its image (or of --image) when its
    /// own layer left the package database alone (native runtime).
    Rebase {
        /// Container name.
        name: String,
        /// Onto this image's newest generation instead.
        #[arg(long)]
        image: Option<String>,
    },
    /// Attach to a running container's console (boot messages, its getty); recorded and
    /// audited like a session. Ctrl-] detaches.
    Console {
        /// Container name.
        name: String,
    },
    /// Write a compressed backup (files and record) of a container.
    Backup {
        /// Container name.
        name: String,
        /// Backup file to write.
        file: std::path::PathBuf,
    },
    /// Restore a backup as a new (stopped) container.
    Restore {
        /// Backup file.
        file: std::path::PathBuf,
        /// Name for the restored container (default: the original name).
        #[arg(long = "as")]
        as_name: Option<String>,
    },
    /// Change limits, purpose or labels.
    Set {
        /// Container name.
        name: String,
        #[command(flatten)]
        meta: MetaArgs,
    },
}

/// Purpose, labels and limits, shared by `create` and `set`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// What it is for.
    #[arg(long)]
    pub purpose: Option<String>,
    /// A label k=v (repeatable); `k=` removes it with `set`.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Memory limit, e.g. 1G.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit, e.g. 1.5.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Process-count limit.
    #[arg(long)]
    pub pids: Option<String>,
    /// A disk of its own, e.g. 10G: its files cannot grow past it, and `df /` inside
    /// shows it. `set` on a stopped container grows it or gives it one; a disk does
    /// not shrink.
    #[arg(long)]
    pub disk: Option<String>,
    /// Stop this long after the last session (`never`, `30m`, …; `default` for the
    /// runtime's setting).
    #[arg(long)]
    pub idle_stop: Option<String>,
    /// Let it make user namespaces of its own, to run containers or sandboxes inside
    /// (`true` or `false`; off by default). Widens what its root can reach in the kernel.
    #[arg(long)]
    pub nesting: Option<bool>,
    /// The init it boots: `image` (the image's /sbin/init, systemd on the full image),
    /// `builtin`, or `auto` (the image's when it has one; the default). Applies at its
    /// next start.
    #[arg(long)]
    pub init: Option<String>,
}

pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("label '{text}' must be key=value"))?;
    let key_ok = !k.is_empty()
        && k.len() <= 63
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !key_ok {
        return Err(format!(
            "label key '{k}' must be 1-63 letters, digits, '-', '_' or '.'"
        ));
    }
    if v.len() > 255 || v.chars().any(char::is_control) {
        return Err(format!(
            "label value for '{k}' must be at most 255 printable characters"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

impl MetaArgs {
    fn apply(&self, record: &mut ContainerRecord) -> anyhow::Result<()> {
        if let Some(p) = &self.purpose {
            if p.len() > 500 || p.chars().any(char::is_control) {
                anyhow::bail!("purpose must be at most 500 printable characters");
            }
            record.purpose = p.clone();
        }
        for (k, v) in &self.labels {
            if v.is_empty() {
                record.labels.remove(k);
            } else {
                record.labels.insert(k.clone(), v.clone());
            }
        }
        if let Some(m) = &self.memory {
            record.limits.memory = if m == "none" {
                None
            } else {
                Some(parse_memory(m)?)
            };
        }
        if let Some(c) = &self.cpus {
            record.limits.cpus = if c == "none" {
                None
            } else {
                Some(parse_cpus(c)?)
            };
        }
        if let Some(d) = &self.disk {
            record.limits.disk = if d == "none" {
                None
            } else {
                Some(parse_memory(d)?)
            };
        }
        if let Some(n) = self.nesting {
            record.nesting = n;
        }
        if let Some(i) = &self.init {
            record.init = match i.as_str() {
                "auto" => None,
                other => Some(gatehouse_runtime::InitChoice::parse(other)?),
            };
        }
        if let Some(i) = &self.idle_stop {
            record.idle_stop = if i == "default" {
                None
            } else {
                gatehouse_runtime::limits::parse_duration(i)?;
                Some(i.clone())
            };
        }
        if let Some(p) = &self.pids {
            record.limits.pids = if p == "none" {
                None
            } else {
                Some(parse_pids(p)?)
            };
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    record: ContainerRecord,
    state: &'static str,
    started: Option<chrono::DateTime<chrono::Utc>>,
}

fn limits_text(l: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(m) = l.memory {
        parts.push(format!("memory={}", format_memory(m)));
    }
    if let Some(c) = l.cpus {
        parts.push(format!("cpus={c}"));
    }
    if let Some(p) = l.pids {
        parts.push(format!("pids={p}"));
    }
    if let Some(d) = l.disk {
        parts.push(format!("disk={}", format_memory(d)));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs a container command on `rt`; output goes to `c`, audit events name `c.by`.
pub async fn run(
    config: &Config,
    rt: &dyn Runtime,
    cmd: ContainerCommand,
    c: &mut Console,
) -> anyhow::Result<()> {
    match cmd {
        ContainerCommand::Create {
            name,
            owner,
            image,
            meta,
        } => create(config, rt, c, name, owner, image, meta).await,
        ContainerCommand::List {
            owner,
            labels,
            json,
        } => list(rt, c, owner, &labels, json).await,
        ContainerCommand::Show { name } => show(config, rt, c, &name).await,
        ContainerCommand::Start { name } => {
            let outcome = rt.start(&name).await?;
            audit(config, c, Started, &name, ContainerDetail::None {})?;
            let done = if outcome == gatehouse_runtime::StartOutcome::Started {
                "started"
            } else {
                "was already running"
            };
            c.note(format!("container {name} {done}"));
            Ok(())
        }
        ContainerCommand::Stop { name } => {
            rt.stop(&name).await?;
            audit(config, c, Stopped, &name, ContainerDetail::None {})?;
            c.note(format!("container {name} stopped"));
            Ok(())
        }
        ContainerCommand::Restart { name } => {
            rt.stop(&name).await?;
            rt.start(&name).await?;
            audit(config, c, Restarted, &name, ContainerDetail::None {})?;
            c.note(format!("container {name} restarted"));
            Ok(())
        }
        ContainerCommand::Delete { name } => delete(config, rt, c, &name).await,
        ContainerCommand::Hostkeys { name } => hostkeys(config, rt, c, name).await,
        ContainerCommand::Snapshot { name, snap } => snapshot(config, rt, c, &name, snap).await,
        ContainerCommand::Rebase { name, image } => rebase(config, rt, c, &name, image).await,
        // Interactive: the front ends relay it (`cli/console.rs`, `admin/console.rs`).
        ContainerCommand::Console { name } => anyhow::bail!(super::console::needs_terminal(&name)),
        ContainerCommand::Backup { name, file } => {
            rt.backup(&name, &file).await?;
            let data = ContainerDetail::Backup {
                file: file.display().to_string(),
            };
            audit(config, c, Backup, &name, data)?;
            c.note(format!("container {name} backed up to {}", file.display()));
            Ok(())
        }
        ContainerCommand::Restore { file, as_name } => {
            let name = rt.restore(&file, as_name.as_deref()).await?;
            let data = ContainerDetail::Restored {
                from: file.display().to_string(),
            };
            audit(config, c, Restored, &name, data)?;
            c.note(format!(
                "container {name} restored from {} (stopped; it starts on first use)",
                file.display()
            ));
            Ok(())
        }
        ContainerCommand::Set { name, meta } => set(config, rt, c, &name, meta).await,
    }
}

/// `container delete`: the record as it was goes into the audit event.
async fn delete(
    config: &Config,
    rt: &dyn Runtime,
    c: &mut Console,
    name: &str,
) -> anyhow::Result<()> {
    let before = serde_json::to_value(rt.get(name).await?)?;
    rt.delete(name).await?;
    let data = ContainerDetail::Record {
        before: Some(before),
        after: None,
    };
    audit(config, c, Deleted, name, data)?;
    c.note(format!("container {name} deleted"));
    Ok(())
}

/// Writes an admin change by the console's person to the audit log.
fn audit(
    config: &Config,
    c: &Console,
    change: ContainerChange,
    container: &str,
    detail: ContainerDetail,
) -> anyhow::Result<()> {
    let event = AuditEvent::Container(ContainerEvent {
        change,
        container,
        by: &c.by,
        detail,
    });
    crate::audit::append_local(&config.server.state_dir, event)
}

async fn create(
    config: &Config,
    rt: &dyn Runtime,
    c: &mut Console,
    name: String,
    owner: Option<String>,
    image: Option<String>,
    meta: MetaArgs,
) -> anyhow::Result<()> {
    validate_container_name(&name)?;
    let owner = owner
        .or_else(|| c.user.clone())
        .ok_or_else(|| anyhow::anyhow!("--owner is required"))?;
    if !is_user_name(&owner) {
        anyhow::bail!("invalid owner name '{owner}'");
    }
    let image = image.unwrap_or_else(|| config.runtime.default_image.clone());
    let mut record = ContainerRecord::new(&name, &owner, &image);
    meta.apply(&mut record)?;
    let after = serde_json::to_value(&record)?;
    rt.create(record).await?;
    let data = ContainerDetail::Record {
        before: None,
        after: Some(after),
    };
    audit(config, c, Created, &name, data)?;
    c.note(format!("container {name} created (it starts on first use)"));
    Ok(())
}

async fn list(
    rt: &dyn Runtime,
    c: &mut Console,
    owner: Option<String>,
    labels: &[(String, String)],
    json: bool,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for record in rt.list().await? {
        if owner.as_ref().is_some_and(|o| *o != record.owner)
            || c.visible.as_ref().is_some_and(|v| !v(&record))
            || !labels.iter().all(|(k, v)| record.labels.get(k) == Some(v))
        {
            continue;
        }
        let state = rt.state(&record.name).await?;
        let started = match state {
            ContainerState::Running { since } => Some(since),
            ContainerState::Stopped => None,
        };
        rows.push(Listed {
            record,
            state: state.label(),
            started,
        });
    }
    if json {
        c.say(serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    c.say(format!(
        "{:<20} {:<12} {:<8} {:<15} {:<12} {:<10} {:<14} {:<20} PURPOSE",
        "NAME", "OWNER", "STATE", "ADDRESS", "HOST", "IMAGE", "UPTIME", "LAST LOGIN"
    ));
    for r in rows {
        c.say(list_line(&r));
    }
    Ok(())
}

/// One container's line in `container list`.
fn list_line(r: &Listed) -> String {
    let uptime = r
        .started
        .map(|s| human_duration(chrono::Utc::now() - s))
        .unwrap_or_else(|| "-".into());
    let last = r
        .record
        .last_login
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "never".into());
    let address = r.record.address.map_or("-".to_string(), |a| a.to_string());
    format!(
        "{:<20} {:<12} {:<8} {:<15} {:<12} {:<10} {:<14} {:<20} {}",
        r.record.name,
        r.record.owner,
        r.state,
        address,
        r.record.host.as_deref().unwrap_or("-"),
        r.record.image,
        uptime,
        last,
        r.record.purpose
    )
}

async fn show(
    config: &Config,
    rt: &dyn Runtime,
    c: &mut Console,
    name: &str,
) -> anyhow::Result<()> {
    let r = rt.get(name).await?;
    let state = rt.state(name).await?;
    c.say(format!("name:       {}", r.name));
    c.say(format!("owner:      {}", r.owner));
    c.say(format!("state:      {}", state.label()));
    if let ContainerState::Running { since } = state {
        c.say(format!("started:    {}", since.to_rfc3339()));
    }
    match r.generation {
        Some(n) => c.say(format!("image:      {} (generation {n})", r.image)),
        None => c.say(format!("image:      {}", r.image)),
    }
    c.say(format!("purpose:    {}", r.purpose));
    c.say(format!("labels:     {}", labels_text(&r.labels)));
    c.say(format!(
        "address:    {}",
        r.address.map_or("-".to_string(), |a| a.to_string())
    ));
    if let Some(h) = &r.host {
        c.say(format!("host:       {h}"));
    }
    c.say(format!("limits:     {}", limits_text(&r.limits)));
    c.say(format!(
        "idle stop:  {}",
        r.idle_stop.as_deref().unwrap_or(&config.runtime.idle_stop)
    ));
    if r.nesting {
        c.say("nesting:    on (nested user namespaces allowed)".to_string());
    }
    c.say(format!(
        "init:       {}",
        match r.init {
            Some(gatehouse_runtime::InitChoice::Image) => "image (its /sbin/init)",
            Some(gatehouse_runtime::InitChoice::Builtin) => "builtin",
            None => "auto (the image's /sbin/init when it has one)",
        }
    ));
    if let Some(u) = rt.usage(name).await? {
        let mem = u
            .memory_bytes
            .map(|m| format!("{:.1} MiB", m as f64 / 1048576.0));
        c.say(format!(
            "usage:      memory={} processes={} cpu={}",
            mem.unwrap_or_else(|| "?".into()),
            u.processes.map_or("?".into(), |p| p.to_string()),
            u.cpu_usec
                .map_or("?".into(), |c| format!("{:.2}s", c as f64 / 1e6)),
        ));
    }
    if let Some(d) = rt.disk_usage(name).await? {
        let mib = |b: u64| b as f64 / 1048576.0;
        c.say(format!(
            "disk:       {:.1} MiB used of {:.1} MiB ({:.0}%)",
            mib(d.used),
            mib(d.size),
            100.0 * d.used as f64 / d.size.max(1) as f64
        ));
    }
    c.say(format!("created:    {}", r.created.to_rfc3339()));
    let last = r.last_login.map(|t| t.to_rfc3339());
    c.say(format!(
        "last login: {}",
        last.as_deref().unwrap_or("never")
    ));
    Ok(())
}

async fn hostkeys(
    config: &Config,
    rt: &dyn Runtime,
    c: &mut Console,
    name: Option<String>,
) -> anyhow::Result<()> {
    let key = crate::hostkey::load_or_create(&config.server.state_dir)?;
    let names = match name {
        Some(n) => vec![rt.get(&n).await?.name],
        None => rt.list().await?.into_iter().map(|r| r.name).collect(),
    };
    for n in names {
        c.say(crate::hostkey::known_hosts_line(&key, &n)?);
    }
    Ok(())
}

async fn rebase(
    config: &Config,
    rt: &dyn Runtime,
    c: &mut Console,
    name: &str,
    image: Option<String>,
) -> anyhow::Result<()> {
    let before = rt.get(name).await?;
    let from = format!("{}@{}", before.image, before.generation.unwrap_or(1));
    let (image, generation) = rt.rebase(name, image.as_deref()).await?;
    let to = format!("{image}@{generation}");
    audit(
        config,
        c,
        Rebased,
        name,
        ContainerDetail::Rebased {
            from: from.clone(),
            to: to.clone(),
        },
    )?;
    c.note(format!("container {name} rebased from {from} to {to}"));
    Ok(())
}

async fn snapshot(
    config: &Config,
    rt: &dyn Runtime,
    c: &mut Console,
    name: &str,
    snap: Option<String>,
) -> anyhow::Result<()> {
    let snap = snap.unwrap_or_else(|| chrono::Utc::now().format("snap-%Y%m%d-%H%M%S").to_string());
    rt.snapshot(name, &snap).await?;
    let data = ContainerDetail::Snapshot {
        snapshot: snap.clone(),
    };
    audit(config, c, Snapshot, name, data)?;
    c.note(format!("container {name}: snapshot {snap} taken"));
    Ok(())
}

async fn set(
    config: &Config,
    rt: &dyn Runtime,
    c: &mut Console,
    name: &str,
    meta: MetaArgs,
) -> anyhow::Result<()> {
    let mut r = rt.get(name).await?;
    let before = r.limits;
    let before_json = serde_json::to_value(&r)?;
    meta.apply(&mut r)?;
    if r.limits.disk != before.disk {
        match r.limits.disk {
            Some(bytes) => rt.set_disk(name, bytes).await?,
            None => anyhow::bail!(
                "container {name}'s disk cannot be taken away (it holds the container's files)"
            ),
        }
    }
    rt.update(&r).await?;
    let data = ContainerDetail::Record {
        before: Some(before_json),
        after: Some(serde_json::to_value(&r)?),
    };
    audit(config, c, Changed, name, data)?;
    if r.limits != before && rt.apply_limits(name).await? {
        c.note(format!("container {name} updated; new limits apply now"));
    } else {
        c.note(format!("container {name} updated"));
    }
    Ok(())
}

fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("env=prod").unwrap(),
            ("env".into(), "prod".into())
        );
        assert_eq!(parse_label("env=").unwrap(), ("env".into(), String::new()));
        assert!(parse_label("noequals").is_err());
        assert!(parse_label("=x").is_err());
        assert!(parse_label("a b=x").is_err());
        assert!(parse_label("k=a\nb").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(chrono::Duration::seconds(59)), "59s");
        assert_eq!(human_duration(chrono::Duration::seconds(3700)), "1h1m");
    }
}
