//! Certificates made by [`new_certs`], used for real handshakes over loopback TCP.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ProtocolVersion, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{client_config_with_versions, server_config_with_versions, ALL_VERSIONS};
use crate::{
    client_config, install_crypto_provider, new_certs, peer_common_name, quic_client_config,
    quic_server_config, server_config, ClientVerify, NewCerts, ServerTlsFiles, SslError,
};

const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn request(dir: &Path) -> NewCerts {
    NewCerts {
        dir: dir.to_owned(),
        ..NewCerts::default()
    }
}

fn names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn server_files(dir: &Path, verify: ClientVerify) -> ServerTlsFiles {
    ServerTlsFiles {
        certfile: dir.join("cert.pem"),
        keyfile: dir.join("key.pem"),
        cafile: Some(dir.join("cacert.pem")),
        verify,
    }
}

/// The parsed certificate of a PEM file.
fn parse_pem_cert(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

#[test]
fn new_certs_writes_every_file_with_private_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ssl");
    let files = new_certs(&NewCerts {
        clients: vec!["alice".into(), "alice".into()],
        nodes: vec!["n1@host1.example".into(), "n2".into()],
        ..request(&dir)
    })
    .unwrap();
    assert_eq!(
        names(&files),
        [
            "cacert.pem",
            "cacert.cer",
            "cakey.pem",
            "cert.pem",
            "key.pem",
            "client-alice.pem",
            "client-alice.key.pem",
            "node-n1@host1.example.pem",
            "node-n1@host1.example.key.pem",
            "node-n2.pem",
            "node-n2.key.pem",
        ]
    );
    for file in &files {
        assert!(
            file.starts_with(&dir) && file.is_file(),
            "{}",
            file.display()
        );
        #[cfg(unix)]
        {
            let name = file.file_name().unwrap().to_string_lossy();
            let want = if name.contains("key") { 0o600 } else { 0o644 };
            assert_eq!(mode(file), want, "{name}");
        }
    }
    // No temporary files are left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), files.len());

    // cacert.cer is the DER of cacert.pem.
    assert_eq!(
        fs::read(dir.join("cacert.cer")).unwrap(),
        parse_pem_cert(&dir.join("cacert.pem"))
    );

    // Server: CN = first host, SANs localhost (DNS) and 127.0.0.1 (IP), serverAuth.
    use x509_parser::extensions::GeneralName;
    let der = parse_pem_cert(&dir.join("cert.pem"));
    assert_eq!(peer_common_name(&der).as_deref(), Some("localhost"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        [
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&[127, 0, 0, 1])
        ]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let validity = cert.validity().time_to_expiration().unwrap();
    let days = validity.whole_days();
    assert!((824..=825).contains(&days), "{days}");

    // Client: CN = NAME, clientAuth.
    let der = parse_pem_cert(&dir.join("client-alice.pem"));
    assert_eq!(peer_common_name(&der).as_deref(), Some("alice"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);

    // Node: CN = NAME, SAN = HOST, both usages.
    let der = parse_pem_cert(&dir.join("node-n1@host1.example.pem"));
    assert_eq!(peer_common_name(&der).as_deref(), Some("n1@host1.example"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names, [GeneralName::DNSName("host1.example")]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && eku.server_auth);

    // CA: 10 years, a CA.
    let der = parse_pem_cert(&dir.join("cacert.pem"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(cert.is_ca());
    let days = cert.validity().time_to_expiration().unwrap().whole_days();
    assert!((3649..=3650).contains(&days), "{days}");
}

#[test]
fn later_runs_reuse_the_ca_and_overwrite_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    new_certs(&NewCerts {
        hosts: vec!["broker.example".into(), "10.1.2.3".into()],
        ..request(dir)
    })
    .unwrap();
    let ca = fs::read(dir.join("cacert.pem")).unwrap();
    let server = fs::read(dir.join("cert.pem")).unwrap();
    assert_eq!(
        peer_common_name(&parse_pem_cert(&dir.join("cert.pem"))).as_deref(),
        Some("broker.example")
    );

    // A bare second run would overwrite the server certificate: refused, naming it.
    let err = new_certs(&request(dir)).unwrap_err();
    assert!(
        matches!(&err, SslError::Exists { path } if path == &dir.join("cert.pem")),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("cert.pem already exists") && msg.contains("--force"),
        "{msg}"
    );

    // Adding a client signs it with the same CA and leaves everything else alone.
    let files = new_certs(&NewCerts {
        clients: vec!["bob".into()],
        ..request(dir)
    })
    .unwrap();
    assert_eq!(names(&files), ["client-bob.pem", "client-bob.key.pem"]);
    assert_eq!(fs::read(dir.join("cacert.pem")).unwrap(), ca);
    assert_eq!(fs::read(dir.join("cert.pem")).unwrap(), server);
    let bob = parse_pem_cert(&dir.join("client-bob.pem"));
    let (_, bob) = x509_parser::parse_x509_certificate(&bob).unwrap();
    let ca_der = parse_pem_cert(&dir.join("cacert.pem"));
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(bob.issuer(), ca_cert.subject());
    bob.verify_signature(Some(ca_cert.public_key())).unwrap();

    // The same client again: refused, naming its file.
    let err = new_certs(&NewCerts {
        clients: vec!["bob".into()],
        ..request(dir)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("client-bob.pem"), "{err}");

    // Force regenerates everything, CA included.
    let files = new_certs(&NewCerts {
        force: true,
        clients: vec!["bob".into()],
        ..request(dir)
    })
    .unwrap();
    assert_eq!(files.len(), 7);
    assert_ne!(fs::read(dir.join("cacert.pem")).unwrap(), ca);
    assert_ne!(fs::read(dir.join("cert.pem")).unwrap(), server);
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("cakey.pem")), 0o600);
}

#[test]
fn a_ca_without_its_key_is_not_reused_or_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    new_certs(&request(dir)).unwrap();
    fs::remove_file(dir.join("cakey.pem")).unwrap();
    let err = new_certs(&NewCerts {
        clients: vec!["c".into()],
        ..request(dir)
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cacert.pem") && err.contains("cakey.pem"),
        "{err}"
    );
}

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ssl");
    for req in [
        NewCerts {
            clients: vec!["../evil".into()],
            ..request(&dir)
        },
        NewCerts {
            nodes: vec!["n1@bad host".into()],
            ..request(&dir)
        },
        NewCerts {
            hosts: vec!["not a host".into()],
            ..request(&dir)
        },
        NewCerts {
            clients: vec![String::new()],
            ..request(&dir)
        },
    ] {
        let err = new_certs(&req).unwrap_err();
        assert!(matches!(err, SslError::BadName { .. }), "{err}");
    }
    for days in [0, u32::MAX] {
        let err = new_certs(&NewCerts {
            days,
            ..request(&dir)
        })
        .unwrap_err();
        assert!(matches!(err, SslError::BadDays(d) if d == days), "{err}");
    }
    assert!(!dir.exists());
}

/// What the server saw of a connection that worked.
#[derive(Debug)]
struct ServerView {
    /// The client certificate's CN, by `peer_common_name`.
    cn: Option<String>,
    version: Option<ProtocolVersion>,
    alpn: Option<Vec<u8>>,
}

/// What a handshake and one round trip (client "ping", server "pong") gave on each side.
struct Outcome {
    server: Result<ServerView, String>,
    client: Result<(), String>,
}

async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let cn = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| peer_common_name(cert));
        let version = conn.protocol_version();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let _ = tls.shutdown().await;
        Ok(ServerView { cn, version, alpn })
    });
    let name = ServerName::try_from(name).unwrap().to_owned();
    let client = async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if &buf != b"pong" {
            return Err(format!("got {buf:?}"));
        }
        Ok(())
    };
    let limit = Duration::from_secs(10);
    let client = tokio::time::timeout(limit, client)
        .await
        .expect("client stalled");
    let server = tokio::time::timeout(limit, server)
        .await
        .expect("server stalled")
        .unwrap();
    Outcome { server, client }
}

/// A directory with a CA, the server certificate and client `alice`.
fn certs_with_alice() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    new_certs(&NewCerts {
        clients: vec!["alice".into()],
        ..request(tmp.path())
    })
    .unwrap();
    tmp
}

fn client_as(
    dir: &Path,
    who: Option<(&Path, &Path)>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    client_config_with_versions(Some(&dir.join("cacert.pem")), who, &[b"mqtt"], versions).unwrap()
}

fn alice(dir: &Path) -> (PathBuf, PathBuf) {
    (
        dir.join("client-alice.pem"),
        dir.join("client-alice.key.pem"),
    )
}

#[tokio::test]
async fn tls13_and_tls12_without_client_certificates() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let server = server_config(&server_files(dir, ClientVerify::None), &[b"mqtt"]).unwrap();
    for (versions, want) in [
        (TLS13, ProtocolVersion::TLSv1_3),
        (TLS12, ProtocolVersion::TLSv1_2),
    ] {
        // Both names of the server certificate work: the DNS SAN and the IP SAN.
        for name in ["localhost", "127.0.0.1"] {
            let out = handshake(server.clone(), client_as(dir, None, versions), name).await;
            out.client.unwrap();
            let ServerView { cn, version, alpn } = out.server.unwrap();
            assert_eq!(cn, None);
            assert_eq!(version, Some(want));
            assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]));
        }
    }
    // The public client_config negotiates TLS 1.3.
    let client = client_config(Some(&dir.join("cacert.pem")), None, &[]).unwrap();
    let out = handshake(server.clone(), client, "localhost").await;
    assert_eq!(out.server.unwrap().version, Some(ProtocolVersion::TLSv1_3));
    // A name the certificate does not carry is refused by the client.
    let out = handshake(server, client_as(dir, None, ALL_VERSIONS), "other.example").await;
    assert!(out.client.is_err());
}

#[tokio::test]
async fn required_client_certificate() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let (cert, key) = alice(dir);
    let server = server_config(&server_files(dir, ClientVerify::Required), &[]).unwrap();
    for versions in [TLS13, TLS12] {
        let out = handshake(server.clone(), client_as(dir, None, versions), "localhost").await;
        let err = out.server.unwrap_err();
        assert!(err.contains("no certificates"), "{err}");
        assert!(out.client.is_err());

        let who = Some((cert.as_path(), key.as_path()));
        let out = handshake(server.clone(), client_as(dir, who, versions), "localhost").await;
        out.client.unwrap();
        assert_eq!(out.server.unwrap().cn.as_deref(), Some("alice"));
    }
}

#[tokio::test]
async fn optional_client_certificate() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let (cert, key) = alice(dir);
    let server = server_config(&server_files(dir, ClientVerify::Optional), &[]).unwrap();
    for versions in [TLS13, TLS12] {
        let out = handshake(server.clone(), client_as(dir, None, versions), "localhost").await;
        out.client.unwrap();
        assert_eq!(out.server.unwrap().cn, None);

        let who = Some((cert.as_path(), key.as_path()));
        let out = handshake(server.clone(), client_as(dir, who, versions), "localhost").await;
        out.client.unwrap();
        assert_eq!(out.server.unwrap().cn.as_deref(), Some("alice"));
    }
}

#[tokio::test]
async fn client_certificate_of_another_ca_is_refused() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let other = tempfile::tempdir().unwrap();
    new_certs(&NewCerts {
        clients: vec!["mallory".into()],
        ..request(other.path())
    })
    .unwrap();
    let cert = other.path().join("client-mallory.pem");
    let key = other.path().join("client-mallory.key.pem");
    for verify in [ClientVerify::Optional, ClientVerify::Required] {
        let server = server_config(&server_files(dir, verify), &[]).unwrap();
        for versions in [TLS13, TLS12] {
            let who = Some((cert.as_path(), key.as_path()));
            let out = handshake(server.clone(), client_as(dir, who, versions), "localhost").await;
            let err = out.server.unwrap_err();
            assert!(err.contains("invalid peer certificate"), "{err}");
            assert!(out.client.is_err());
        }
    }
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    // Signed by the right CA, but valid only in 2020.
    let ca_key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join("cakey.pem")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &fs::read_to_string(dir.join("cacert.pem")).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "old");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_path = dir.join("client-old.pem");
    let key_path = dir.join("client-old.key.pem");
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();

    let server = server_config(&server_files(dir, ClientVerify::Required), &[]).unwrap();
    for versions in [TLS13, TLS12] {
        let who = Some((cert_path.as_path(), key_path.as_path()));
        let out = handshake(server.clone(), client_as(dir, who, versions), "localhost").await;
        let err = out.server.unwrap_err();
        assert!(err.contains("expired"), "{err}");
        assert!(out.client.is_err());
    }
}

#[tokio::test]
async fn tls12_only_server_still_serves_the_public_client() {
    // server_config's TLS 1.2 path, seen from a client that offers both.
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let server =
        server_config_with_versions(&server_files(dir, ClientVerify::None), &[], TLS12).unwrap();
    let client = client_config(Some(&dir.join("cacert.pem")), None, &[]).unwrap();
    let out = handshake(server, client, "localhost").await;
    out.client.unwrap();
    assert_eq!(out.server.unwrap().version, Some(ProtocolVersion::TLSv1_2));
}

#[test]
fn missing_files_are_named() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let missing = dir.join("nope.pem");
    let cases = [
        (
            ServerTlsFiles {
                certfile: missing.clone(),
                ..server_files(dir, ClientVerify::None)
            },
            "cannot read certificate file",
        ),
        (
            ServerTlsFiles {
                keyfile: missing.clone(),
                ..server_files(dir, ClientVerify::None)
            },
            "cannot read key file",
        ),
        (
            ServerTlsFiles {
                cafile: Some(missing.clone()),
                ..server_files(dir, ClientVerify::Required)
            },
            "cannot read certificate file",
        ),
    ];
    for (files, want) in cases {
        let err = server_config(&files, &[]).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
        assert!(err.contains(&*missing.to_string_lossy()), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }

    // A CA file is needed to check client certificates, not without.
    let files = ServerTlsFiles {
        cafile: None,
        ..server_files(dir, ClientVerify::Optional)
    };
    let err = server_config(&files, &[]).unwrap_err();
    assert!(matches!(err, SslError::CaRequired(_)), "{err}");
    let files = ServerTlsFiles {
        cafile: Some(missing.clone()),
        ..server_files(dir, ClientVerify::None)
    };
    server_config(&files, &[]).unwrap();

    // Clients: no built-in roots, so no CA file is an error; missing files are named.
    let err = client_config(None, None, &[]).unwrap_err();
    assert!(matches!(err, SslError::CaRequired(_)), "{err}");
    let err = client_config(Some(&missing), None, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&*missing.to_string_lossy()), "{err}");
    let ca = dir.join("cacert.pem");
    let (cert, _) = alice(dir);
    let err = client_config(Some(&ca), Some((&cert, &missing)), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read key file") && err.contains("nope.pem"),
        "{err}"
    );
}

#[test]
fn garbage_and_mismatched_files_are_explained() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let garbage = dir.join("garbage.pem");
    fs::write(&garbage, "this is not PEM\n\x01\x02").unwrap();
    let broken = dir.join("broken.pem");
    fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let g = garbage.to_string_lossy().into_owned();

    let err = server_config(
        &ServerTlsFiles {
            certfile: garbage.clone(),
            ..server_files(dir, ClientVerify::None)
        },
        &[],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        format!("invalid certificate file {g}: no PEM certificate (BEGIN CERTIFICATE) in it")
    );

    let err = server_config(
        &ServerTlsFiles {
            keyfile: garbage.clone(),
            ..server_files(dir, ClientVerify::None)
        },
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("invalid key file {g}: no PEM private key")),
        "{err}"
    );

    let err = server_config(
        &ServerTlsFiles {
            cafile: Some(garbage.clone()),
            ..server_files(dir, ClientVerify::Required)
        },
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("invalid CA certificate file {g}")),
        "{err}"
    );

    let err = server_config(
        &ServerTlsFiles {
            certfile: broken.clone(),
            ..server_files(dir, ClientVerify::None)
        },
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("broken.pem") && err.contains("base64"),
        "{err}"
    );

    // A key that is not the certificate's.
    let err = server_config(
        &ServerTlsFiles {
            keyfile: dir.join("client-alice.key.pem"),
            ..server_files(dir, ClientVerify::None)
        },
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cert.pem") && err.contains("client-alice.key.pem"),
        "{err}"
    );
}

#[test]
fn peer_common_name_of_garbage_is_none() {
    assert_eq!(peer_common_name(b"not a certificate"), None);
    assert_eq!(peer_common_name(&[]), None);
}

#[test]
fn installing_the_provider_twice_is_harmless() {
    install_crypto_provider();
    install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

#[tokio::test]
async fn quic_configs_speak_tls13_only() {
    let tmp = certs_with_alice();
    let dir = tmp.path();
    let server = quic_server_config(
        &server_files(dir, ClientVerify::Optional),
        &[b"fubar-log/1"],
    )
    .unwrap();
    assert_eq!(server.alpn_protocols, [b"fubar-log/1".to_vec()]);
    let out = handshake(server.clone(), client_as(dir, None, TLS12), "localhost").await;
    assert!(out.client.is_err(), "a TLS 1.2 client is refused");
    let (cert, key) = alice(dir);
    let client = quic_client_config(
        Some(&dir.join("cacert.pem")),
        Some((&cert, &key)),
        &[b"fubar-log/1"],
    )
    .unwrap();
    let out = handshake(server, client, "localhost").await;
    out.client.unwrap();
    let view = out.server.unwrap();
    assert_eq!(view.version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(view.cn.as_deref(), Some("alice"));
}

#[test]
fn node_certificates_are_marked_and_client_and_server_certificates_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    new_certs(&NewCerts {
        clients: vec!["n1@h".into()],
        nodes: vec!["n1@h".into()],
        ..request(dir)
    })
    .unwrap();
    let kind = |f: &str| crate::cert_kind(&parse_pem_cert(&dir.join(f)));
    assert_eq!(kind("node-n1@h.pem"), crate::CertKind::Node("n1@h".into()));
    // A device certificate with a member's name is still a device certificate.
    assert_eq!(kind("client-n1@h.pem"), crate::CertKind::Other);
    assert_eq!(kind("cert.pem"), crate::CertKind::Other);
    assert_eq!(kind("cacert.pem"), crate::CertKind::Other);
    assert_eq!(crate::cert_kind(b"garbage"), crate::CertKind::Other);
}

#[test]
fn a_self_made_identity_is_made_once_0600_and_only_for_its_own_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1@h").join("cluster-tls");
    let (id, made) = crate::self_made_identity(&dir, "n1@h").unwrap();
    assert!(made);
    #[cfg(unix)]
    assert_eq!(mode(&id.keyfile), 0o600);
    assert_eq!(
        crate::cert_kind(&parse_pem_cert(&id.certfile)),
        crate::CertKind::Node("n1@h".into())
    );
    let key = fs::read(&id.keyfile).unwrap();
    let (again, made) = crate::self_made_identity(&dir, "n1@h").unwrap();
    assert!(!made, "reused");
    assert_eq!(again, id);
    assert_eq!(fs::read(&id.keyfile).unwrap(), key);
    let err = crate::self_made_identity(&dir, "n2@h").unwrap_err();
    assert!(
        err.to_string().contains("not a node certificate for n2@h"),
        "{err}"
    );
}

#[test]
fn new_certs_refuses_a_source_folder_and_defaults_under_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("Cargo.toml"), "[package]\n").unwrap();
    let err = new_certs(&request(tmp.path())).unwrap_err();
    assert!(err.to_string().contains("Cargo.toml"), "{err}");
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "nothing written"
    );
    assert_eq!(NewCerts::default().dir, PathBuf::from("data/ssl"));
}

#[tokio::test]
async fn cluster_tls_takes_any_certificate_with_the_cookie_and_only_its_ca_otherwise() {
    use crate::{cluster_client_config, cluster_server_config, ClusterTrust, NodeIdentity};
    let tmp = tempfile::tempdir().unwrap();
    let (server_id, _) = crate::self_made_identity(&tmp.path().join("s"), "s@localhost").unwrap();
    let (client_id, _) = crate::self_made_identity(&tmp.path().join("c"), "c@localhost").unwrap();
    let alpn: &[&[u8]] = &[b"fubar-cluster/2"];
    // Cookie mode: self-signed certificates on both sides pass the TLS layer.
    let server = cluster_server_config(&server_id, &ClusterTrust::Cookie, alpn).unwrap();
    let client = cluster_client_config(Some(&client_id), &ClusterTrust::Cookie, alpn).unwrap();
    let out = handshake(server.clone(), client, "localhost").await;
    out.client.unwrap();
    assert_eq!(out.server.unwrap().cn.as_deref(), Some("c@localhost"));
    // Own CA: a node certificate of the CA passes; a self-made one, or another CA's, does
    // not; the CA's MQTT server certificate is no member either.
    let ca = tmp.path().join("ca");
    let other = tmp.path().join("other");
    for (dir, node) in [(&ca, "n1@localhost"), (&other, "n2@localhost")] {
        new_certs(&NewCerts {
            nodes: vec![node.into()],
            ..request(dir)
        })
        .unwrap();
    }
    let node = |dir: &Path, n: &str| NodeIdentity {
        certfile: dir.join(format!("node-{n}.pem")),
        keyfile: dir.join(format!("node-{n}.key.pem")),
    };
    let trust = ClusterTrust::Ca(ca.join("cacert.pem"));
    let server = cluster_server_config(&node(&ca, "n1@localhost"), &trust, alpn).unwrap();
    let member = cluster_client_config(Some(&node(&ca, "n1@localhost")), &trust, alpn).unwrap();
    handshake(server.clone(), member.clone(), "localhost")
        .await
        .client
        .unwrap();
    let foreign = cluster_client_config(Some(&node(&other, "n2@localhost")), &trust, alpn).unwrap();
    let out = handshake(server.clone(), foreign, "localhost").await;
    assert!(
        out.server.is_err(),
        "another CA's node certificate is refused"
    );
    let self_made = cluster_client_config(Some(&client_id), &trust, alpn).unwrap();
    assert!(handshake(server, self_made, "localhost")
        .await
        .server
        .is_err());
    let mqtt_server = cluster_server_config(
        &NodeIdentity {
            certfile: ca.join("cert.pem"),
            keyfile: ca.join("key.pem"),
        },
        &trust,
        alpn,
    )
    .unwrap();
    let out = handshake(mqtt_server, member, "localhost").await;
    assert!(
        out.client.is_err(),
        "the MQTT server certificate is no node"
    );
}

#[tokio::test]
async fn a_client_dialing_one_node_refuses_a_node_certificate_of_the_same_ca_for_another() {
    use crate::{
        cluster_client_config_for_node, cluster_server_config, ClusterTrust, NodeIdentity,
    };
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    new_certs(&NewCerts {
        nodes: vec!["n1@localhost".into(), "n2@localhost".into()],
        ..request(&ca)
    })
    .unwrap();
    let node = |n: &str| NodeIdentity {
        certfile: ca.join(format!("node-{n}.pem")),
        keyfile: ca.join(format!("node-{n}.key.pem")),
    };
    let alpn: &[&[u8]] = &[b"fubar-admin/2"];
    let trust = ClusterTrust::Ca(ca.join("cacert.pem"));
    // n2 answers (its certificate is of the CA, for the same host).
    let server = cluster_server_config(&node("n2@localhost"), &trust, alpn).unwrap();
    let dial = |name: &str| {
        cluster_client_config_for_node(None, &trust, alpn, &[name.to_owned()]).unwrap()
    };
    handshake(server.clone(), dial("n2@localhost"), "localhost")
        .await
        .client
        .unwrap();
    let err = handshake(server, dial("n1@localhost"), "localhost")
        .await
        .client
        .unwrap_err();
    assert!(
        err.contains("n2@localhost") && err.contains("n1@localhost"),
        "{err}"
    );
}
