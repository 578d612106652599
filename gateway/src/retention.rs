//! Recording retention: `[recording] keep` deletes older recordings, hourly and at
//! start, and records each deletion in the audit log so the chain stays verifiable.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::audit::AuditEvent;

/// Prunes now and then every hour, for as long as the gateway runs.
pub async fn run(app: Arc<App>, keep: Duration) {
    loop {
        prune(&app, keep).await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Deletes the recordings of sessions that ended (or started, if they never ended)
/// longer than `keep` ago.
pub async fn prune(app: &App, keep: Duration) {
    let Ok(keep) = chrono::Duration::from_std(keep) else {
        return;
    };
    let list = match app.recordings.list() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("retention: {e}");
            return;
        }
    };
    let now = chrono::Utc::now();
    for s in list {
        let last = s.end.unwrap_or(s.start);
        if now - last <= keep {
            continue;
        }
        // Record first: a deletion the log does not know of would look like tampering.
        let event = AuditEvent::RecordingDeleted {
            session: &s.id,
            user: &s.user,
            container: &s.container,
            start: s.start,
            reason: "retention",
        };
        if let Err(e) = app.audit.event(event).await {
            tracing::error!(
                "retention: cannot audit the deletion of {}: {e:#}; keeping it",
                s.id
            );
            continue;
        }
        match app.recordings.remove(&s.id) {
            Ok(()) => tracing::info!(session = %s.id, "retention: recording deleted"),
            Err(e) => tracing::error!(session = %s.id, "retention: {e}"),
        }
    }
}
