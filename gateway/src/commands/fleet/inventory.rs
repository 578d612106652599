//! What each container has installed, read from outside it: its dpkg status database
//! (parsed once per distinct text: containers whose layer left the image's untouched
//! share one parse) and its release (`/etc/os-release`).

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_fleet::packages::{parse_status, Package};
use gatehouse_runtime::Runtime;
use serde::Serialize;

use super::{selected, Selection};
use crate::commands::Console;

/// The largest dpkg status database read (Debian's with every package is ≈ 60 MB).
const MAX_STATUS: u64 = 128 << 20;
/// The largest `/etc/os-release` read.
const MAX_OS_RELEASE: u64 = 64 << 10;

/// Parsed status databases by their text: containers sharing the image's parse once.
#[derive(Default)]
pub struct Parsed {
    by_text: HashMap<Vec<u8>, Arc<Vec<Package>>>,
}

impl Parsed {
    /// The packages of container `name` (an empty list when it has no dpkg database).
    pub async fn of(&mut self, rt: &dyn Runtime, name: &str) -> anyhow::Result<Arc<Vec<Package>>> {
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

pub async fn packages(
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
pub async fn release(rt: &dyn Runtime, name: &str) -> anyhow::Result<Option<String>> {
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
