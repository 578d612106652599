//! The last patch of each container, for the fleet report: one JSON line per container
//! and run in `state_dir/fleet/patches.jsonl` (the audit log has the same facts, sealed;
//! this is the quick index of them).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Outcome;

/// The largest history read back.
const MAX_LINES: usize = 1_000_000;

/// One container's patch, as kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Patched {
    /// The container.
    pub container: String,
    /// When.
    pub when: chrono::DateTime<chrono::Utc>,
    /// By whom.
    pub by: String,
    /// The change reference.
    pub reason: String,
    /// `patched`, `current`, `failed`, `rolled-back`.
    pub result: String,
    /// The recorded session.
    pub session: Option<String>,
}

fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("fleet/patches.jsonl")
}

/// Appends one container's outcome.
pub fn record(state_dir: &Path, o: &Outcome) -> anyhow::Result<()> {
    let path = file(state_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let line = serde_json::to_string(&Patched {
        container: o.container.clone(),
        when: chrono::Utc::now(),
        by: o.by.clone(),
        reason: o.reason.clone(),
        result: o.result.clone(),
        session: o.session.clone(),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    Ok(())
}

/// The last successful patch (`patched`) of each container; lines that do not read are
/// skipped.
pub fn last_patched(state_dir: &Path) -> HashMap<String, Patched> {
    let mut out = HashMap::new();
    let Ok(f) = std::fs::File::open(file(state_dir)) else {
        return out;
    };
    for line in std::io::BufReader::new(f).lines().take(MAX_LINES) {
        let Ok(line) = line else { break };
        if let Ok(p) = serde_json::from_str::<Patched>(&line) {
            if p.result == "patched" {
                out.insert(p.container.clone(), p);
            }
        }
    }
    out
}
