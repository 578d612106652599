//! Where an LXD daemon listens and how a connection to it is opened: its local unix
//! socket, or a remote HTTPS endpoint reached with a client certificate and checked
//! against the daemon's pinned certificate (what `lxc remote add` keeps).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::tls;
use crate::error::{Result, RuntimeError};

/// A byte stream to the daemon (unix socket, or TLS over TCP).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type Conn = Box<dyn Stream>;

/// A connection whose writes, once the daemon has hung up, are dropped instead of
/// failing. A websocket answers the daemon's keepalive ping by writing; LXD closes an
/// exec's sockets right after the last output, and a pong failing then must not hide the
/// output frames still waiting to be read (seen as lost output under load).
pub struct HangupTolerant(pub Conn);

fn hung_up(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), BrokenPipe | ConnectionReset | NotConnected)
}

impl AsyncRead for HangupTolerant {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for HangupTolerant {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.0).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if hung_up(&e) => Poll::Ready(Ok(buf.len())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_flush(cx) {
            Poll::Ready(Err(e)) if hung_up(&e) => Poll::Ready(Ok(())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_shutdown(cx) {
            Poll::Ready(Err(e)) if hung_up(&e) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

/// How long a TCP connection and its TLS handshake may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A remote daemon: its URL and the certificates that make the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `https://host[:port]` (port 8443 if none).
    pub url: String,
    /// The gateway's client certificate (PEM), trusted by the daemon
    /// (`lxc config trust add`).
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
    /// The daemon's own certificate (PEM), pinned: no other is accepted.
    pub server_cert: PathBuf,
}

/// Where the daemon is.
#[derive(Clone)]
pub enum Endpoint {
    /// The local unix socket.
    Unix(PathBuf),
    /// A remote daemon over HTTPS.
    Https {
        /// `host:port`, as dialled.
        authority: String,
        /// The URL, for messages.
        url: String,
        /// The server name sent in the handshake.
        name: ServerName<'static>,
        /// The TLS set-up (client certificate, pinned server certificate).
        tls: tokio_rustls::TlsConnector,
    },
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Endpoint {
    /// The local socket `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Endpoint::Unix(path.into())
    }

    /// A remote daemon; reads and checks the certificates now, so a bad file is said at
    /// start-up rather than on the first session.
    pub fn https(remote: &Remote) -> Result<Self> {
        let (host, port) = split_url(&remote.url)?;
        let name = ServerName::try_from(host.clone())
            .map_err(|_| RuntimeError::Invalid(format!("invalid host in {}", remote.url)))?;
        let config =
            tls::client_config(&remote.client_cert, &remote.client_key, &remote.server_cert)?;
        Ok(Endpoint::Https {
            authority: if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            },
            url: remote.url.clone(),
            name,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Whether the daemon is on this host (reached through its local socket).
    pub fn is_local(&self) -> bool {
        matches!(self, Endpoint::Unix(_))
    }

    /// Where the daemon is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Unix(p) => p.display().to_string(),
            Endpoint::Https { url, .. } => url.clone(),
        }
    }

    /// Opens a connection.
    pub async fn connect(&self) -> Result<Conn> {
        let unreachable = |e: &dyn std::fmt::Display| {
            RuntimeError::Engine(format!(
                "cannot reach the daemon at {} ({e}); is LXD running?",
                self.describe()
            ))
        };
        match self {
            Endpoint::Unix(p) => Ok(Box::new(
                UnixStream::connect(p).await.map_err(|e| unreachable(&e))?,
            )),
            Endpoint::Https {
                authority,
                name,
                tls,
                ..
            } => {
                let handshake = async {
                    let tcp = TcpStream::connect(authority.as_str())
                        .await
                        .map_err(|e| unreachable(&e))?;
                    let _ = tcp.set_nodelay(true);
                    tls.connect(name.clone(), tcp).await.map_err(|e| {
                        RuntimeError::Engine(format!(
                            "TLS with the daemon at {} failed: {}",
                            self.describe(),
                            tls::explain(&e)
                        ))
                    })
                };
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                    .await
                    .map_err(|_| unreachable(&format!("no answer within {CONNECT_TIMEOUT:?}")))??;
                Ok(Box::new(stream))
            }
        }
    }
}

/// `https://host[:port][/]` → (host, port). Parsed here rather than with the `url`
/// crate, which drops an explicit `:443` as https's default, where LXD's is 8443.
fn split_url(url: &str) -> Result<(String, u16)> {
    let bad = |why: &str| RuntimeError::Invalid(format!("LXD url '{url}': {why}"));
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("it must start with https://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(bad("give only https://host or https://host:port"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (h.to_string(), None),
            p => (
                h.to_string(),
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        None => 8443,
        Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
    };
    if host.is_empty() || port == 0 {
        return Err(bad("no host or port"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_host_and_a_port() {
        assert_eq!(
            split_url("https://lxd1.example").unwrap(),
            ("lxd1.example".into(), 8443)
        );
        assert_eq!(
            split_url("https://10.0.0.5:9443/").unwrap(),
            ("10.0.0.5".into(), 9443)
        );
        assert_eq!(
            split_url("https://[fd00::5]:8443").unwrap(),
            ("fd00::5".into(), 8443)
        );
        assert_eq!(
            split_url("https://[fd00::5]").unwrap(),
            ("fd00::5".into(), 8443)
        );
        for bad in [
            "http://lxd1",
            "lxd1:8443",
            "https://",
            "https://lxd1:x",
            "https://lxd1:0",
            "https://lxd1/1.0",
            "https://u@lxd1",
            "https://[fd00::5",
            "https://lxd1:99999",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
