//! The policy in force, and reloading it: from `[policy] paths` when they are set (the
//! gateway refuses to start on an invalid set), otherwise the built-in owner policy. On a
//! file change (checked every few seconds) or SIGHUP the set is read again; a valid set
//! replaces the old one and running sessions are checked against it, an invalid one is
//! logged and audited and the last good set stays in force.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use gatehouse_policies::{OwnerPolicy, Policy, PolicyErrors, PolicySet};

use crate::audit::{Audit, AuditEvent};

/// How often policy files are checked for changes.
const POLL: Duration = Duration::from_secs(2);

/// The policy in force.
pub struct PolicyStore {
    paths: Vec<PathBuf>,
    current: RwLock<Arc<dyn Policy>>,
}

/// Reads the policy configured by `paths`.
pub fn read(paths: &[PathBuf]) -> Result<(Arc<dyn Policy>, usize), PolicyErrors> {
    if paths.is_empty() {
        return Ok((Arc::new(OwnerPolicy), 0));
    }
    let set = PolicySet::load(paths)?;
    let n = set.rules().len();
    Ok((Arc::new(set), n))
}

impl PolicyStore {
    /// Loads the set; an invalid set is an error (the gateway does not start).
    pub fn open(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let (policy, n) =
            read(paths).map_err(|e| anyhow::anyhow!("the policy files are invalid:\n{e}"))?;
        if paths.is_empty() {
            tracing::info!("no [policy] paths: people may use the containers they own");
        } else {
            tracing::info!(rules = n, "policy loaded");
        }
        Ok(PolicyStore {
            paths: paths.to_vec(),
            current: RwLock::new(policy),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<dyn Policy> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again; on success the new set is in force.
    pub fn reload(&self) -> Result<usize, PolicyErrors> {
        let (policy, n) = read(&self.paths)?;
        match self.current.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
        Ok(n)
    }

    /// What the files look like now (names, sizes, modification times), to notice edits.
    fn fingerprint(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut out = Vec::new();
        for p in &self.paths {
            let mut files = vec![p.clone()];
            if let Ok(dir) = std::fs::read_dir(p) {
                files.extend(dir.flatten().map(|e| e.path()));
            }
            for f in files {
                let meta = std::fs::metadata(&f).ok();
                out.push((
                    f,
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok()),
                ));
            }
        }
        out.sort();
        out
    }
}

/// Reloads on file changes and SIGHUP for as long as the gateway runs; each reload in
/// force is published on `reloaded` (its count), for the running sessions to be checked.
pub async fn watch(
    store: Arc<PolicyStore>,
    audit: Audit,
    reloaded: tokio::sync::watch::Sender<u64>,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("no SIGHUP reload: {e}");
            None
        }
    };
    let mut seen = store.fingerprint();
    let mut tick = tokio::time::interval(POLL);
    loop {
        let why = tokio::select! {
            _ = tick.tick() => {
                let now = store.fingerprint();
                if now == seen {
                    continue;
                }
                seen = now;
                "files changed"
            }
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                seen = store.fingerprint();
                "SIGHUP"
            }
        };
        if apply_reload(&store, &audit, why).await {
            reloaded.send_modify(|n| *n += 1);
        }
    }
}

/// Reloads the policy files and audits the outcome; whether a new set is in force.
async fn apply_reload(store: &PolicyStore, audit: &Audit, why: &str) -> bool {
    let paths: Vec<String> = store
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    match store.reload() {
        Ok(n) => {
            tracing::info!(rules = n, why, "policy reloaded");
            audit
                .note(AuditEvent::PolicyReloaded {
                    why,
                    paths: &paths,
                    rules: n,
                })
                .await;
            true
        }
        Err(e) => {
            let errors: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            tracing::error!(
                why,
                "policy NOT reloaded, the previous set stays in force:\n{e}"
            );
            audit
                .note(AuditEvent::PolicyReloadFailed {
                    why,
                    paths: &paths,
                    errors,
                    kept: "previous set",
                })
                .await;
            false
        }
    }
}
