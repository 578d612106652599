//! Remote port forwarding (`ssh -R PORT:host:hostport`), where policy allows
//! (`remote-forward`, `ports`): the gateway listens on PORT inside the container's own
//! network namespace (a socket made there), and carries each connection back to the
//! client over a `forwarded-tcpip` channel. Nothing listens on the host. Audited when it
//! starts, per connection (with bytes), and when it is refused.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use gatehouse_policies::Action;
use russh::server::Handle;
use serde_json::json;
use tokio::task::JoinHandle;

use super::forward::{allowed_container, carry};
use crate::app::App;
use crate::directory::User;
use crate::grammar::Target;
use crate::live::LiveSessions;

/// The address to listen on inside the container for what the client asked.
fn bind_address(address: &str) -> Result<Ipv4Addr, String> {
    match address {
        "" | "0.0.0.0" | "*" => Ok(Ipv4Addr::UNSPECIFIED),
        "localhost" | "127.0.0.1" => Ok(Ipv4Addr::LOCALHOST),
        a => a.parse().map_err(|_| {
            format!(
                "cannot listen on '{}'",
                gatehouse_runtime::names::shorten(a)
            )
        }),
    }
}

/// Starts a remote forward; returns its accept task and the port it listens on.
pub async fn start(
    app: &Arc<App>,
    handle: Handle,
    user: &User,
    target: &Target,
    peer: &str,
    address: &str,
    port: u32,
) -> Result<(JoinHandle<()>, u32), String> {
    let ip = bind_address(address)?;
    let port = u16::try_from(port).map_err(|_| format!("bad port {port}"))?;
    let wanted = (port != 0).then_some(port);
    let (name, request) =
        allowed_container(app, user, target, peer, Action::RemoteForward, wanted).await?;
    let listener = app
        .runtime
        .listen(&name, SocketAddrV4::new(ip, port))
        .await
        .map_err(|e| e.to_string())?;
    let bound = listener
        .local_addr()
        .map(|a| u32::from(a.port()))
        .unwrap_or(u32::from(port));
    app.audit
        .note(
            "forward.remote",
            json!({"user": user.name, "peer": peer, "container": name, "listen": format!("{ip}:{bound}")}),
        )
        .await;
    let (app, user_name, peer, address) = (
        app.clone(),
        user.name.clone(),
        peer.to_string(),
        address.to_string(),
    );
    let task = tokio::spawn(async move {
        // Registered like a session: a revocation closes the listener and its connections.
        let id = format!("remote-{}", gatehouse_recordings::store::new_id());
        let (_registration, mut revoked) = LiveSessions::register(&app, &id, request);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (stream, from) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => break,
                },
                Some(ending) = revoked.recv() => {
                    tracing::warn!("remote forward ended: {}", ending.message);
                    break;
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let (app, handle, user_name, peer, address, name) = (
                app.clone(),
                handle.clone(),
                user_name.clone(),
                peer.clone(),
                address.clone(),
                name.clone(),
            );
            connections.spawn(async move {
                let channel = match handle
                    .channel_open_forwarded_tcpip(
                        address,
                        bound,
                        from.ip().to_string(),
                        u32::from(from.port()),
                    )
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("remote forward: the client refused the channel: {e}");
                        return;
                    }
                };
                let (down, up, error) = carry(channel, stream).await;
                app.audit
                    .note(
                        "forward.remote.connection",
                        json!({"user": user_name, "peer": peer, "container": name, "port": bound,
                            "from": from.to_string(), "bytes_to_client": up, "bytes_to_container": down,
                            "error": error}),
                    )
                    .await;
            });
        }
    });
    Ok((task, bound))
}
