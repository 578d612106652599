//! `gatehouse fleet …`: what the fleet's containers run, read from outside them: the
//! installed packages come from each container's dpkg status database through the
//! runtime ([`Runtime::read_file`]: nothing is started inside); pending updates from
//! the indexes of the repositories each container's own apt sources name, fetched once
//! on the host for the whole fleet (`crate::repos`); known vulnerabilities from the
//! Debian Security Tracker's data for the release each container runs; the report puts
//! these beside each container's owner, purpose, image and last patch.

pub mod inventory;
pub mod report;
pub mod updates;
pub mod vuln_data;
pub mod vulns;

use std::path::PathBuf;

use clap::Subcommand;
use gatehouse_fleet::tracker::Urgency;
use gatehouse_runtime::{ContainerRecord, Runtime};

use super::container::parse_label;
use super::Console;
use crate::config::Config;

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
    /// Pending updates of each container, from the repositories its apt sources name
    /// (fetched once on the host for all).
    Updates {
        #[command(flatten)]
        select: Selection,
        /// Only security updates.
        #[arg(long)]
        security_only: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Known vulnerabilities (Debian Security Tracker) of each container's packages; with
    /// --min-urgency, only those at or above it, and exit status 1 if there are any.
    Vulns {
        #[command(flatten)]
        select: Selection,
        /// The tracker's JSON (default: [fleet] vulnerability_data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// unimportant|not-yet-assigned|low|medium|high.
        #[arg(long)]
        min_urgency: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// The vulnerability data.
    #[command(name = "vuln-data", subcommand)]
    VulnData(vuln_data::VulnDataCommand),
    /// Per container: owner, purpose, image, last patch, pending security updates, open
    /// vulnerabilities by urgency, last login.
    Report {
        #[command(flatten)]
        select: Selection,
        /// md (default) or json.
        #[arg(long, default_value = "md")]
        format: report::Format,
    },
}

impl FleetCommand {
    /// The policy name of the command (`fleet.packages`, …).
    pub fn key(&self) -> &'static str {
        match self {
            FleetCommand::Packages { .. } => "fleet.packages",
            FleetCommand::Updates { .. } => "fleet.updates",
            FleetCommand::Vulns { .. } => "fleet.vulns",
            FleetCommand::VulnData(_) => "fleet.vuln-data",
            FleetCommand::Report { .. } => "fleet.report",
        }
    }
}

/// Runs a fleet command.
pub async fn run(
    config: &Config,
    rt: &dyn Runtime,
    cmd: FleetCommand,
    c: &mut Console,
) -> anyhow::Result<()> {
    match cmd {
        FleetCommand::Packages { select, json } => inventory::packages(rt, &select, json, c).await,
        FleetCommand::Updates {
            select,
            security_only,
            json,
        } => updates::updates(config, rt, &select, security_only, json, c).await,
        FleetCommand::Vulns {
            select,
            data,
            min_urgency,
            json,
        } => {
            let min = match min_urgency.as_deref() {
                None => None,
                Some(w) => Some(urgency(w)?),
            };
            let data = data.unwrap_or_else(|| config.vuln_data());
            vulns::vulns(rt, &select, &data, min, json, c).await
        }
        FleetCommand::VulnData(cmd) => vuln_data::run(config, cmd, c).await,
        FleetCommand::Report { select, format } => {
            report::report(config, rt, &select, format, c).await
        }
    }
}

/// A threshold as a person writes it.
fn urgency(w: &str) -> anyhow::Result<Urgency> {
    Urgency::threshold(w).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown urgency '{w}': say unimportant, not-yet-assigned, low, medium or high"
        )
    })
}

/// The containers selected: by name (each must exist and be one the caller may act on),
/// else all the caller may act on; then those with every label asked for.
pub async fn selected(
    rt: &dyn Runtime,
    s: &Selection,
    c: &Console,
) -> anyhow::Result<Vec<ContainerRecord>> {
    let allowed = |r: &ContainerRecord| c.visible.as_ref().is_none_or(|v| v(r));
    let mut out = Vec::new();
    for name in &s.names {
        let r = rt.get(name).await?;
        if !allowed(&r) {
            anyhow::bail!("container '{name}' is not one your rights cover");
        }
        out.push(r);
    }
    if s.names.is_empty() {
        out = rt.list().await?;
        out.retain(allowed);
    }
    out.retain(|r| s.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v)));
    Ok(out)
}
