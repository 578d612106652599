//! The SSH server: russh configuration, the accept loop, and one [`handler::Connection`]
//! per client. Each session channel gets its own task ([`session`]).

mod handler;
pub mod hostkey;
mod picker;
mod session;
mod signals;

use std::sync::Arc;
use std::time::Duration;

use russh::server::Server as _;
use russh::{MethodKind, MethodSet};

use crate::app::App;

/// Builds the russh server configuration.
fn russh_config(app: &App) -> anyhow::Result<russh::server::Config> {
    let key = hostkey::load_or_create(&app.config.server.state_dir)?;
    Ok(russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-gatehouse_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keys: vec![key],
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        max_auth_attempts: 6,
        nodelay: true,
        ..Default::default()
    })
}

/// Serves SSH on the configured address until the process ends.
pub async fn serve(app: Arc<App>) -> anyhow::Result<()> {
    let config = Arc::new(russh_config(&app)?);
    let listen = app.config.server.listen.clone();
    let socket = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(
        "listening on {}",
        socket.local_addr().map(|a| a.to_string()).unwrap_or(listen)
    );
    let mut server = handler::Server { app };
    server.run_on_socket(config, &socket).await?;
    Ok(())
}
