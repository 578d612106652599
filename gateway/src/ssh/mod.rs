//! The SSH server: russh configuration, the accept loop, and one [`handler::Connection`]
//! per client. Each session channel gets its own task ([`session`]).

mod agent;
mod endings;
pub(crate) mod files;
mod forward;
mod handler;
mod jump;
mod picker;
mod prompt;
mod reason;
mod remote;
mod session;
mod signals;
pub(crate) mod transfer;
mod wanted;

#[cfg(test)]
mod flow_tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::{MethodKind, MethodSet};

use crate::app::App;

/// Key exchanges offered: hybrid post-quantum ML-KEM-768 with X25519, and X25519. No
/// finite-field Diffie-Hellman: group14's 2048 bits are weak, and every DH group lets a
/// client make the server do costly work per connection for nothing (DHEat,
/// CVE-2002-20001). Then the protocol's extension markers (ext-info, strict kex).
const KEX: &[russh::kex::Name] = &[
    russh::kex::MLKEM768X25519_SHA256,
    russh::kex::CURVE25519,
    russh::kex::CURVE25519_PRE_RFC_8731,
    russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// MACs (for the non-AEAD ciphers): encrypt-then-MAC only.
const MACS: &[russh::mac::Name] = &[russh::mac::HMAC_SHA512_ETM, russh::mac::HMAC_SHA256_ETM];

/// No compression (it brings no gain on a LAN, and a compressor in the pre-auth path).
const COMPRESSION: &[russh::compression::Name] = &[russh::compression::NONE];

/// Builds the russh server configuration.
fn russh_config(app: &App) -> anyhow::Result<russh::server::Config> {
    let key = crate::hostkey::load_or_create(&app.config.server.state_dir)?;
    Ok(server_config(
        key,
        &[MethodKind::PublicKey, MethodKind::Password],
    ))
}

/// The server configuration with host key `key`, offering `methods`: the gateway's own,
/// and that of connections served inside ProxyJump channels.
pub(super) fn server_config(
    key: russh::keys::PrivateKey,
    methods: &[MethodKind],
) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-gatehouse_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(methods),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keys: vec![key],
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        max_auth_attempts: 6,
        nodelay: true,
        preferred: russh::Preferred {
            kex: std::borrow::Cow::Borrowed(KEX),
            mac: std::borrow::Cow::Borrowed(MACS),
            compression: std::borrow::Cow::Borrowed(COMPRESSION),
            ..russh::Preferred::DEFAULT
        },
        ..Default::default()
    }
}

/// Serves SSH on the configured address until the process ends. Connections beyond
/// the cap on unauthenticated ones are closed at once (MaxStartups); a connection that
/// has not authenticated within the grace time is disconnected (LoginGraceTime).
pub async fn serve(app: Arc<App>) -> anyhow::Result<()> {
    let listen = app.config.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(
        "listening on {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(listen)
    );
    serve_on(app, listener).await
}

/// Serves SSH on `listener` (see [`serve`]).
pub async fn serve_on(app: Arc<App>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let config = Arc::new(russh_config(&app)?);
    let unauthenticated = Arc::new(AtomicUsize::new(0));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let limits = app.guard.limits().clone();
        if let crate::guard::Verdict::Refuse(why) = app.guard.connection(peer.ip()) {
            tracing::warn!(peer = %peer, "connection refused: {why}");
            drop(socket);
            continue;
        }
        if unauthenticated.load(Ordering::SeqCst) >= limits.max_unauthenticated {
            tracing::warn!(peer = %peer, "connection refused: {} unauthenticated connections already", limits.max_unauthenticated);
            drop(socket);
            continue;
        }
        let _ = socket.set_nodelay(true);
        let handler = handler::Connection::new(
            app.clone(),
            peer,
            handler::Pending::new(unauthenticated.clone(), app.clone(), peer.ip()),
        );
        let authenticated = handler.authenticated.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let started = tokio::time::timeout(
                limits.grace,
                russh::server::run_stream(config, socket, handler),
            )
            .await;
            let session = match started {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, "connection set-up failed: {e:#}");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = %peer, "connection closed: login grace time exceeded");
                    return;
                }
            };
            let handle = session.handle();
            let grace = tokio::spawn(async move {
                tokio::time::sleep(limits.grace).await;
                if !authenticated.load(Ordering::SeqCst) {
                    tracing::info!(peer = %peer, "connection closed: login grace time exceeded");
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "login grace time exceeded".into(),
                            String::new(),
                        )
                        .await;
                }
            });
            if let Err(e) = session.await {
                tracing::debug!(peer = %peer, "connection ended: {e:#}");
            }
            grace.abort();
        });
    }
}
