//! `fleet vulns`: the known vulnerabilities of each container's packages, from the
//! Debian Security Tracker's data for the release the container runs.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_fleet::tracker::{Tracker, Urgency};
use gatehouse_fleet::vulns::{findings, Finding};
use gatehouse_runtime::Runtime;
use serde::Serialize;

use super::inventory::{release, Parsed};
use super::{selected, Selection};
use crate::commands::Console;

/// The largest tracker file read.
const MAX_TRACKER: u64 = 1 << 30;

#[derive(Serialize)]
pub struct ContainerFindings {
    pub container: String,
    pub release: Option<String>,
    pub findings: Vec<Finding>,
}

pub async fn vulns(
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
pub async fn load_tracker(data: &std::path::Path, release: &str) -> anyhow::Result<Tracker> {
    let path = data.to_path_buf();
    let release = release.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let file = std::fs::File::open(&path).map_err(|e| {
            anyhow::anyhow!("cannot read the vulnerability data {}: {e} (set [fleet] vulnerability_data, run `gatehouse fleet vuln-data update`, or pass --data)", path.display())
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
