//! The cluster port's TLS: node certificates (marked as such), the identity a node makes for
//! itself on first start, and the two ways a member trusts another.
//!
//! - **Cookie** ([`ClusterTrust::Cookie`]): every node has a self-signed identity it made
//!   itself. The TLS layer accepts any certificate (it still checks the handshake
//!   signatures, so the session keys belong to whoever holds the certificate's key); who is a
//!   member is decided above TLS, by the mutual cookie proof bound to the session's exporter.
//!   A certificate therefore grants nothing in this mode, whoever signed it.
//! - **Own CA** ([`ClusterTrust::Ca`]): the operator's cluster CA (`cluster.cafile`, never
//!   the MQTT client CA). The TLS layer checks chains against it, and only node certificates
//!   (those carrying [`NODE_EKU`]) count as members; a device certificate of the same CA is
//!   a [`CertKind::Other`] and is refused above TLS.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName as TlsDn,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

use crate::certs::{check_host_pub, write_secret_and_public};
use crate::config::{provider, read_certs, read_key, read_roots, TLS13_ONLY};
use crate::SslError;

/// The extended key usage that marks a node certificate (`fubar ssl new-certs --node`, or a
/// node's self-made identity): OID 2.25.7976541819552169118, an arc under the UUID-derived
/// root (X.667), so no registry is needed and no other issuer uses it.
pub const NODE_EKU: &[u64] = &[2, 25, 7_976_541_819_552_169_118];

/// Validity of a self-made node identity, in days (100 years: it is replaced by deleting it,
/// never renewed, and nothing trusts it but the cookie proof).
const SELF_MADE_DAYS: i64 = 36_500;

/// File names of a self-made identity in its directory.
const SELF_CERT: &str = "node.pem";
const SELF_KEY: &str = "node.key.pem";

/// What a certificate stands for on the cluster port.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertKind {
    /// A node certificate (it carries [`NODE_EKU`]): the node named by its CN.
    Node(String),
    /// An operator certificate (`fubar ssl new-certs --operator`): the person named by its
    /// CN, with the role its marker grants ([`crate::identity`]); admin commands only.
    Operator {
        /// The operator's name (the CN).
        name: String,
        /// What it may do.
        role: crate::Role,
    },
    /// Anything else: a device (MQTT client) or server certificate, or one that does not
    /// parse. It never stands for a member.
    Other,
}

/// Classifies a DER certificate for the cluster port (no chain check: callers trust it only
/// if the TLS layer checked it against the cluster CA).
pub fn cert_kind(der: &[u8]) -> CertKind {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return CertKind::Other;
    };
    let other_ekus = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|eku| eku.value.other.clone())
        .unwrap_or_default();
    let marked = other_ekus.iter().any(is_node_eku);
    // A role marker on a node certificate (or two roles) makes it nothing at all.
    let operator = crate::identity::marked_role(&other_ekus);
    let any_role = crate::identity::marks_a_role(&other_ekus);
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    match (marked, any_role, operator, cn) {
        (true, false, _, Some(cn)) => CertKind::Node(cn),
        (false, true, Some(role), Some(name)) => CertKind::Operator { name, role },
        _ => CertKind::Other,
    }
}

fn is_node_eku(oid: &x509_parser::der_parser::oid::Oid<'_>) -> bool {
    oid.iter()
        .is_some_and(|arcs| arcs.eq(NODE_EKU.iter().copied()))
}

/// The certificate and key a node presents on the cluster port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Certificate chain (PEM), leaf first.
    pub certfile: PathBuf,
    /// Private key (PEM).
    pub keyfile: PathBuf,
}

/// How a node decides that the other end of a cluster link is a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTrust {
    /// Certificates grant nothing: the mutual cookie proof decides.
    Cookie,
    /// Node certificates of this CA (PEM file) are members; so is a peer proving the cookie.
    Ca(PathBuf),
}

impl fmt::Display for ClusterTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cookie => f.write_str("cookie"),
            Self::Ca(path) => write!(f, "CA {}", path.display()),
        }
    }
}

/// The node's self-made cluster identity in `dir` (`node.pem`, `node.key.pem` 0600), made
/// now if absent: a self-signed node certificate whose CN is `node` (`NAME@HOST`). Returns it
/// and whether it was just made. An existing identity made for another name is refused.
pub fn self_made_identity(dir: &Path, node: &str) -> Result<(NodeIdentity, bool), SslError> {
    let identity = NodeIdentity {
        certfile: dir.join(SELF_CERT),
        keyfile: dir.join(SELF_KEY),
    };
    if identity.certfile.exists() && identity.keyfile.exists() {
        let chain = read_certs(&identity.certfile, "certificate")?;
        return match chain.first().map(|c| cert_kind(c)) {
            Some(CertKind::Node(cn)) if cn == node => Ok((identity, false)),
            _ => Err(SslError::BadPem {
                path: identity.certfile.clone(),
                what: "node certificate",
                detail: format!("not a node certificate for {node}; delete it to make a new one"),
            }),
        };
    }
    if node.is_empty() || node.chars().any(char::is_control) {
        return Err(SslError::BadName {
            kind: "node",
            name: node.to_owned(),
            reason: "empty, or holds control characters".to_owned(),
        });
    }
    let what = format!("self-made node certificate {node}");
    let key = KeyPair::generate().map_err(|e| generate(&what, e))?;
    let now = OffsetDateTime::now_utc();
    // The host as a SAN when it can be one (nothing checks it in the cookie mode).
    let host = node
        .split_once('@')
        .map(|(_, h)| h.to_owned())
        .filter(|h| check_host_pub(h).is_ok());
    let mut params = CertificateParams::new(host.into_iter().collect::<Vec<_>>())
        .map_err(|e| generate(&what, e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    dn.push(DnType::OrganizationName, "fubar");
    params.distinguished_name = dn;
    params.extended_key_usages = node_usages();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(SELF_MADE_DAYS);
    let cert = params.self_signed(&key).map_err(|e| generate(&what, e))?;
    fs::create_dir_all(dir).map_err(|source| SslError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write_secret_and_public(
        (&identity.keyfile, key.serialize_pem().into_bytes()),
        (&identity.certfile, cert.pem().into_bytes()),
    )?;
    Ok((identity, true))
}

/// The extended usages of a node certificate: TLS server and client, and the node marker.
pub(crate) fn node_usages() -> Vec<ExtendedKeyUsagePurpose> {
    vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::Other(NODE_EKU.to_vec()),
    ]
}

fn generate(what: &str, source: rcgen::Error) -> SslError {
    SslError::Generate {
        what: what.to_owned(),
        source,
    }
}

/// The cluster port's TLS 1.3 server configuration: presents `identity`, offering `alpn`;
/// asks every peer for a certificate but lets in those without one (they prove the cookie).
/// With [`ClusterTrust::Ca`] a certificate sent must chain to that CA; with
/// [`ClusterTrust::Cookie`] any is taken (and grants nothing).
pub fn cluster_server_config(
    identity: &NodeIdentity,
    trust: &ClusterTrust,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, SslError> {
    let chain = read_certs(&identity.certfile, "certificate")?;
    let key = read_key(&identity.keyfile)?;
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = match trust {
        ClusterTrust::Cookie => Arc::new(AnyCertificate(provider.clone())),
        ClusterTrust::Ca(cafile) => {
            WebPkiClientVerifier::builder_with_provider(read_roots(cafile)?, provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|source| SslError::Verifier {
                    path: cafile.clone(),
                    source,
                })?
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(TLS13_ONLY)
        .map_err(|source| tls("cannot select TLS versions".to_owned(), source))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| {
            tls(
                format!(
                    "cannot use certificate {} with key {}",
                    identity.certfile.display(),
                    identity.keyfile.display()
                ),
                source,
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The TLS 1.3 client configuration of a cluster link (peer, log or admin), offering `alpn`
/// and presenting `identity` if given. With [`ClusterTrust::Ca`] the server must show a node
/// certificate of that CA naming the host dialed; with [`ClusterTrust::Cookie`] any
/// certificate is taken, and the caller must insist on the server's cookie proof.
pub fn cluster_client_config(
    identity: Option<&NodeIdentity>,
    trust: &ClusterTrust,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, SslError> {
    client_config(identity, trust, alpn, None)
}

/// [`cluster_client_config`] for dialing one node: with [`ClusterTrust::Ca`] the server's
/// node certificate must also name that node (its CN one of `names`, e.g. `n1@host1`), so a
/// node certificate of the same CA for another node is refused (the host alone does not tell
/// two nodes of one host apart, nor a node that answers for another's address).
pub fn cluster_client_config_for_node(
    identity: Option<&NodeIdentity>,
    trust: &ClusterTrust,
    alpn: &[&[u8]],
    names: &[String],
) -> Result<Arc<ClientConfig>, SslError> {
    client_config(identity, trust, alpn, Some(names.to_vec()))
}

fn client_config(
    identity: Option<&NodeIdentity>,
    trust: &ClusterTrust,
    alpn: &[&[u8]],
    names: Option<Vec<String>>,
) -> Result<Arc<ClientConfig>, SslError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        ClusterTrust::Cookie => Arc::new(AnyCertificate(provider.clone())),
        ClusterTrust::Ca(cafile) => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(read_roots(cafile)?, provider.clone())
                    .build()
                    .map_err(|e| SslError::BadPem {
                        path: cafile.clone(),
                        what: "CA certificate",
                        detail: e.to_string(),
                    })?;
            Arc::new(NodeServer { inner, names })
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(TLS13_ONLY)
        .map_err(|source| tls("cannot select TLS versions".to_owned(), source))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = read_certs(&id.certfile, "certificate")?;
            let key = read_key(&id.keyfile)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| {
                    tls(
                        format!(
                            "cannot use certificate {} with key {}",
                            id.certfile.display(),
                            id.keyfile.display()
                        ),
                        source,
                    )
                })?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn tls(context: String, source: rustls::Error) -> SslError {
    SslError::Tls { context, source }
}

/// Takes any certificate but checks the handshake signatures made with its key: for the
/// cookie mode, where membership is proven above TLS.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl AnyCertificate {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[TlsDn] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The CA's verdict on a server, and then: it must be a node certificate (an MQTT server
/// certificate of the same CA is not a member), naming the node dialed when `names` says
/// which.
#[derive(Debug)]
struct NodeServer {
    inner: Arc<WebPkiServerVerifier>,
    /// The CNs the server's node certificate may carry; `None`: any node of the CA.
    names: Option<Vec<String>>,
}

/// At most 64 characters of `text`, anything but printable ASCII replaced by `?`.
fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl ServerCertVerifier for NodeServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match cert_kind(end_entity) {
            CertKind::Node(cn) => match &self.names {
                // Said as "not valid for name HOST; certificate is only valid for node
                // "n1@h", not for the node dialed (n2@h)"; the CN comes from the server.
                Some(names) if !names.contains(&cn) => Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext {
                        expected: server_name.to_owned(),
                        presented: vec![format!(
                            "node {:?}, not for the node dialed ({})",
                            printable(&cn),
                            names.first().map_or("", String::as_str)
                        )],
                    },
                )),
                _ => Ok(verified),
            },
            // An operator's certificate never serves: it is a client's.
            CertKind::Operator { .. } | CertKind::Other => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
