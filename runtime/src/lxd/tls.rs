//! TLS to a remote LXD daemon: the gateway shows its client certificate (which the
//! daemon must trust), and accepts exactly one server certificate, the pinned one — LXD
//! daemons use self-signed certificates, so a CA check would prove nothing.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::error::{Result, RuntimeError};

/// Accepts the pinned certificate and nothing else.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn bad_file(what: &str, path: &Path, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Invalid(format!("LXD {what} {}: {why}", path.display()))
}

/// The certificates in a PEM file (at least one).
fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad_file(what, path, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad_file(what, path, e))?;
    if certs.is_empty() {
        return Err(bad_file(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The client set-up: `client_cert` and `client_key` shown to the daemon, only
/// `server_cert` accepted from it.
pub fn client_config(
    client_cert: &Path,
    client_key: &Path,
    server_cert: &Path,
) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates("client_cert", client_cert)?;
    let key = PrivateKeyDer::from_pem_file(client_key)
        .map_err(|e| bad_file("client_key", client_key, e))?;
    let pinned = certificates("server_cert", server_cert)?.remove(0);
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RuntimeError::Invalid(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            cert: pinned,
            provider,
        }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            bad_file(
                "client_key",
                client_key,
                format!("does not fit client_cert: {e}"),
            )
        })?;
    Ok(config)
}

/// A failed handshake in words an admin can act on.
pub fn explain(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )) => "its certificate is not the one pinned in [runtime.lxd] server_cert".into(),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}
