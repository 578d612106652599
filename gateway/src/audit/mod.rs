//! Audit events from the gateway and the admin commands, appended to the hash-chained
//! log off the async threads. [`event`] is the schema: every kind and its fields.

pub mod event;

pub use event::{
    AuditEvent, ContainerChange, ContainerDetail, ContainerEvent, FileKind, FileRecord,
    SessionRefused,
};

use gatehouse_recordings::audit::AuditLog;

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
    pub async fn event(&self, event: AuditEvent<'_>) -> anyhow::Result<u64> {
        let log = self.log.clone();
        let kind = event.kind();
        let data = event.data()?;
        Ok(tokio::task::spawn_blocking(move || log.append(kind, data)).await??)
    }

    /// Appends an event, logging instead of failing (for events that must not stop the
    /// work they describe, such as a failed login).
    pub async fn note(&self, event: AuditEvent<'_>) {
        let kind = event.kind();
        if let Err(e) = self.event(event).await {
            tracing::error!("cannot write audit event {kind}: {e:#}");
        }
    }
}

/// Appends one event to the log under `state_dir/audit` from a process that is not the
/// gateway (the local admin CLI); fails when it cannot be written.
pub fn append_local(state_dir: &std::path::Path, event: AuditEvent<'_>) -> anyhow::Result<()> {
    let log = AuditLog::open(state_dir.join("audit"))?.signing()?;
    log.append(event.kind(), event.data()?)?;
    Ok(())
}
