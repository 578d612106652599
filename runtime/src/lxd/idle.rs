//! Idle stop on LXD: the gateway counts the sessions it runs in each instance, and a
//! sweeper stops an instance once it has had none for its idle time (`[runtime]
//! idle_stop`, or the container's own) — and LXD runs no exec in it either, so a session
//! another gateway sharing the daemon serves (or an admin's `lxc exec`) keeps it up. An
//! instance this gateway never ran a session in is left alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often idle instances are looked for.
const SWEEP: Duration = Duration::from_secs(10);

/// Sessions per instance: how many run, and when the last one ended.
#[derive(Default, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, (usize, Instant)>>>,
}

/// Held by a running session; its drop ends the session's count.
pub struct SessionGuard {
    sessions: Sessions,
    name: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.sessions.inner.lock() {
            if let Some(e) = m.get_mut(&self.name) {
                e.0 = e.0.saturating_sub(1);
                e.1 = Instant::now();
            }
        }
    }
}

impl Sessions {
    /// Counts a session in `name` until the guard is dropped.
    pub fn begin(&self, name: &str) -> SessionGuard {
        if let Ok(mut m) = self.inner.lock() {
            m.entry(name.to_string()).or_insert((0, Instant::now())).0 += 1;
        }
        SessionGuard {
            sessions: self.clone(),
            name: name.to_string(),
        }
    }

    /// The instances without sessions for longer than `idle_for(name)` says (`None`:
    /// never); they are forgotten, so each is reported once.
    pub fn idle(&self, idle_for: impl Fn(&str) -> Option<Duration>) -> Vec<String> {
        let Ok(mut m) = self.inner.lock() else {
            return vec![];
        };
        let due: Vec<String> = m
            .iter()
            .filter(|(name, (active, since))| {
                *active == 0 && idle_for(name).is_some_and(|d| since.elapsed() >= d)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in &due {
            m.remove(n);
        }
        due
    }

    /// Starts `name`'s idle time again (it was found in use after all).
    pub fn touch(&self, name: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.entry(name.to_string()).or_insert((0, Instant::now())).1 = Instant::now();
        }
    }
}

/// Whether one of `operations` (LXD's `/1.0/operations?recursion=1` answer) is an exec
/// still running in instance `name`.
pub fn exec_running(operations: &serde_json::Value, name: &str) -> bool {
    let Some(by_status) = operations.as_object() else {
        return false;
    };
    let suffix = format!("/instances/{name}");
    by_status
        .values()
        .flat_map(|v| v.as_array().into_iter().flatten())
        .any(|op| {
            op["status"] == "Running"
                && op["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Executing command"))
                && op["resources"]["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str())
                    .any(|r| r.split('?').next().is_some_and(|p| p.ends_with(&suffix)))
        })
}

/// Stops idle instances of `runtime` every [`SWEEP`], as long as it exists.
pub fn spawn_sweeper(runtime: std::sync::Weak<super::LxdRuntime>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP).await;
            let Some(rt) = runtime.upgrade() else { return };
            rt.stop_idle().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_idle_once_its_last_session_ended_long_enough_ago() {
        let s = Sessions::default();
        let a = s.begin("web01");
        let b = s.begin("web01");
        assert!(s.idle(|_| Some(Duration::ZERO)).is_empty());
        drop(a);
        assert!(
            s.idle(|_| Some(Duration::ZERO)).is_empty(),
            "one still runs"
        );
        drop(b);
        assert!(s.idle(|_| None).is_empty(), "never");
        assert!(s.idle(|_| Some(Duration::from_secs(3600))).is_empty());
        assert_eq!(s.idle(|_| Some(Duration::ZERO)), vec!["web01".to_string()]);
        assert!(s.idle(|_| Some(Duration::ZERO)).is_empty(), "reported once");
        s.touch("web01");
        assert!(
            s.idle(|_| Some(Duration::from_secs(3600))).is_empty(),
            "touched"
        );
        assert_eq!(s.idle(|_| Some(Duration::ZERO)), vec!["web01".to_string()]);
    }

    #[test]
    fn a_running_exec_in_the_instance_counts_as_use() {
        let ops = serde_json::json!({
            "running": [
                {"description": "Executing command", "status": "Running",
                 "resources": {"instances": ["/1.0/instances/web01?project=team"]}},
                {"description": "Starting instance", "status": "Running",
                 "resources": {"instances": ["/1.0/instances/db01"]}}
            ],
            "success": [
                {"description": "Executing command", "status": "Success",
                 "resources": {"instances": ["/1.0/instances/web02"]}}
            ]
        });
        assert!(exec_running(&ops, "web01"));
        assert!(!exec_running(&ops, "db01"), "not an exec");
        assert!(!exec_running(&ops, "web02"), "finished");
        assert!(!exec_running(&ops, "web0"), "another name");
        assert!(!exec_running(&serde_json::json!(null), "web01"));
    }
}
