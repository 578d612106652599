//! Agent forwarding (`ssh -A`), where policy allows (`agent-forward`): a socket inside
//! the container, private to the login, whose connections are carried to the client's
//! agent over `auth-agent@openssh.com` channels. The session's processes find it in
//! `SSH_AUTH_SOCK`. It is set up once per session and audited; it goes away with the
//! session.

use std::sync::Arc;

use russh::server::Handle;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::audit::AuditEvent;

/// A forwarded agent, for as long as the session lives.
pub struct Forwarded {
    task: JoinHandle<()>,
    /// `SSH_AUTH_SOCK` inside the container.
    pub path: String,
    app: Arc<App>,
    container: String,
    login: String,
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.task.abort();
        // Remove the socket's directory, as the login (it is theirs).
        let Some(dir) = self.path.strip_suffix("/agent.sock").map(str::to_owned) else {
            return;
        };
        let (app, container, login) =
            (self.app.clone(), self.container.clone(), self.login.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let spec = gatehouse_runtime::ExecSpec::command(&login, format!("rm -rf '{dir}'"));
                if let Ok(p) = app.runtime.exec(&container, spec).await {
                    let _ = p.exit.await;
                }
            });
        }
    }
}

/// Sets the agent socket up in `container` for `login`; `None` (logged) if it cannot be.
pub async fn forward(
    app: &Arc<App>,
    handle: Handle,
    container: &str,
    login: &str,
    user: &str,
) -> Option<Forwarded> {
    let (listener, path) = match app.runtime.agent_listener(container, login).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(container, "agent forwarding not set up: {e}");
            return None;
        }
    };
    app.audit
        .note(AuditEvent::AgentForwarded {
            user,
            container,
            login,
            socket: &path,
        })
        .await;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                match handle.channel_open_agent().await {
                    Ok(channel) => {
                        let _ = super::forward::carry(channel, stream).await;
                    }
                    Err(e) => tracing::warn!("cannot open an agent channel to the client: {e}"),
                }
            });
        }
    });
    Some(Forwarded {
        task,
        path,
        app: app.clone(),
        container: container.to_string(),
        login: login.to_string(),
    })
}
