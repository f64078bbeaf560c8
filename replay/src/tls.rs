//! TLS to the target (`--tls`), with rustls.
//!
//! Modes follow the MySQL client's `--ssl-mode`: `off`; `prefer` (TLS when the server offers
//! it, certificate not checked); `require` (TLS or refuse, certificate not checked);
//! `verify-ca` (the chain must lead to a trusted CA: `--tls-ca FILE`, else the public web
//! roots); `verify-identity` (also the certificate must name the host of `--target`).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    #[default]
    Off,
    Prefer,
    Require,
    VerifyCa,
    VerifyIdentity,
}

/// How sessions talk TLS to the target; built once, shared by every session.
#[derive(Clone, Default)]
pub struct Tls {
    mode: TlsMode,
    connector: Option<TlsConnector>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tls({:?})", self.mode)
    }
}

impl Tls {
    /// `ca`: PEM file of the CA certificates to trust (verify modes).
    pub fn new(mode: TlsMode, ca: Option<&Path>) -> Result<Self, String> {
        if mode == TlsMode::Off {
            return Ok(Self::default());
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read --tls-ca {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("--tls-ca {}: no certificate in it", path.display()));
                }
                for c in certs {
                    roots.add(c).map_err(|e| {
                        format!("--tls-ca {}: unusable certificate: {e}", path.display())
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let verifier = Arc::new(Verifier {
            mode,
            webpki,
            provider: provider.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            mode,
            connector: Some(TlsConnector::from(Arc::new(config))),
        })
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Runs the TLS handshake on `tcp` (after the SSLRequest packet) for server `host`.
    pub(crate) async fn wrap(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> io::Result<TlsStream<TcpStream>> {
        let Some(c) = &self.connector else {
            return Err(io::Error::other("TLS is off"));
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::other(format!("{host:?} is not a TLS server name: {e}")))?;
        c.connect(name, tcp).await
    }
}

/// The certificate check of each mode; handshake signatures are always verified.
#[derive(Debug)]
struct Verifier {
    mode: TlsMode,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.mode {
            TlsMode::Off | TlsMode::Prefer | TlsMode::Require => {
                Ok(ServerCertVerified::assertion())
            }
            TlsMode::VerifyIdentity => {
                self.webpki
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            TlsMode::VerifyCa => match self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp,
                now,
            ) {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
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
