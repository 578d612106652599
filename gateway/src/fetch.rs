//! HTTP(S) GETs for the fleet's data (package indexes, `.deb`s, the vulnerability data),
//! on hyper: a bounded size and time per request, https trusting the system's CAs
//! (`/etc/ssl/certs/ca-certificates.crt`), redirects followed only when the caller allows
//! them. What comes back is untrusted: callers check digests and signatures.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{StatusCode, Uri};
use hyper_util::rt::TokioIo;

/// The system's CA bundle (Debian's `ca-certificates`).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not an http(s) URL with a host.
    #[error("{0}: not an http or https URL")]
    Url(String),
    /// The server answered 404.
    #[error("{0}: not found")]
    NotFound(String),
    /// Anything else: unreachable, refused, too large, too slow.
    #[error("{url}: {reason}")]
    Failed {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
}

/// GETs `url`: at most `max` bytes within `within`, following up to `redirects` redirects.
pub async fn get(
    url: &str,
    max: usize,
    within: Duration,
    redirects: u8,
) -> Result<Bytes, FetchError> {
    let mut url = url.to_string();
    for _ in 0..=redirects {
        match tokio::time::timeout(within, once(&url, max)).await {
            Err(_) => return Err(failed(&url, format!("no answer within {within:?}"))),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Answer::Body(b))) => return Ok(b),
            Ok(Ok(Answer::Redirect(to))) => url = to,
        }
    }
    Err(failed(&url, "too many redirects".into()))
}

/// What one request gave.
enum Answer {
    Body(Bytes),
    Redirect(String),
}

fn failed(url: &str, reason: String) -> FetchError {
    FetchError::Failed {
        url: url.to_string(),
        reason,
    }
}

/// One request, no redirect followed.
async fn once(url: &str, max: usize) -> Result<Answer, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_string()))?;
    let (tls, port) = match uri.scheme_str() {
        Some("http") => (false, 80),
        Some("https") => (true, 443),
        _ => return Err(FetchError::Url(url.to_string())),
    };
    let host = uri.host().ok_or_else(|| FetchError::Url(url.to_string()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(port);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| failed(url, format!("cannot connect: {e}")))?;
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "gatehouse-fleet")
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed(url, e.to_string()))?;
    let response = if tls {
        let connector = tokio_rustls::TlsConnector::from(tls_config().map_err(|e| failed(url, e))?);
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| FetchError::Url(url.to_string()))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| failed(url, format!("TLS: {e}")))?;
        send(url, TokioIo::new(stream), request).await?
    } else {
        send(url, TokioIo::new(tcp), request).await?
    };
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
            .ok_or_else(|| failed(url, format!("{status} without an absolute Location")))?;
        return Ok(Answer::Redirect(to.to_string()));
    }
    if status == StatusCode::NOT_FOUND {
        return Err(FetchError::NotFound(url.to_string()));
    }
    if !status.is_success() {
        return Err(failed(url, format!("the server answered {status}")));
    }
    let body = Limited::new(response.into_body(), max)
        .collect()
        .await
        .map_err(|e| failed(url, format!("{e} (larger than {max} bytes?)")))?;
    Ok(Answer::Body(body.to_bytes()))
}

/// Sends one request over a fresh HTTP/1 connection.
async fn send<S>(
    url: &str,
    io: TokioIo<S>,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, FetchError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| failed(url, e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| failed(url, e.to_string()))
}

/// TLS settings trusting the system's CAs (read once).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(CA_BUNDLE)
                .map_err(|e| format!("cannot read {CA_BUNDLE}: {e}"))?;
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}
