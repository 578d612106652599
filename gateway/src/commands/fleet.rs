//! `gatehouse fleet …`: what the fleet's containers run, read from outside them. The
//! installed packages come from each container's dpkg status database through the
//! runtime ([`Runtime::read_file`]: nothing is started inside), parsed once per distinct
//! database (containers whose layer left the image's untouched share one parse); the
//! known vulnerabilities come from matching those against the Debian Security Tracker's
//! data for the release each container's `/etc/os-release` names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use gatehouse_fleet::packages::{parse_status, Package};
use gatehouse_fleet::tracker::{Tracker, Urgency};
use gatehouse_fleet::vulns::{findings, Finding};
use gatehouse_runtime::{ContainerRecord, Runtime};
use serde::Serialize;

use super::container::parse_label;
use super::Console;
use crate::config::Config;

/// The largest dpkg status database read (Debian's with every package is ≈ 60 MB).
const MAX_STATUS: u64 = 128 << 20;
/// The largest `/etc/os-release` read.
const MAX_OS_RELEASE: u64 = 64 << 10;
/// The largest tracker file read.
const MAX_TRACKER: u64 = 1 << 30;

/// Which containers a fleet command covers.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Containers by name (default: all).
    pub names: Vec<String>,
    /// Only those with this label (k=v); repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

/// The `fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// The installed packages of each container, read from outside it.
    Packages {
        #[command(flatten)]
        select: Selection,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Known vulnerabilities (Debian Security Tracker) of each container's packages; with
    /// --min-urgency, only those at or above it, and exit status 1 if there are any.
    Vulns {
        #[command(flatten)]
        select: Selection,
        /// The tracker's JSON (default: [fleet] vuln_data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// unimportant|not-yet-assigned|low|medium|high.
        #[arg(long)]
        min_urgency: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a fleet command.
pub async fn run(
    config: &Config,
    rt: &dyn Runtime,
    cmd: FleetCommand,
    c: &mut Console,
) -> anyhow::Result<()> {
    match cmd {
        FleetCommand::Packages { select, json } => packages(rt, &select, json, c).await,
        FleetCommand::Vulns {
            select,
            data,
            min_urgency,
            json,
        } => {
            let min = match min_urgency.as_deref() {
                None => None,
                Some(w) => Some(Urgency::threshold(w).ok_or_else(|| {
                    anyhow::anyhow!("unknown urgency '{w}': say unimportant, not-yet-assigned, low, medium or high")
                })?),
            };
            let data = data.unwrap_or_else(|| config.vuln_data());
            vulns(rt, &select, &data, min, json, c).await
        }
    }
}

/// The containers selected, by name.
async fn selected(
    rt: &dyn Runtime,
    s: &Selection,
    c: &Console,
) -> anyhow::Result<Vec<ContainerRecord>> {
    let mut out = Vec::new();
    for name in &s.names {
        out.push(rt.get(name).await?);
    }
    if s.names.is_empty() {
        out = rt.list().await?;
    }
    out.retain(|r| {
        s.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v))
            && c.visible.as_ref().is_none_or(|v| v(r))
    });
    Ok(out)
}

/// Parsed status databases by their text: containers sharing the image's parse once.
#[derive(Default)]
struct Parsed {
    by_text: HashMap<Vec<u8>, Arc<Vec<Package>>>,
}

impl Parsed {
    /// The packages of container `name` (an empty list when it has no dpkg database).
    async fn of(&mut self, rt: &dyn Runtime, name: &str) -> anyhow::Result<Arc<Vec<Package>>> {
        let Some(text) = rt
            .read_file(name, "/var/lib/dpkg/status", MAX_STATUS)
            .await?
        else {
            return Ok(Arc::new(Vec::new()));
        };
        if let Some(p) = self.by_text.get(&text) {
            return Ok(p.clone());
        }
        let parsed = Arc::new(parse_status(&String::from_utf8_lossy(&text))?);
        self.by_text.insert(text, parsed.clone());
        Ok(parsed)
    }
}

#[derive(Serialize)]
struct ContainerPackages<'a> {
    container: &'a str,
    packages: &'a [Package],
}

async fn packages(
    rt: &dyn Runtime,
    s: &Selection,
    json: bool,
    c: &mut Console,
) -> anyhow::Result<()> {
    let mut parsed = Parsed::default();
    let mut failed = 0;
    let mut rows = Vec::new();
    for r in selected(rt, s, c).await? {
        match parsed.of(rt, &r.name).await {
            Ok(p) => rows.push((r.name, p)),
            Err(e) => {
                failed += 1;
                c.note(format!("{}: {e:#}", r.name));
            }
        }
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(n, p)| ContainerPackages {
                container: n,
                packages: p,
            })
            .collect();
        c.say(serde_json::to_string_pretty(&out)?);
    } else {
        for (name, list) in &rows {
            for p in list.iter() {
                c.say(format!(
                    "{name:<20} {:<32} {:<28} {:<6} {}",
                    p.name, p.version, p.arch, p.source
                ));
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => anyhow::bail!("the packages of {n} container(s) could not be read"),
    }
}

/// A container's release, as its `/etc/os-release` names it (`VERSION_CODENAME`).
async fn release(rt: &dyn Runtime, name: &str) -> anyhow::Result<Option<String>> {
    let Some(text) = rt
        .read_file(name, "/etc/os-release", MAX_OS_RELEASE)
        .await?
    else {
        return Ok(None);
    };
    Ok(String::from_utf8_lossy(&text).lines().find_map(|l| {
        let v = l
            .strip_prefix("VERSION_CODENAME=")?
            .trim()
            .trim_matches('"');
        (!v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then(|| v.to_string())
    }))
}

#[derive(Serialize)]
struct ContainerFindings {
    container: String,
    release: Option<String>,
    findings: Vec<Finding>,
}

async fn vulns(
    rt: &dyn Runtime,
    s: &Selection,
    data: &std::path::Path,
    min: Option<Urgency>,
    json: bool,
    c: &mut Console,
) -> anyhow::Result<()> {
    let mut parsed = Parsed::default();
    let mut trackers: HashMap<String, Arc<Tracker>> = HashMap::new();
    let mut out = Vec::new();
    for r in selected(rt, s, c).await? {
        let rel = release(rt, &r.name).await?;
        let Some(rel) = rel else {
            c.note(format!(
                "{}: no VERSION_CODENAME in its /etc/os-release: not matched",
                r.name
            ));
            out.push(ContainerFindings {
                container: r.name,
                release: None,
                findings: vec![],
            });
            continue;
        };
        let tracker = match trackers.get(&rel) {
            Some(t) => t.clone(),
            None => {
                let t = Arc::new(load_tracker(data, &rel).await?);
                trackers.insert(rel.clone(), t.clone());
                t
            }
        };
        let packages = parsed.of(rt, &r.name).await?;
        let found = findings(&packages, &tracker, min.unwrap_or(Urgency::Unimportant));
        out.push(ContainerFindings {
            container: r.name,
            release: Some(rel),
            findings: found,
        });
    }
    report(&out, json, c)?;
    let n: usize = out.iter().map(|f| f.findings.len()).sum();
    match min {
        Some(u) if n > 0 => anyhow::bail!("{n} finding(s) at or above {u}"),
        _ => Ok(()),
    }
}

/// Reads the tracker's data for `release` (off the async threads: it is large).
async fn load_tracker(data: &std::path::Path, release: &str) -> anyhow::Result<Tracker> {
    let path = data.to_path_buf();
    let release = release.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let file = std::fs::File::open(&path).map_err(|e| {
            anyhow::anyhow!("cannot read the vulnerability data {}: {e} (set [fleet] vuln_data, or pass --data)", path.display())
        })?;
        let tracker = Tracker::read(file.take(MAX_TRACKER), &release)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(tracker)
    })
    .await?
}

fn report(out: &[ContainerFindings], json: bool, c: &mut Console) -> anyhow::Result<()> {
    if json {
        c.say(serde_json::to_string_pretty(out)?);
        return Ok(());
    }
    for cf in out {
        for f in &cf.findings {
            let fixed = f
                .fixed
                .as_deref()
                .map_or("no fix yet".to_string(), |v| format!("fixed in {v}"));
            c.say(format!(
                "{:<20} {:<18} {:<16} {} {} ({fixed}; {})",
                cf.container,
                f.id,
                f.urgency.to_string(),
                f.source,
                f.installed,
                f.packages.join(", ")
            ));
        }
    }
    let n: usize = out.iter().map(|f| f.findings.len()).sum();
    let hit = out.iter().filter(|f| !f.findings.is_empty()).count();
    c.note(format!(
        "{n} finding(s) in {hit} of {} container(s)",
        out.len()
    ));
    Ok(())
}
