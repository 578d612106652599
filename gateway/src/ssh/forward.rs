//! Local port forwarding (`ssh -L`, `ssh -D`): a `direct-tcpip` channel becomes a TCP
//! connection made from inside the container's own network namespace, to a port the
//! policy allows (`port-forward` action, `ports`). Destinations are the container itself
//! (`localhost`, `127.0.0.1`), an address, or another container by name — whatever the
//! container can reach, never the host's network. Each forward is audited when it opens
//! and when it closes, with the bytes that went each way.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use gatehouse_policies::{Action, Request};
use russh::server::Msg;
use russh::Channel;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::access;
use crate::app::App;
use crate::audit::AuditEvent;
use crate::directory::User;
use crate::grammar::Target;

/// Where a forward goes, resolved inside the container's view.
async fn destination(app: &App, host: &str, port: u32) -> Result<SocketAddrV4, String> {
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad port {port}"))?;
    let ip = match host {
        "localhost" | "127.0.0.1" | "ip6-localhost" | "::1" => Ipv4Addr::LOCALHOST,
        h => match h.parse::<Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) => {
                gatehouse_runtime::names::validate_container_name(h).map_err(|_| {
                    format!(
                        "unknown destination '{}'",
                        gatehouse_runtime::names::shorten(h)
                    )
                })?;
                app.runtime
                    .get(h)
                    .await
                    .ok()
                    .and_then(|r| r.address)
                    .ok_or_else(|| format!("no container '{h}' with an address"))?
            }
        },
    };
    Ok(SocketAddrV4::new(ip, port))
}

/// Decides, connects and (when allowed) relays one `direct-tcpip` channel. `Err` is the
/// reason it was refused (logged and audited; the client sees the channel refused).
pub async fn open(
    app: &Arc<App>,
    user: &User,
    target: &Target,
    peer: &str,
    host: &str,
    port: u32,
) -> Result<Connected, String> {
    let addr = destination(app, host, port).await?;
    let (name, request) = allowed_container(
        app,
        user,
        target,
        peer,
        Action::PortForward,
        Some(addr.port()),
    )
    .await?;
    let stream = app
        .runtime
        .connect(&name, addr)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Connected {
        container: name,
        addr,
        stream,
        request,
    })
}

/// The container a forward of `action` (to or on `port`) goes to, if the policy allows
/// it; started if it was not running.
pub(super) async fn allowed_container(
    app: &Arc<App>,
    user: &User,
    target: &Target,
    peer: &str,
    action: Action,
    port: Option<u16>,
) -> Result<(String, Request), String> {
    let source = peer.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
    let resolved = access::resolve(app, user, target, action, source, port)
        .await
        .map_err(|r| r.message(&user.name))?;
    let name = resolved.container.name;
    app.runtime
        .start(&name)
        .await
        .map_err(|e| format!("cannot start '{name}': {e}"))?;
    Ok((name, resolved.request))
}

/// Carries bytes both ways between a channel and a connection until both sides are
/// done, passing each side's end on as a shutdown. Returns the bytes that went to the
/// connection and to the client, and the first error (the counts survive it).
pub(super) async fn carry<S: AsyncRead + AsyncWrite>(
    channel: Channel<Msg>,
    conn: S,
) -> (u64, u64, Option<String>) {
    let (mut from_client, mut to_client) = tokio::io::split(channel.into_stream());
    let (mut from_conn, mut to_conn) = tokio::io::split(conn);
    let up = async {
        let n = tokio::io::copy(&mut from_client, &mut to_conn).await;
        let _ = to_conn.shutdown().await;
        n
    };
    let down = async {
        let n = tokio::io::copy(&mut from_conn, &mut to_client).await;
        let _ = to_client.shutdown().await;
        n
    };
    let (up, down) = tokio::join!(up, down);
    let error = [&up, &down]
        .iter()
        .find_map(|r| r.as_ref().err().map(ToString::to_string));
    (up.unwrap_or(0), down.unwrap_or(0), error)
}

/// An allowed forward, connected.
pub struct Connected {
    container: String,
    addr: SocketAddrV4,
    stream: tokio::net::TcpStream,
    /// The access question it was allowed on (asked again while it runs).
    request: Request,
}

/// Relays the channel and the connection until both sides are done; audits the totals.
pub async fn relay(app: Arc<App>, user: String, peer: String, c: Connected, channel: Channel<Msg>) {
    app.audit
        .note(AuditEvent::ForwardOpen {
            user: &user,
            peer: &peer,
            container: &c.container,
            to: c.addr.to_string(),
        })
        .await;
    // Registered like a session: a revocation ends the forward.
    let id = format!("forward-{}", gatehouse_recordings::store::new_id());
    let (_registration, mut revoked) = app.live.register(&id, c.request.clone());
    let (sent, received, error) = tokio::select! {
        moved = carry(channel, c.stream) => moved,
        Some(ending) = revoked.recv() => (0, 0, Some(ending.message)),
    };
    tracing::info!(container = %c.container, to = %c.addr, sent, received, "forward closed");
    app.audit
        .note(AuditEvent::ForwardClose {
            user: &user,
            peer: &peer,
            container: &c.container,
            to: c.addr.to_string(),
            bytes_to_container: sent,
            bytes_to_client: received,
            error,
        })
        .await;
}
