//! rustls configurations built from PEM files: the TLS listener's and fubar's own clients'.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ClientVerify, SslError};

/// TLS 1.3 first, then 1.2 (for older MQTT clients and devices).
pub(crate) const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// TLS 1.3 only: QUIC (RFC 9001) runs on nothing older.
pub(crate) const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The files and client policy of a TLS listener (settings `ssl.certfile`, `ssl.keyfile`,
/// `ssl.cafile`, `ssl.verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub certfile: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub keyfile: PathBuf,
    /// The CA certificates (PEM) that client certificates must chain to; needed unless
    /// `verify` is [`ClientVerify::None`].
    pub cafile: Option<PathBuf>,
    /// Whether clients are asked for a certificate.
    pub verify: ClientVerify,
}

/// Builds a TLS 1.2 + 1.3 server configuration from `files`, offering `alpn` (may be empty).
///
/// With [`ClientVerify::Optional`] or [`ClientVerify::Required`] client certificates are
/// checked against `files.cafile` (expiry included); `Optional` also lets in clients that send
/// none. Every error names the file at fault.
pub fn server_config(
    files: &ServerTlsFiles,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, SslError> {
    server_config_with_versions(files, alpn, ALL_VERSIONS)
}

/// Builds a TLS 1.3 server configuration for a QUIC endpoint (the monitor's log link, the
/// cluster links) from `files`, offering `alpn`.
///
/// With [`ClientVerify::Optional`] a peer may come without a certificate (and prove itself
/// another way, with the cluster cookie); one it sends must chain to `files.cafile`.
pub fn quic_server_config(
    files: &ServerTlsFiles,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, SslError> {
    server_config_with_versions(files, alpn, TLS13_ONLY)
}

/// Builds a TLS 1.3 client configuration for a QUIC link: trusts the CAs in `cafile`, offers
/// `alpn`, and presents `client_cert` = (certificate file, key file) when given (a node
/// certificate from `fubar ssl new-certs --node NAME`).
pub fn quic_client_config(
    cafile: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, SslError> {
    client_config_with_versions(cafile, client_cert, alpn, TLS13_ONLY)
}

/// [`server_config`] restricted to some protocol versions (tests pin TLS 1.2 with it).
pub(crate) fn server_config_with_versions(
    files: &ServerTlsFiles,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ServerConfig>, SslError> {
    let chain = read_certs(&files.certfile, "certificate")?;
    let key = read_key(&files.keyfile)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|source| SslError::Tls {
            context: "cannot select TLS versions".to_owned(),
            source,
        })?;
    let builder = match files.verify {
        ClientVerify::None => builder.with_no_client_auth(),
        verify @ (ClientVerify::Optional | ClientVerify::Required) => {
            let cafile = files.cafile.as_deref().ok_or(SslError::CaRequired(
                "client certificate verification (optional or required) needs a CA file",
            ))?;
            let roots = read_roots(cafile)?;
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            if verify == ClientVerify::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|source| SslError::Verifier {
                path: cafile.to_owned(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| SslError::Tls {
            context: format!(
                "cannot use certificate {} with key {}",
                files.certfile.display(),
                files.keyfile.display()
            ),
            source,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Builds a TLS 1.2 + 1.3 client configuration that trusts the CAs in `cafile`, offers `alpn`,
/// and presents `client_cert` = (certificate file, key file) when given.
///
/// There are no built-in roots (fubar ships no webpki-roots), so `cafile` is required: `None`
/// is an error.
pub fn client_config(
    cafile: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, SslError> {
    client_config_with_versions(cafile, client_cert, alpn, ALL_VERSIONS)
}

/// [`client_config`] restricted to some protocol versions (tests pin TLS 1.2 with it).
pub(crate) fn client_config_with_versions(
    cafile: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>, SslError> {
    let cafile = cafile.ok_or(SslError::CaRequired(
        "verifying the server needs a CA file (there are no built-in roots)",
    ))?;
    let roots = read_roots(cafile)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|source| SslError::Tls {
            context: "cannot select TLS versions".to_owned(),
            source,
        })?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((certfile, keyfile)) => {
            let chain = read_certs(certfile, "certificate")?;
            let key = read_key(keyfile)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| SslError::Tls {
                    context: format!(
                        "cannot use client certificate {} with key {}",
                        certfile.display(),
                        keyfile.display()
                    ),
                    source,
                })?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The one provider fubar uses, passed explicitly so no process-wide default is needed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; at least one.
pub(crate) fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, SslError> {
    let bytes = std::fs::read(path).map_err(|source| SslError::ReadCert {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, what, &e))?;
    if certs.is_empty() {
        return Err(SslError::BadPem {
            path: path.to_owned(),
            what,
            detail: "no PEM certificate (BEGIN CERTIFICATE) in it".to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, SslError> {
    let bytes = std::fs::read(path).map_err(|source| SslError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => SslError::BadPem {
            path: path.to_owned(),
            what: "key",
            detail: "no PEM private key (BEGIN PRIVATE KEY, RSA or EC) in it".to_owned(),
        },
        e => bad_pem(path, "key", &e),
    })
}

/// The CA certificates of a PEM file, as a root store.
pub(crate) fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, SslError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "CA certificate")? {
        roots.add(cert).map_err(|source| SslError::Tls {
            context: format!("unusable CA certificate in {}", path.display()),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

fn bad_pem(path: &Path, what: &'static str, e: &pem::Error) -> SslError {
    SslError::BadPem {
        path: path.to_owned(),
        what,
        detail: e.to_string(),
    }
}
