//! `gatehouse patch`: upgrades the selected containers' packages, each as a recorded,
//! audited session of the person who asked, under their change reference. The pending
//! updates are computed on the host (`fleet updates`: one read of each repository for
//! all); the `.deb`s to install are fetched once on the host, checked against the
//! signed indexes, and handed to the container's own apt (`in_container.rs`), so a
//! container needs no route to the mirror. Per container: a snapshot when asked, the
//! upgrade, a check of what its dpkg database says afterwards, a rollback of a failure
//! when asked; the others go on. `patch.started`, one `patch.container` each and
//! `patch.finished` go to the audit log; the last patch of each container is kept for
//! the fleet report (`history.rs`).

pub mod history;
mod in_container;

use futures_util::StreamExt;
use gatehouse_fleet::updates::Target;
use gatehouse_recordings::store::Recordings;
use gatehouse_runtime::{ContainerState, Runtime};
use serde::Serialize;

use super::fleet::updates::{survey, Pending};
use super::fleet::{selected, Selection};
use super::hosted::Viewer;
use super::Console;
use crate::audit::{Audit, AuditEvent};
use crate::config::Config;
use crate::repos::Repositories;

/// `patch` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PatchArgs {
    #[command(flatten)]
    pub select: Selection,
    /// The change reference (ticket) the upgrade is made under.
    #[arg(long)]
    pub reason: String,
    /// Only updates from security suites.
    #[arg(long)]
    pub security_only: bool,
    /// How many containers at once (default: [fleet] max_parallel).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// Snapshot each container first.
    #[arg(long)]
    pub snapshot: bool,
    /// Put a container that fails back as it was (snapshots it first).
    #[arg(long)]
    pub rollback_on_failure: bool,
}

/// What the patch run needs from where it is run.
pub struct Context<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// The runtime.
    pub rt: &'a dyn Runtime,
    /// The audit log.
    pub audit: &'a Audit,
    /// The recordings.
    pub recordings: &'a Recordings,
    /// Who runs it, from where, by which right.
    pub viewer: Viewer,
}

/// One package moved.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    /// The package.
    pub package: String,
    /// From.
    pub from: String,
    /// To (what dpkg says afterwards).
    pub to: String,
}

/// How one container's patch went (the `patch.container` event).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The run.
    pub run: String,
    /// The container.
    pub container: String,
    /// Who.
    pub by: String,
    /// The change reference.
    pub reason: String,
    /// `patched`, `current` (nothing to do), `failed`, `rolled-back`.
    pub result: String,
    /// The recorded session, when one ran.
    pub session: Option<String>,
    /// Packages upgraded.
    pub upgraded: Vec<Moved>,
    /// Packages that were to be upgraded and were not.
    pub missed: Vec<String>,
    /// The snapshot taken.
    pub snapshot: Option<String>,
    /// Processes still using replaced libraries (restart them), and `reboot` when the
    /// container asks for one.
    pub restart: Vec<String>,
    /// What went wrong (the end of apt's output, or the error).
    pub error: Option<String>,
    /// Notes (repositories that could not be read).
    pub notes: Vec<String>,
}

impl Outcome {
    fn new(run: &str, p: &Pending, viewer: &Viewer, reason: &str) -> Outcome {
        Outcome {
            run: run.to_string(),
            container: p.container.clone(),
            by: viewer.user.clone(),
            reason: reason.to_string(),
            result: "current".into(),
            session: None,
            upgraded: vec![],
            missed: vec![],
            snapshot: None,
            restart: vec![],
            error: None,
            notes: p.problems.clone(),
        }
    }

    fn failed(&self) -> bool {
        matches!(self.result.as_str(), "failed" | "rolled-back")
    }
}

/// Runs `patch`.
pub async fn run(cx: &Context<'_>, args: PatchArgs, c: &mut Console) -> anyhow::Result<()> {
    check_reason(&args.reason)?;
    let records = selected(cx.rt, &args.select, c).await?;
    if records.is_empty() {
        anyhow::bail!("no container is selected");
    }
    let run = gatehouse_recordings::store::new_id();
    cx.audit
        .event(AuditEvent::PatchStarted {
            run: &run,
            by: &cx.viewer.user,
            reason: &args.reason,
            containers: records.iter().map(|r| r.name.clone()).collect(),
            security_only: args.security_only,
            snapshot: args.snapshot || args.rollback_on_failure,
            rollback_on_failure: args.rollback_on_failure,
        })
        .await
        .map_err(|e| e.context("the audit log cannot be written, so nothing is patched"))?;
    let pending = survey(cx.config, cx.rt, records).await;
    let repos = Repositories::new(
        &cx.config.fleet,
        &cx.config.fleet_cache(),
        Default::default(),
    );
    let parallel = args
        .max_parallel
        .unwrap_or(cx.config.fleet.max_parallel)
        .clamp(1, 64);
    let outcomes: Vec<Outcome> = futures_util::stream::iter(pending)
        .map(|p| patch_one(cx, &repos, &run, &args, p))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut outcomes = outcomes;
    outcomes.sort_by(|a, b| a.container.cmp(&b.container));
    let count = |r: &str| outcomes.iter().filter(|o| o.result == r).count();
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    cx.audit
        .note(AuditEvent::PatchFinished {
            run: &run,
            by: &cx.viewer.user,
            patched: count("patched"),
            current: count("current"),
            failed,
        })
        .await;
    show(&outcomes, c);
    match failed {
        0 => Ok(()),
        n => anyhow::bail!("{n} container(s) could not be patched"),
    }
}

/// A change reference: one line of at most 200 printable characters.
fn check_reason(reason: &str) -> anyhow::Result<()> {
    let r = reason.trim();
    if r.is_empty() || r.len() > 200 || r.chars().any(char::is_control) {
        anyhow::bail!("--reason takes a change reference: one line of 1 to 200 characters");
    }
    Ok(())
}

/// Patches one container; whatever happens comes back as its outcome (audited, kept).
async fn patch_one(
    cx: &Context<'_>,
    repos: &Repositories,
    run: &str,
    args: &PatchArgs,
    p: Pending,
) -> Outcome {
    let mut out = Outcome::new(run, &p, &cx.viewer, &args.reason);
    let targets: Vec<(String, String, Target)> = p
        .updates
        .iter()
        .filter_map(|u| {
            let t = u.target(args.security_only)?;
            Some((u.name.clone(), u.installed.clone(), t.clone()))
        })
        .collect();
    if !p.readable {
        out.result = "failed".into();
        out.error = Some("its packages cannot be read, so nothing was upgraded".into());
    } else if !targets.is_empty() {
        if let Err(e) = upgrade(cx, repos, args, &targets, &mut out).await {
            out.result = "failed".into();
            out.error.get_or_insert_with(|| format!("{e:#}"));
        }
        if out.result == "failed" && args.rollback_on_failure {
            rollback(cx.rt, &mut out).await;
        }
    }
    if let Err(e) = history::record(&cx.config.server.state_dir, &out) {
        out.notes
            .push(format!("the patch history cannot be written: {e:#}"));
    }
    cx.audit
        .note(AuditEvent::PatchContainer {
            run: &out.run,
            container: &out.container,
            by: &out.by,
            reason: &out.reason,
            result: &out.result,
            session: out.session.as_deref(),
            upgraded: out
                .upgraded
                .iter()
                .map(|m| format!("{} {} -> {}", m.package, m.from, m.to))
                .collect(),
            snapshot: out.snapshot.as_deref(),
            error: out.error.as_deref(),
        })
        .await;
    out
}

/// Snapshot, packages, the recorded upgrade, the check; the container is left running
/// or stopped as it was found.
async fn upgrade(
    cx: &Context<'_>,
    repos: &Repositories,
    args: &PatchArgs,
    targets: &[(String, String, Target)],
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let name = out.container.clone();
    let mut debs = Vec::new();
    for (package, _, t) in targets {
        let data = repos
            .cached(&t.url, &t.sha256, t.size)
            .await
            .map_err(|e| anyhow::anyhow!("{package}: {e}"))?;
        debs.push((deb_name(package, &t.version), data));
    }
    let stopped = matches!(cx.rt.state(&name).await?, ContainerState::Stopped);
    if args.snapshot || args.rollback_on_failure {
        let snap = format!("patch-{}", out.run.to_ascii_lowercase());
        cx.rt.snapshot(&name, &snap).await?;
        out.snapshot = Some(snap);
    }
    if stopped {
        cx.rt.start(&name).await?;
    }
    let result = in_container::upgrade(cx, &name, &args.reason, debs, out).await;
    if result.is_ok() {
        check(cx.rt, &name, targets, out).await?;
    }
    if stopped {
        let _ = cx.rt.stop(&name).await;
    }
    result
}

/// What dpkg says afterwards: each target reached, or missed.
async fn check(
    rt: &dyn Runtime,
    name: &str,
    targets: &[(String, String, Target)],
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let mut parsed = super::fleet::inventory::Parsed::default();
    let now = parsed.of(rt, name).await?;
    for (package, from, t) in targets {
        match now.iter().find(|p| &p.name == package) {
            Some(p) if p.version == t.version => out.upgraded.push(Moved {
                package: package.clone(),
                from: from.clone(),
                to: p.version.clone(),
            }),
            _ => out.missed.push(package.clone()),
        }
    }
    out.result = if out.missed.is_empty() {
        "patched".into()
    } else {
        out.error
            .get_or_insert_with(|| format!("not upgraded: {}", out.missed.join(", ")));
        "failed".into()
    };
    Ok(())
}

/// Puts a failed container back as its snapshot holds it.
async fn rollback(rt: &dyn Runtime, out: &mut Outcome) {
    let Some(snap) = out.snapshot.clone() else {
        out.notes.push("no snapshot to roll back to".into());
        return;
    };
    match rt.rollback(&out.container, &snap).await {
        Ok(()) => {
            out.result = "rolled-back".into();
            out.upgraded.clear();
        }
        Err(e) => out
            .notes
            .push(format!("the rollback to {snap} failed: {e}")),
    }
}

/// The file name a `.deb` is handed over as (its name and version, made safe).
fn deb_name(package: &str, version: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "+.-~".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}_{}.deb", safe(package), safe(version))
}

/// Prints the outcomes.
fn show(outcomes: &[Outcome], c: &mut Console) {
    for o in outcomes {
        let session = o.session.as_deref().unwrap_or("-");
        c.say(format!(
            "{:<20} {:<12} session {session}",
            o.container, o.result
        ));
        for m in &o.upgraded {
            c.say(format!("    {} {} -> {}", m.package, m.from, m.to));
        }
        if let Some(s) = &o.snapshot {
            c.say(format!("    snapshot {s}"));
        }
        if !o.restart.is_empty() {
            c.say(format!("    needs restart: {}", o.restart.join(", ")));
        }
        if let Some(e) = &o.error {
            for line in e.lines() {
                c.say(format!("    ! {line}"));
            }
        }
        for n in &o.notes {
            c.note(format!("{}: {n}", o.container));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_printable_line() {
        assert!(check_reason("CHG-1234").is_ok());
        assert!(check_reason("").is_err());
        assert!(check_reason("a\nb").is_err());
        assert!(check_reason(&"x".repeat(201)).is_err());
    }

    #[test]
    fn handed_over_files_have_plain_names() {
        assert_eq!(
            deb_name("libc6", "2.36-9+deb12u9"),
            "libc6_2.36-9+deb12u9.deb"
        );
        assert_eq!(deb_name("a/../b", "1:2.0"), "a_.._b_1_2.0.deb");
    }
}
