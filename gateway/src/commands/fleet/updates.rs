//! `fleet updates`: each container's pending updates, computed on the host against the
//! apt sources the container is configured with. Every container's sources and
//! packages are read from outside it first; then each distinct suite is read once for
//! all of them (`crate::repos`), keeping only packages some container has.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use gatehouse_fleet::packages::Package;
use gatehouse_fleet::sources::{parse_file, Source};
use gatehouse_fleet::updates::{updates as pending_of, Offer, Update};
use gatehouse_runtime::{ContainerRecord, Runtime};
use serde::Serialize;

use super::inventory::Parsed;
use super::{selected, Selection};
use crate::commands::Console;
use crate::config::Config;
use crate::repos::{Repositories, SuiteIndex};

/// The largest sources file read.
const MAX_SOURCES: u64 = 1 << 20;
/// The most files of `sources.list.d` read.
const MAX_SOURCE_FILES: usize = 256;
/// Where apt's sources are.
const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// One container's pending updates.
#[derive(Debug, Serialize)]
pub struct Pending {
    /// The container.
    pub container: String,
    /// Its installed packages (for the caller's before/after).
    #[serde(skip)]
    pub packages: Arc<Vec<Package>>,
    /// Whether its packages could be read (if not, it has no updates to show).
    #[serde(skip)]
    pub readable: bool,
    /// The updates.
    pub updates: Vec<Update>,
    /// What could not be read (a source not allowed, an unreachable repository): the
    /// updates it would have shown are missing.
    pub problems: Vec<String>,
}

/// What one container has and where it gets packages from.
struct Surveyed {
    record: ContainerRecord,
    readable: bool,
    packages: Arc<Vec<Package>>,
    sources: Vec<Source>,
    problems: Vec<String>,
}

/// The pending updates of `records`, each suite read once for all.
pub async fn survey(
    config: &Config,
    rt: &dyn Runtime,
    records: Vec<ContainerRecord>,
) -> Vec<Pending> {
    let mut parsed = Parsed::default();
    let mut surveyed = Vec::new();
    for record in records {
        let mut problems = Vec::new();
        let (readable, packages) = match parsed.of(rt, &record.name).await {
            Ok(p) => (true, p),
            Err(e) => {
                problems.push(format!("its packages cannot be read: {e:#}"));
                (false, Arc::new(Vec::new()))
            }
        };
        let sources = sources_of(rt, &record.name).await.unwrap_or_else(|e| {
            problems.push(format!("its apt sources cannot be read: {e:#}"));
            Vec::new()
        });
        surveyed.push(Surveyed {
            record,
            readable,
            packages,
            sources,
            problems,
        });
    }
    let wanted: HashSet<String> = surveyed
        .iter()
        .flat_map(|s| s.packages.iter().map(|p| p.name.clone()))
        .collect();
    let mut repos = Repositories::new(&config.fleet, &config.fleet_cache(), wanted);
    let mut out = Vec::new();
    for mut s in surveyed {
        let mut suites: Vec<Arc<SuiteIndex>> = Vec::new();
        for source in &s.sources {
            match repos.suite(source).await {
                Ok(index) => suites.push(index),
                Err(e) => s.problems.push(e.to_string()),
            }
        }
        let offers: Vec<Offer> = suites
            .iter()
            .map(|i| Offer {
                uri: &i.uri,
                security: i.security,
                packages: &i.packages,
            })
            .collect();
        let updates = pending_of(&s.packages, &offers);
        out.push(Pending {
            container: s.record.name,
            readable: s.readable,
            packages: s.packages,
            updates,
            problems: s.problems,
        });
    }
    out
}

/// A container's apt sources: `sources.list` and the `.list`/`.sources` files of
/// `sources.list.d`, read from outside it, each distinct source once.
pub async fn sources_of(rt: &dyn Runtime, name: &str) -> anyhow::Result<Vec<Source>> {
    let mut files = vec![SOURCES_LIST.to_string()];
    if let Some(names) = rt.list_dir(name, SOURCES_DIR, MAX_SOURCE_FILES).await? {
        files.extend(
            names
                .iter()
                .filter(|n| is_sources_file(n))
                .map(|n| format!("{SOURCES_DIR}/{n}")),
        );
    }
    let mut out = BTreeSet::new();
    for file in files {
        if let Some(text) = rt.read_file(name, &file, MAX_SOURCES).await? {
            out.extend(parse_file(&file, &String::from_utf8_lossy(&text))?);
        }
    }
    Ok(out.into_iter().collect())
}

/// Whether apt reads a file of `sources.list.d` (its names: letters, digits, `_-.`,
/// ending `.list` or `.sources`).
fn is_sources_file(n: &str) -> bool {
    (n.ends_with(".list") || n.ends_with(".sources"))
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !n.starts_with('.')
}

/// `fleet updates`.
pub async fn updates(
    config: &Config,
    rt: &dyn Runtime,
    s: &Selection,
    security_only: bool,
    json: bool,
    c: &mut Console,
) -> anyhow::Result<()> {
    let mut pending = survey(config, rt, selected(rt, s, c).await?).await;
    if security_only {
        for p in &mut pending {
            p.updates.retain(|u| u.security.is_some());
        }
    }
    if json {
        c.say(serde_json::to_string_pretty(&pending)?);
    } else {
        for p in &pending {
            for u in &p.updates {
                let version = u.target(security_only).map_or("", |t| t.version.as_str());
                let kind = if u.security.is_some() { "security" } else { "" };
                c.say(format!(
                    "{:<20} {:<32} {:<28} -> {:<28} {kind}",
                    p.container, u.name, u.installed, version
                ));
            }
        }
    }
    for p in &pending {
        for problem in &p.problems {
            c.note(format!("{}: {problem}", p.container));
        }
    }
    let n: usize = pending.iter().map(|p| p.updates.len()).sum();
    let security: usize = pending
        .iter()
        .map(|p| p.updates.iter().filter(|u| u.security.is_some()).count())
        .sum();
    let hit = pending.iter().filter(|p| !p.updates.is_empty()).count();
    c.note(format!(
        "{n} pending update(s), {security} of them security, in {hit} of {} container(s)",
        pending.len()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_apts_own_file_names_are_read() {
        assert!(is_sources_file("debian.sources"));
        assert!(is_sources_file("local-repo.list"));
        assert!(!is_sources_file("old.list.disabled"));
        assert!(!is_sources_file(".hidden.list"));
        assert!(!is_sources_file("a b.list"));
    }
}
