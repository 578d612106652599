//! The russh handler: authentication (with the brute-force guard), and handing each
//! session channel to its own task.
//! It stays thin: channel requests are acknowledged here and acted on in [`super::session`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty, Sig};
use tracing::Instrument;

use super::session::{self, SessionContext};
use crate::app::App;
use crate::audit::AuditEvent;
use crate::directory::User;
use crate::grammar::{self, Target};
use crate::guard::Verdict;
use crate::live::ConnectionRegistration;

/// Counts a connection as unauthenticated for as long as it lives (MaxStartups), and
/// against its source (see [`crate::guard::Guard::connection`]) until it logs in.
pub struct Pending {
    counter: Arc<AtomicUsize>,
    source: Option<(Arc<App>, IpAddr)>,
}

impl Pending {
    /// Counts one more unauthenticated connection, from `source`.
    pub fn new(counter: Arc<AtomicUsize>, app: Arc<App>, source: IpAddr) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Pending {
            counter,
            source: Some((app, source)),
        }
    }

    /// The connection authenticated: it no longer counts.
    fn authenticated(self) {
        if let Some((app, source)) = &self.source {
            app.guard.connection_authenticated(*source);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One client connection.
pub struct Connection {
    app: Arc<App>,
    span: tracing::Span,
    peer: String,
    peer_ip: Option<IpAddr>,
    authed: Option<(User, Target)>,
    /// For a connection served inside a ProxyJump channel: who opened the outer
    /// connection, and the container it goes to.
    jump: Option<(User, String)>,
    /// Remote forwards (`ssh -R`) by address and port: their accept tasks.
    remote: std::collections::HashMap<(String, u32), tokio::task::JoinHandle<()>>,
    pending: Option<Pending>,
    /// Set on successful authentication (read by the login grace timer).
    pub authenticated: Arc<AtomicBool>,
    /// When the directory last confirmed the person.
    checked: Option<Instant>,
    /// In the registry of connections, once authenticated and serving requests.
    registration: Option<ConnectionRegistration>,
}

/// How long the directory's last answer (at authentication, or for the last request)
/// stands for a new request on the same connection.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

impl Drop for Connection {
    fn drop(&mut self) {
        // Remote forwards listen for as long as their connection lives.
        for task in self.remote.values() {
            task.abort();
        }
    }
}

/// How the brute-force guard counts an attempt by `method`: password guesses also per
/// user, everything else per address only.
fn guard_method(method: &str) -> crate::guard::Method {
    if method == "password" {
        crate::guard::Method::Password
    } else {
        crate::guard::Method::Key
    }
}

/// A user name short and printable enough for counters and logs.
fn attempt_key(ssh_user: &str) -> String {
    let user = ssh_user.split('@').next().unwrap_or(ssh_user);
    gatehouse_runtime::names::shorten(user)
}

impl Connection {
    /// A new connection from `peer`.
    pub fn new(app: Arc<App>, peer: SocketAddr, pending: Pending) -> Self {
        tracing::info!(peer = %peer, "connection");
        Connection {
            app,
            span: tracing::info_span!("conn", peer = %peer),
            peer: peer.to_string(),
            peer_ip: Some(peer.ip()),
            authed: None,
            jump: None,
            remote: Default::default(),
            pending: Some(pending),
            authenticated: Arc::new(AtomicBool::new(false)),
            checked: None,
            registration: None,
        }
    }

    /// The connection inside a ProxyJump channel of `outer`: its identity is the outer
    /// login's, its container fixed.
    pub fn inner(outer: &Connection, user: User, container: String) -> Self {
        Connection {
            app: outer.app.clone(),
            span: tracing::info_span!(parent: &outer.span, "jump", container = %container),
            peer: outer.peer.clone(),
            peer_ip: outer.peer_ip,
            authed: None,
            jump: Some((user, container)),
            remote: Default::default(),
            pending: None,
            authenticated: Arc::new(AtomicBool::new(false)),
            checked: None,
            registration: None,
        }
    }

    /// The container of a ProxyJump inner connection.
    pub fn jump_container(&self) -> Option<String> {
        self.jump.as_ref().map(|(_, c)| c.clone())
    }

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

    /// Whether the guard lets this attempt be checked at all.
    fn allowed(&self, ssh_user: &str, method: &str) -> bool {
        match self
            .app
            .guard
            .check(self.peer_ip, &attempt_key(ssh_user), guard_method(method))
        {
            Verdict::Proceed => true,
            Verdict::Refuse(why) => {
                tracing::warn!(parent: &self.span, user = %attempt_key(ssh_user), method, "auth refused: {why}");
                false
            }
        }
    }

    /// A failed attempt: counted, logged, audited, and answered after the back-off delay.
    async fn reject(&self, ssh_user: &str, method: &str, reason: &str) -> Auth {
        let user = attempt_key(ssh_user);
        let delay = self
            .app
            .guard
            .failed(self.peer_ip, &user, guard_method(method));
        if !reason.is_empty() {
            tracing::warn!(parent: &self.span, user = %user, method, "auth refused: {reason}");
        }
        let why = if reason.is_empty() {
            "unknown user or invalid name"
        } else {
            reason
        };
        let event = AuditEvent::AuthFailure {
            user: &user,
            method,
            peer: &self.peer,
            reason: why,
        };
        self.app.audit.note(event).await;
        tokio::time::sleep(delay).await;
        Auth::reject()
    }

    async fn accept(&mut self, user: User, target: Target, method: &str) -> Auth {
        tracing::info!(parent: &self.span, user = %user.name, method, groups = ?user.groups, target = ?target.container, "authenticated");
        let event = AuditEvent::AuthSuccess {
            user: &user.name,
            method,
            peer: &self.peer,
            groups: &user.groups,
        };
        self.app.audit.note(event).await;
        self.app.guard.succeeded(self.peer_ip, &user.name);
        self.authenticated.store(true, Ordering::SeqCst);
        if let Some(p) = self.pending.take() {
            p.authenticated();
        }
        self.authed = Some((user, target));
        self.checked = Some(Instant::now());
        Auth::Accept
    }

    /// The person as the directory has them now. Every new channel and global request is
    /// decided on the directory and policy in force when it comes, also on a connection
    /// kept open (ControlMaster): a person the directory no longer returns has every
    /// connection of theirs closed, and an unreachable directory refuses the request.
    async fn current(&mut self, session: &mut Session) -> Option<(User, Target)> {
        let (user, target) = self.authed.clone()?;
        if self.registration.is_none() {
            self.registration = Some(
                self.app
                    .live
                    .register_connection(&user.name, session.handle()),
            );
        }
        if self.checked.is_some_and(|t| t.elapsed() < RECHECK_AFTER) {
            return Some((user, target));
        }
        match self.app.directory.lookup(&user.name).await {
            Ok(Some(fresh)) => {
                self.checked = Some(Instant::now());
                self.authed = Some((fresh.clone(), target.clone()));
                Some((fresh, target))
            }
            Ok(None) => {
                self.authed = None;
                crate::live::close_connections(&self.app.live, &self.app.audit, &user.name).await;
                None
            }
            Err(e) => {
                tracing::error!(parent: &self.span, user = %user.name, "request refused: {e}");
                None
            }
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = anyhow::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        // Called once, when authentication starts: the first moment to audit the connection.
        self.app
            .audit
            .note(AuditEvent::Connection { peer: &self.peer })
            .await;
        // Fail closed, but say why: the person sees this before being refused.
        Ok(match self.app.directory.health().await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(parent: &self.span, "{e}");
                Some("gatehouse: the user directory is unavailable, so logins are refused; try again later.\r\n".into())
            }
        })
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        // Only inside a ProxyJump channel: the outer connection authenticated already.
        let Some((outer, container)) = self.jump.clone() else {
            return Ok(Auth::reject());
        };
        if !gatehouse_runtime::names::is_user_name(user) {
            return Ok(self.reject(user, "jump", "invalid login name").await);
        }
        // As the directory has them now, not as when the outer connection was opened.
        let outer = match self.app.directory.lookup(&outer.name).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => {
                return Ok(self
                    .reject(user, "jump", "no longer in the directory")
                    .await)
            }
            Err(e) => {
                tracing::error!(parent: &self.span, user = %outer.name, "jump refused: {e}");
                return Ok(Auth::reject());
            }
        };
        let target = Target {
            user: outer.name.clone(),
            login: (user != outer.name).then(|| user.to_string()),
            container: Some(container),
            admin: false,
        };
        Ok(self.accept(outer, target, "jump").await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.allowed(user, "publickey") {
            return Ok(Auth::reject());
        }
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
        if !self.allowed(user, "publickey") {
            return Ok(Auth::reject());
        }
        match self.identify(user, "publickey", true).await {
            Some((u, t)) if u.has_key(key.public_key) => Ok(self.accept(u, t, "publickey").await),
            Some(_) => Ok(self.reject(user, "publickey", "key not accepted").await),
            None => Ok(self.reject(user, "publickey", "").await),
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if !self.allowed(user, "password") {
            return Ok(Auth::reject());
        }
        let Some((u, t)) = self.identify(user, "password", true).await else {
            return Ok(self.reject(user, "password", "").await);
        };
        match self.app.directory.verify_password(&u.name, password).await {
            Ok(true) => Ok(self.accept(u, t, "password").await),
            Ok(false) => Ok(self.reject(user, "password", "wrong password").await),
            Err(e) => {
                tracing::error!(parent: &self.span, user = %u.name, "auth refused: {e}");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((user, target)) = self.current(session).await else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if super::jump::is_jump(&self.app, &target, host_to_connect, port_to_connect).await {
            reply.accept().await;
            let inner = Connection::inner(self, user, host_to_connect.to_string());
            tokio::spawn(super::jump::serve(self.app.clone(), inner, channel));
            return Ok(());
        }
        let span = tracing::info_span!(parent: &self.span, "forward", user = %user.name, to = %format!("{host_to_connect}:{port_to_connect}"));
        let opened = super::forward::open(
            &self.app,
            &user,
            &target,
            &self.peer,
            host_to_connect,
            port_to_connect,
        )
        .instrument(span.clone())
        .await;
        match opened {
            Ok(connected) => {
                reply.accept().await;
                let relay = super::forward::relay(
                    self.app.clone(),
                    user.name.clone(),
                    self.peer.clone(),
                    connected,
                    channel,
                );
                tokio::spawn(relay.instrument(span));
            }
            Err(why) => {
                tracing::warn!(parent: &span, "port forward refused: {why}");
                self.app
                    .audit
                    .note(AuditEvent::ForwardRefused {
                        user: &user.name,
                        peer: &self.peer,
                        to: Some(format!("{host_to_connect}:{port_to_connect}")),
                        listen: None,
                        remote: false,
                        reason: &why.to_string(),
                    })
                    .await;
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
            }
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((user, target)) = self.current(session).await else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        reply.accept().await;
        let span = tracing::info_span!(parent: &self.span, "session", user = %user.name, channel = %channel.id());
        if target.admin {
            let run = crate::admin::run(channel, self.app.clone(), user, self.peer.clone());
            tokio::spawn(run.instrument(span));
            return Ok(());
        }
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

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some((user, target)) = self.current(session).await else {
            return Ok(false);
        };
        let started = super::remote::start(
            &self.app,
            session.handle(),
            &user,
            &target,
            &self.peer,
            address,
            *port,
        )
        .instrument(self.span.clone())
        .await;
        match started {
            Ok((task, bound)) => {
                *port = bound;
                self.remote.insert((address.to_string(), bound), task);
                Ok(true)
            }
            Err(why) => {
                tracing::warn!(parent: &self.span, "remote forward refused: {why}");
                self.app
                    .audit
                    .note(AuditEvent::ForwardRefused {
                        user: &user.name,
                        peer: &self.peer,
                        to: None,
                        listen: Some(format!("{address}:{port}")),
                        remote: true,
                        reason: &why.to_string(),
                    })
                    .await;
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(match self.remote.remove(&(address.to_string(), port)) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        })
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // Accepted here; the session decides by policy and sets the socket up (or not).
        Ok(true)
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
        if name == "sftp" {
            // The session's task checks the policy and starts the server.
            return Ok(session.channel_success(channel)?);
        }
        tracing::info!(parent: &self.span, subsystem = name, "unknown subsystem refused");
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
