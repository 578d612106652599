//! The sessions running now, with the access question each was allowed on, so that a
//! policy change, a time window closing, or a change in the directory (a person removed
//! from a group, locked or deleted) ends the sessions it no longer allows.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_policies::{Decision, Request};
use tokio::sync::mpsc;

use crate::audit::{Audit, AuditEvent};
use crate::directory::Directory;
use crate::policy::PolicyStore;

/// How often running sessions are checked against the policy (time windows close).
const CHECK: Duration = Duration::from_secs(2);
/// How often the people of running sessions are looked up again in the directory.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(10);

/// Why the gateway ends a running session, and whether the processes it left running in
/// the container (`setsid nohup …`) end with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// What the person is told.
    pub message: String,
    /// Whether the session's leftover processes are killed too (a revocation: what the
    /// person may no longer do must not go on running for them).
    pub processes_too: bool,
}

struct Entry {
    request: Request,
    end: mpsc::Sender<Ending>,
    /// The directory no longer knows the person (deleted or locked).
    gone: bool,
    /// Told to end already.
    revoked: bool,
}

/// An authenticated connection: whose, and how to close it.
struct Conn {
    user: String,
    handle: russh::server::Handle,
}

/// The registry of running sessions (and forwards), and of authenticated connections.
#[derive(Default)]
pub struct LiveSessions {
    map: Mutex<HashMap<String, Entry>>,
    conns: Mutex<HashMap<u64, Conn>>,
    next_conn: std::sync::atomic::AtomicU64,
}

/// A registered connection; dropping it removes the connection from the registry.
pub struct ConnectionRegistration {
    live: Arc<LiveSessions>,
    id: u64,
}

impl Drop for ConnectionRegistration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.live.conns.lock() {
            m.remove(&self.id);
        }
    }
}

/// A registered session; dropping it removes the session from the registry.
pub struct Registration {
    live: Arc<LiveSessions>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.live.map.lock() {
            m.remove(&self.id);
        }
    }
}

impl LiveSessions {
    /// Registers session `id`, allowed on `request`; a message on the returned receiver
    /// means the session must end, and says why.
    pub fn register(
        self: &Arc<Self>,
        id: &str,
        request: Request,
    ) -> (Registration, mpsc::Receiver<Ending>) {
        let (end, rx) = mpsc::channel(1);
        if let Ok(mut m) = self.map.lock() {
            m.insert(
                id.to_string(),
                Entry {
                    request,
                    end,
                    gone: false,
                    revoked: false,
                },
            );
        }
        (
            Registration {
                live: self.clone(),
                id: id.to_string(),
            },
            rx,
        )
    }

    /// Registers an authenticated connection of `user`, closed as a whole once the
    /// directory no longer knows them.
    pub fn register_connection(
        self: &Arc<Self>,
        user: &str,
        handle: russh::server::Handle,
    ) -> ConnectionRegistration {
        let id = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.conns.lock() {
            m.insert(
                id,
                Conn {
                    user: user.to_string(),
                    handle,
                },
            );
        }
        ConnectionRegistration {
            live: self.clone(),
            id,
        }
    }

    /// Tells every running session to end, saying `why`; how many were told.
    pub fn end_all(&self, why: &str) -> usize {
        let Ok(mut m) = self.map.lock() else {
            return 0;
        };
        for e in m.values_mut() {
            e.revoked = true;
            let _ = e.end.try_send(Ending {
                message: why.to_string(),
                processes_too: false,
            });
        }
        m.len()
    }

    /// How many sessions run now (a session leaves once its recording is sealed and its
    /// end audited).
    pub fn count(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Checks every running session against the policy in force now; those it no longer
/// allows are told to end, and that is audited.
pub async fn revalidate(
    live: &LiveSessions,
    policy: &dyn gatehouse_policies::Policy,
    audit: &Audit,
) {
    let now = chrono::Utc::now();
    let mut revoked = Vec::new();
    if let Ok(mut m) = live.map.lock() {
        for (id, e) in m.iter_mut().filter(|(_, e)| !e.revoked) {
            let mut r = e.request.clone();
            r.time = now;
            let explained = policy.explain(&r);
            let denial = if e.gone {
                Some((
                    None,
                    format!(
                        "{} is no longer in the directory (or is locked)",
                        r.subject.user
                    ),
                ))
            } else {
                match explained.decision {
                    Decision::Deny { rule, reason } => Some((rule, reason)),
                    Decision::Allow { .. } => None,
                }
            };
            if let Some((rule, reason)) = denial {
                e.revoked = true;
                let end = e.end.clone();
                revoked.push((id.clone(), r, rule, reason, explained.traces, end));
            }
        }
    }
    // Audited first, then ended: the log has the revocation before the session's end.
    for (id, r, rule, reason, traces, end) in revoked {
        tracing::warn!(session = %id, user = %r.subject.user, container = %r.target.container, "access revoked: {reason}");
        let explanation: Vec<String> = traces.iter().map(ToString::to_string).collect();
        audit
            .note(AuditEvent::SessionRevoked {
                session: &id,
                user: &r.subject.user,
                container: &r.target.container,
                login: &r.login,
                action: r.action.to_string(),
                rule,
                reason: &reason,
                explanation,
            })
            .await;
        let _ = end.try_send(Ending {
            message: format!("access revoked: {reason}"),
            processes_too: true,
        });
    }
}

/// Looks the people of running sessions up again: their groups are updated, and the
/// sessions of those the directory no longer returns are marked for ending. When the
/// directory does not answer, sessions keep what they had (new logins fail closed).
async fn refresh_directory(live: &LiveSessions, directory: &dyn Directory, audit: &Audit) {
    let mut users: BTreeSet<String> = match live.map.lock() {
        Ok(m) => m.values().map(|e| e.request.subject.user.clone()).collect(),
        Err(_) => return,
    };
    if let Ok(c) = live.conns.lock() {
        users.extend(c.values().map(|c| c.user.clone()));
    }
    for name in users {
        let found = match directory.lookup(&name).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(user = %name, "directory unavailable; running sessions keep their groups: {e}");
                continue;
            }
        };
        if let Ok(mut m) = live.map.lock() {
            for e in m.values_mut().filter(|e| e.request.subject.user == name) {
                match &found {
                    Some(u) => e.request.subject.groups = u.groups.clone(),
                    None => e.gone = true,
                }
            }
        }
        if found.is_none() {
            close_connections(live, audit, &name).await;
        }
    }
}

/// Closes every connection of `user`, whom the directory no longer knows.
pub async fn close_connections(live: &LiveSessions, audit: &Audit, user: &str) {
    let handles: Vec<russh::server::Handle> = match live.conns.lock() {
        Ok(mut c) => {
            let ids: Vec<u64> = c
                .iter()
                .filter(|(_, c)| c.user == user)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| c.remove(id))
                .map(|c| c.handle)
                .collect()
        }
        Err(_) => return,
    };
    for handle in handles {
        tracing::warn!(
            user,
            "no longer in the directory (or locked); connection closed"
        );
        audit
            .note(AuditEvent::ConnectionClosed {
                user,
                reason: "no longer in the directory (or locked)",
            })
            .await;
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                "gatehouse: you are no longer in the directory; connection closed".into(),
                "en".into(),
            )
            .await;
    }
}

/// What the running sessions are checked against.
pub struct Checks {
    /// The sessions.
    pub live: Arc<LiveSessions>,
    /// The policy in force.
    pub policy: Arc<PolicyStore>,
    /// Who people are.
    pub directory: Arc<dyn Directory>,
    /// Where revocations are written.
    pub audit: Audit,
}

/// Checks running sessions for as long as the gateway runs: every few seconds (time
/// windows close), at once when the policy is reloaded (`reloaded` changes), and the
/// directory now and then.
pub async fn watch(c: Checks, mut reloaded: tokio::sync::watch::Receiver<u64>) {
    let mut tick = tokio::time::interval(CHECK);
    let every = (DIRECTORY_REFRESH.as_secs() / CHECK.as_secs()).max(1);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                n += 1;
                if n.is_multiple_of(every) {
                    refresh_directory(&c.live, c.directory.as_ref(), &c.audit).await;
                }
            }
            changed = reloaded.changed() => {
                if changed.is_err() {
                    // No policy watcher (a fixed policy): the tick alone.
                    reloaded = tokio::sync::watch::channel(0).1;
                    continue;
                }
            }
        }
        revalidate(&c.live, c.policy.current().as_ref(), &c.audit).await;
    }
}
