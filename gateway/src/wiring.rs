//! Start-up wiring: the runtime, directory and policy the configuration names, the
//! gateway's parts assembled and its background tasks started, and shutdown.

use std::sync::Arc;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::config::Config;
use crate::directory::UsersFile;

/// Creates the state directory, or takes group and other permissions off it: nothing in
/// it (recordings, the audit log, container layers with their setuid programs, image
/// layers) is for local users.
fn private_state_dir(state: &std::path::Path) -> anyhow::Result<()> {
    gatehouse_recordings::private::dir(state)
        .map_err(|e| anyhow::anyhow!("cannot create state directory {}: {e}", state.display()))
}

/// Opens the configured runtime.
pub fn open_runtime(config: &Config) -> anyhow::Result<Arc<dyn gatehouse_runtime::Runtime>> {
    if config.runtime.kind == crate::config::RuntimeKind::Lxd {
        return Ok(gatehouse_runtime::lxd::LxdRuntime::new(
            config.runtime.lxd_settings()?,
        )?);
    }
    let state = &config.server.state_dir;
    private_state_dir(state)?;
    let exe =
        std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find own binary: {e}"))?;
    let options = gatehouse_runtime::native::NativeOptions {
        idle_stop: gatehouse_runtime::limits::parse_duration(&config.runtime.idle_stop)?,
        network: config.network()?,
    };
    Ok(Arc::new(gatehouse_runtime::native::NativeRuntime::open(
        state, exe, options,
    )?))
}

/// Starts the native runtime's DNS server for containers, when its network has DNS.
fn start_dns(config: &Config) -> anyhow::Result<Option<gatehouse_runtime::native::dns::DnsServer>> {
    match config.network()? {
        Some(net) if config.runtime.kind == crate::config::RuntimeKind::Native => Ok(
            gatehouse_runtime::native::start_dns(&config.server.state_dir, &net)?,
        ),
        _ => Ok(None),
    }
}

/// Opens the configured directory (LDAP or the users file).
pub fn open_directory(config: &Config) -> anyhow::Result<Arc<dyn crate::directory::Directory>> {
    use crate::config::DirectoryKind;
    Ok(match (config.directory.kind, &config.directory.ldap) {
        (DirectoryKind::Ldap, Some(ldap)) => Arc::new(crate::directory::LdapDirectory::new(ldap)?),
        _ => Arc::new(UsersFile::open(&config.directory.file)?),
    })
}

/// glibc malloc arenas for the serving process.
const MALLOC_ARENAS: libc::c_int = 2;

/// Threads writing recordings for all sessions (disk writes of many sessions interleave).
const RECORDER_THREADS: usize = 2;

/// Builds the gateway from a configuration and serves until the process ends.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // glibc gives each thread that allocates its own arena (up to 8 per core), each
    // keeping what it once held; a few arenas keep an idle gateway small.
    // SAFETY: mallopt only changes allocator tuning; called before the threads that
    // serve connections exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
    let runtime = open_runtime(&config)?;
    // The containers' DNS server lives as long as the gateway serves.
    let _dns = start_dns(&config)?;
    for note in runtime.reconcile().await? {
        tracing::warn!("reconciled: {note}");
    }
    let directory = open_directory(&config)?;
    let limits = config.server.limits()?;
    if !config.recording.enabled {
        tracing::warn!("[recording] enabled = false: sessions are NOT recorded");
    }
    let state = config.server.state_dir.clone();
    private_state_dir(&state)?;
    let policy = Arc::new(crate::policy::PolicyStore::open(&config.policy.paths)?);
    let app = Arc::new(App {
        config,
        directory,
        runtime,
        policy,
        live: Default::default(),
        guard: crate::guard::Guard::new(limits),
        audit: crate::audit::Audit::open(&state)?,
        recordings: gatehouse_recordings::store::Recordings::open(state.join("recordings"))?,
        recorders: crate::record::Recorders::start(RECORDER_THREADS)?,
    });
    // A reload in force is published to the session checks, which revalidate at once.
    let (reloaded, reloads) = tokio::sync::watch::channel(0u64);
    if !app.config.policy.paths.is_empty() {
        let (store, audit) = (app.policy.clone(), app.audit.clone());
        tokio::spawn(crate::policy::watch(store, audit, reloaded));
    }
    let checks = crate::live::Checks {
        live: app.live.clone(),
        policy: app.policy.clone(),
        directory: app.directory.clone(),
        audit: app.audit.clone(),
    };
    tokio::spawn(crate::live::watch(checks, reloads));
    if let Some(keep) = app.config.recording.keep.as_deref() {
        if let Some(keep) = gatehouse_runtime::limits::parse_duration(keep)? {
            tokio::spawn(crate::retention::run(app.clone(), keep));
        }
    }
    crate::admin::socket::serve(app.clone()).await?;
    tokio::select! {
        r = crate::ssh::serve(app.clone()) => r,
        signal = stop_signal() => {
            shut_down(&app, signal?).await;
            Ok(())
        }
    }
}

/// How long running sessions have to end and seal their recordings when the gateway
/// stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Resolves with the signal's name on SIGTERM (systemctl stop) or SIGINT.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Stops taking connections (the listener is gone by now), tells the running sessions
/// to end, and waits until their recordings are sealed and their ends audited.
async fn shut_down(app: &Arc<App>, signal: &str) {
    let told = app
        .live
        .end_all("the gateway is shutting down; session ended");
    tracing::info!(signal, sessions = told, "shutting down");
    app.audit
        .note(AuditEvent::GatewayStop {
            signal,
            sessions: told,
        })
        .await;
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while app.live.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    match app.live.count() {
        0 => tracing::info!("every session ended and sealed; stopping"),
        n => tracing::warn!(
            "{n} session(s) still ending after {SHUTDOWN_GRACE:?}; their recordings may be unsealed"
        ),
    }
}
