//! ProxyJump (`ssh -J alice@gw root@web01`, `ProxyCommand ssh -W %h:%p …`): a
//! `direct-tcpip` channel to a container's port 22 from a connection that named no
//! container is not forwarded anywhere — the gateway serves the inner SSH connection
//! itself, so its sessions are policy-checked and recorded like any other. The identity
//! is the outer login (the inner connection authenticates with `none`); the inner login
//! is the inner user name. Each container presents its own stable host key, derived from
//! the gateway's (`gatehouse container hostkeys` prints `known_hosts` lines).

use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, MethodKind};
use tracing::Instrument;

use super::handler::Connection;
use crate::app::App;
use crate::grammar::Target;
use crate::hostkey;

/// Whether a `direct-tcpip` request is a ProxyJump hop to an existing container.
pub async fn is_jump(app: &App, target: &Target, host: &str, port: u32) -> bool {
    port == 22
        && target.container.is_none()
        && !target.admin
        && gatehouse_runtime::names::validate_container_name(host).is_ok()
        && app.runtime.get(host).await.is_ok()
}

/// Serves the inner SSH connection over the channel until it ends.
pub async fn serve(app: Arc<App>, inner: Connection, channel: Channel<Msg>) {
    let span = tracing::info_span!("jump");
    async move {
        let Some(container) = inner.jump_container() else {
            return;
        };
        let config = match config(&app, &container) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!("jump: {e:#}");
                return;
            }
        };
        match russh::server::run_stream(config, channel.into_stream(), inner).await {
            Ok(session) => {
                if let Err(e) = session.await {
                    tracing::debug!("jump connection ended: {e:#}");
                }
            }
            Err(e) => tracing::debug!("jump connection set-up failed: {e:#}"),
        }
    }
    .instrument(span)
    .await
}

fn config(app: &App, container: &str) -> anyhow::Result<russh::server::Config> {
    let gateway = hostkey::load_or_create(&app.config.server.state_dir)?;
    let key = hostkey::container_key(&gateway, container)?;
    Ok(super::server_config(key, &[MethodKind::None]))
}
