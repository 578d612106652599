//! The gateway's shared context: configuration, directory, runtime and policy.

use std::sync::Arc;

use gatehouse_runtime::Runtime;

use crate::audit::Audit;
use crate::config::Config;
use crate::directory::Directory;
use crate::guard::Guard;
use gatehouse_recordings::store::Recordings;

/// Everything a connection needs, shared by all of them.
pub struct App {
    /// The configuration in force.
    pub config: Config,
    /// Who people are.
    pub directory: Arc<dyn Directory>,
    /// Where containers run.
    pub runtime: Arc<dyn Runtime>,
    /// Who may do what (reloadable).
    pub policy: Arc<crate::policy::PolicyStore>,
    /// The sessions running now.
    pub live: Arc<crate::live::LiveSessions>,
    /// Failed-login counters and connection limits.
    pub guard: Guard,
    /// The audit log.
    pub audit: Audit,
    /// Session recordings.
    pub recordings: Recordings,
    /// The threads that write recordings.
    pub recorders: crate::record::Recorders,
}
