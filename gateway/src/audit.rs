//! Audit events from the gateway and the admin commands, appended to the hash-chained
//! log off the async threads.

use gatehouse_recordings::audit::AuditLog;
use serde_json::Value;

/// The audit log of this gateway.
#[derive(Clone)]
pub struct Audit {
    log: AuditLog,
}

impl Audit {
    /// The log under `state_dir/audit`, signed with its key (checkpoints, and the head
    /// after every event).
    pub fn open(state_dir: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Audit {
            log: AuditLog::open(state_dir.join("audit"))?.signing()?,
        })
    }

    /// Appends an event; an error says the event could not be written.
    pub async fn event(&self, kind: &str, data: Value) -> anyhow::Result<u64> {
        let log = self.log.clone();
        let kind = kind.to_string();
        Ok(tokio::task::spawn_blocking(move || log.append(&kind, data)).await??)
    }

    /// Appends an event, logging instead of failing (for events that must not stop the
    /// work they describe, such as a failed login).
    pub async fn note(&self, kind: &str, data: Value) {
        if let Err(e) = self.event(kind, data).await {
            tracing::error!("cannot write audit event {kind}: {e:#}");
        }
    }
}
