//! The russh handler: authentication, and handing each session channel to its own task.
//! It stays thin: channel requests are acknowledged here and acted on in [`super::session`].

use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty, Sig};
use tracing::Instrument;

use super::session::{self, SessionContext};
use crate::app::App;
use crate::directory::User;
use crate::grammar::{self, Target};

/// Creates one [`Connection`] per client.
pub struct Server {
    /// Shared gateway state.
    pub app: Arc<App>,
}

impl russh::server::Server for Server {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        let peer_text = peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".into());
        tracing::info!(peer = %peer_text, "connection");
        Connection {
            app: self.app.clone(),
            span: tracing::info_span!("conn", peer = %peer_text),
            peer: peer_text,
            authed: None,
        }
    }

    fn handle_session_error(&mut self, error: anyhow::Error) {
        tracing::debug!("connection ended with error: {error:#}");
    }
}

/// One client connection.
pub struct Connection {
    app: Arc<App>,
    span: tracing::Span,
    peer: String,
    authed: Option<(User, Target)>,
}

impl Connection {
    /// Parses the SSH user name and looks the person up. `None` refuses; the reason is logged.
    async fn identify(&self, ssh_user: &str, method: &str, log: bool) -> Option<(User, Target)> {
        let target = match grammar::parse(ssh_user) {
            Ok(t) => t,
            Err(e) => {
                if log {
                    tracing::warn!(parent: &self.span, method, "auth refused: {e}");
                }
                return None;
            }
        };
        match self.app.directory.lookup(&target.user).await {
            Ok(Some(user)) => Some((user, target)),
            Ok(None) => {
                if log {
                    tracing::warn!(parent: &self.span, user = %target.user, method, "auth refused: unknown user");
                }
                None
            }
            Err(e) => {
                tracing::error!(parent: &self.span, user = %target.user, method, "auth refused: {e}");
                None
            }
        }
    }

    fn accept(&mut self, user: User, target: Target, method: &str) -> Auth {
        tracing::info!(parent: &self.span, user = %user.name, method, groups = ?user.groups, target = ?target.container, "authenticated");
        self.authed = Some((user, target));
        Auth::Accept
    }
}

impl russh::server::Handler for Connection {
    type Error = anyhow::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.identify(user, "publickey", false).await {
            Some((u, _)) if u.has_key(offer.public_key) => Auth::Accept,
            _ => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.identify(user, "publickey", true).await {
            Some((u, t)) if u.has_key(key.public_key) => Ok(self.accept(u, t, "publickey")),
            Some((u, _)) => {
                tracing::warn!(parent: &self.span, user = %u.name, "auth refused: key not accepted");
                Ok(Auth::reject())
            }
            None => Ok(Auth::reject()),
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let Some((u, t)) = self.identify(user, "password", true).await else {
            return Ok(Auth::reject());
        };
        match self.app.directory.verify_password(&u.name, password).await {
            Ok(true) => Ok(self.accept(u, t, "password")),
            Ok(false) => {
                tracing::warn!(parent: &self.span, user = %u.name, "auth refused: wrong password");
                Ok(Auth::reject())
            }
            Err(e) => {
                tracing::error!(parent: &self.span, user = %u.name, "auth refused: {e}");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((user, target)) = self.authed.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        reply.accept().await;
        let span = tracing::info_span!(parent: &self.span, "session", user = %user.name, channel = %channel.id());
        let ctx = SessionContext {
            app: self.app.clone(),
            user,
            target,
            peer: self.peer.clone(),
            handle: session.handle(),
        };
        tokio::spawn(session::run(channel, ctx).instrument(span));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(session.channel_success(channel)?)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _n: &str,
        _v: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(session.channel_success(channel)?)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(session.channel_success(channel)?)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(session.channel_success(channel)?)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(parent: &self.span, subsystem = name, "subsystem refused (not supported yet)");
        Ok(session.channel_failure(channel)?)
    }

    async fn window_change_request(
        &mut self,
        _channel: ChannelId,
        _cols: u32,
        _rows: u32,
        _pw: u32,
        _ph: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn signal(
        &mut self,
        _channel: ChannelId,
        _signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}
