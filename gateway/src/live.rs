//! The sessions running now, with the access question each was allowed on, so that a
//! policy change (or a time window closing) ends the sessions it no longer allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gatehouse_policies::{Decision, Request};
use serde_json::json;
use tokio::sync::mpsc;

use crate::app::App;

struct Entry {
    request: Request,
    end: mpsc::Sender<String>,
}

/// The registry of running sessions.
#[derive(Default)]
pub struct LiveSessions {
    map: Mutex<HashMap<String, Entry>>,
}

/// A registered session; dropping it removes the session from the registry.
pub struct Registration {
    app: Arc<App>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.app.live.map.lock() {
            m.remove(&self.id);
        }
    }
}

impl LiveSessions {
    /// Registers session `id`, allowed on `request`; a message on the returned receiver
    /// means the session must end, and says why.
    pub fn register(
        app: &Arc<App>,
        id: &str,
        request: Request,
    ) -> (Registration, mpsc::Receiver<String>) {
        let (end, rx) = mpsc::channel(1);
        if let Ok(mut m) = app.live.map.lock() {
            m.insert(id.to_string(), Entry { request, end });
        }
        (
            Registration {
                app: app.clone(),
                id: id.to_string(),
            },
            rx,
        )
    }
}

/// Checks every running session against the policy in force now; those it no longer
/// allows are told to end, and that is audited.
pub async fn revalidate(app: &Arc<App>) {
    let policy = app.policy.current();
    let now = chrono::Utc::now();
    let mut revoked = Vec::new();
    if let Ok(m) = app.live.map.lock() {
        for (id, e) in m.iter() {
            let mut r = e.request.clone();
            r.time = now;
            let explained = policy.explain(&r);
            if let Decision::Deny { rule, reason } = explained.decision {
                let message = format!("access revoked: {reason}");
                if e.end.try_send(message).is_ok() {
                    revoked.push((id.clone(), r, rule, reason, explained.traces));
                }
            }
        }
    }
    for (id, r, rule, reason, traces) in revoked {
        tracing::warn!(session = %id, user = %r.subject.user, container = %r.target.container, "access revoked: {reason}");
        let explanation: Vec<String> = traces.iter().map(ToString::to_string).collect();
        app.audit
            .note(
                "session.revoked",
                json!({"session": id, "user": r.subject.user, "container": r.target.container,
                    "login": r.login, "action": r.action.to_string(), "rule": rule, "reason": reason,
                    "explanation": explanation}),
            )
            .await;
    }
}
