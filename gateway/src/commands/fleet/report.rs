//! `fleet report`: the page an auditor asks for. Per container: owner, purpose, image,
//! last patch (when, by whom, under which reason), pending security updates, open
//! vulnerabilities by urgency, last login; as a Markdown table or JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gatehouse_fleet::tracker::{Tracker, Urgency};
use gatehouse_fleet::vulns::findings;
use gatehouse_runtime::Runtime;
use serde::Serialize;

use super::inventory::release;
use super::updates::survey;
use super::vulns::load_tracker;
use super::{selected, Selection};
use crate::commands::patch::history::{last_patched, Patched};
use crate::commands::Console;
use crate::config::Config;

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Markdown table.
    Md,
    /// JSON.
    Json,
}

/// One container's line.
#[derive(Debug, Serialize)]
struct Line {
    container: String,
    owner: String,
    purpose: String,
    image: String,
    last_patched: Option<Patched>,
    pending_updates: usize,
    pending_security_updates: usize,
    /// Open vulnerabilities by urgency; `None` when there is no data for its release.
    vulnerabilities: Option<BTreeMap<Urgency, usize>>,
    last_login: Option<chrono::DateTime<chrono::Utc>>,
    problems: Vec<String>,
}

/// `fleet report`.
pub async fn report(
    config: &Config,
    rt: &dyn Runtime,
    s: &Selection,
    format: Format,
    c: &mut Console,
) -> anyhow::Result<()> {
    let records = selected(rt, s, c).await?;
    let patched = last_patched(&config.server.state_dir);
    let pending = survey(config, rt, records.clone()).await;
    let mut trackers: HashMap<String, Option<Arc<Tracker>>> = HashMap::new();
    let mut lines = Vec::new();
    for (r, p) in records.into_iter().zip(pending) {
        let mut problems = p.problems.clone();
        let vulnerabilities = match release(rt, &r.name).await {
            Ok(Some(rel)) => {
                if !trackers.contains_key(&rel) {
                    let t = load_tracker(&config.vuln_data(), &rel).await;
                    if let Err(e) = &t {
                        problems.push(format!("{e:#}"));
                    }
                    trackers.insert(rel.clone(), t.ok().map(Arc::new));
                }
                trackers[&rel].as_ref().map(|t| by_urgency(&p.packages, t))
            }
            Ok(None) => None,
            Err(e) => {
                problems.push(format!("{e:#}"));
                None
            }
        };
        lines.push(Line {
            last_patched: patched.get(&r.name).cloned(),
            pending_updates: p.updates.len(),
            pending_security_updates: p.updates.iter().filter(|u| u.security.is_some()).count(),
            vulnerabilities,
            last_login: r.last_login,
            container: r.name,
            owner: r.owner,
            purpose: r.purpose,
            image: format!("{}@{}", r.image, r.generation.unwrap_or(1)),
            problems,
        });
    }
    match format {
        Format::Json => c.say(serde_json::to_string_pretty(&lines)?),
        Format::Md => markdown(&lines, c),
    }
    Ok(())
}

/// Open findings counted by urgency.
fn by_urgency(
    packages: &[gatehouse_fleet::packages::Package],
    t: &Tracker,
) -> BTreeMap<Urgency, usize> {
    let mut out = BTreeMap::new();
    for f in findings(packages, t, Urgency::Unimportant) {
        *out.entry(f.urgency).or_insert(0) += 1;
    }
    out
}

/// The Markdown table (cells made safe: no `|` or line breaks from the records).
fn markdown(lines: &[Line], c: &mut Console) {
    c.say(format!(
        "# Fleet report ({})\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    ));
    c.say("| container | owner | purpose | image@generation | last patched | pending (security) | open CVEs (high/medium/low/other) | last login |".into());
    c.say("|---|---|---|---|---|---|---|---|".into());
    for l in lines {
        let patched = l.last_patched.as_ref().map_or("never".to_string(), |p| {
            format!(
                "{} by {} ({})",
                p.when.format("%Y-%m-%d %H:%M"),
                p.by,
                p.reason
            )
        });
        let cves = l
            .vulnerabilities
            .as_ref()
            .map_or("no data".to_string(), |v| {
                let n = |u: Urgency| v.get(&u).copied().unwrap_or(0);
                let other = n(Urgency::Unimportant) + n(Urgency::NotYetAssigned);
                format!(
                    "{}/{}/{}/{other}",
                    n(Urgency::High),
                    n(Urgency::Medium),
                    n(Urgency::Low)
                )
            });
        let login = l.last_login.map_or("never".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M").to_string()
        });
        let cells = [
            l.container.clone(),
            l.owner.clone(),
            l.purpose.clone(),
            l.image.clone(),
            patched,
            format!("{} ({})", l.pending_updates, l.pending_security_updates),
            cves,
            login,
        ];
        let cells: Vec<String> = cells.iter().map(|s| cell(s)).collect();
        c.say(format!("| {} |", cells.join(" | ")));
    }
    for l in lines {
        for p in &l.problems {
            c.note(format!("{}: {p}", l.container));
        }
    }
}

/// A table cell: `|` escaped, control characters dropped.
fn cell(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|bc");
    }
}
