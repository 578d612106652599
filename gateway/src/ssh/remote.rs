//! Remote port forwarding (`ssh -R PORT:host:hostport`), where policy allows
//! (`remote-forward`, `ports`): the gateway listens on PORT inside the container's own
//! network namespace (a socket made there), and carries each connection back to the
//! client over a `forwarded-tcpip` channel. Nothing listens on the host. Audited when it
//! starts, per connection (with bytes), and when it is refused.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use gatehouse_policies::Action;
use russh::server::Handle;
use tokio::task::JoinHandle;

use super::forward::{allowed_container, carry};
use crate::app::App;
use crate::audit::AuditEvent;
use crate::directory::User;
use crate::grammar::Target;

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

/// One remote forward: whose, where it listens, and the client it carries connections to.
#[derive(Clone)]
struct Forward {
    app: Arc<App>,
    handle: Handle,
    user: String,
    peer: String,
    address: String,
    container: String,
    port: u32,
}

/// Accepts connections until the listener fails or the forward is revoked (it is
/// registered like a session), carrying each to the client.
async fn serve(
    forward: Forward,
    listener: tokio::net::TcpListener,
    request: gatehouse_policies::Request,
) {
    let id = format!("remote-{}", gatehouse_recordings::store::new_id());
    let (_registration, mut revoked) = forward.app.live.register(&id, request);
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
        connections.spawn(forward.clone().carry_one(stream, from));
    }
}

impl Forward {
    /// Opens a forwarded-tcpip channel to the client for one accepted connection and
    /// carries it, then audits what passed.
    async fn carry_one(self, stream: tokio::net::TcpStream, from: std::net::SocketAddr) {
        let opened = self
            .handle
            .channel_open_forwarded_tcpip(
                self.address.clone(),
                self.port,
                from.ip().to_string(),
                u32::from(from.port()),
            )
            .await;
        let channel = match opened {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("remote forward: the client refused the channel: {e}");
                return;
            }
        };
        let (down, up, error) = carry(channel, stream).await;
        let event = AuditEvent::ForwardRemoteConnection {
            user: &self.user,
            peer: &self.peer,
            container: &self.container,
            port: self.port,
            from: from.to_string(),
            bytes_to_client: up,
            bytes_to_container: down,
            error,
        };
        self.app.audit.note(event).await;
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
        .note(AuditEvent::ForwardRemote {
            user: &user.name,
            peer,
            container: &name,
            listen: format!("{ip}:{bound}"),
        })
        .await;
    let forward = Forward {
        app: app.clone(),
        handle,
        user: user.name.clone(),
        peer: peer.to_string(),
        address: address.to_string(),
        container: name,
        port: bound,
    };
    let task = tokio::spawn(serve(forward, listener, request));
    Ok((task, bound))
}
