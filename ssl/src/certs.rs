//! Certificates made by fubar itself: a CA, and the server, client and node certificates it
//! signs (what `priv/ssl/ca/new-certs.sh` did with openssl in Erlang fubar).

use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::DnsName;
use time::{Duration, OffsetDateTime};

use crate::SslError;

/// Default validity of server, client and node certificates, in days (the most browsers and
/// Apple platforms accept).
pub const DEFAULT_DAYS: u32 = 825;

/// Longest validity accepted, in days (100 years).
pub(crate) const MAX_DAYS: u32 = 36_500;

/// Validity of a new CA, in days (10 years).
const CA_DAYS: i64 = 3650;

/// Where `fubar ssl new-certs` writes when no folder is given: under the default data
/// directory (ignored by git), never a source folder.
pub const DEFAULT_DIR: &str = "data/ssl";

/// Hosts of the server certificate when none are given.
const DEFAULT_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

const CA_CERT: &str = "cacert.pem";
const CA_CERT_DER: &str = "cacert.cer";
const CA_KEY: &str = "cakey.pem";
const SERVER_KEY: &str = "key.pem";
const SERVER_CERT: &str = "cert.pem";

/// What `fubar ssl new-certs` is asked to make.
///
/// The CA (`cacert.pem`, `cacert.cer` in DER, `cakey.pem`) is made once and reused by later
/// runs to sign more certificates; `force` makes a new one. The server certificate (`cert.pem`,
/// `key.pem`) is made on the first run, and again when `hosts` are given or nothing else is
/// asked for; a run that only adds clients or nodes leaves an existing one alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCerts {
    /// Where the files go (created if missing).
    pub dir: PathBuf,
    /// DNS names and IP addresses of the server certificate; the first is its CN. Empty means
    /// `localhost` and `127.0.0.1`.
    pub hosts: Vec<String>,
    /// Client certificates to make: `client-NAME.pem` and `client-NAME.key.pem`, CN = NAME.
    pub clients: Vec<String>,
    /// Node certificates for the cluster links: `node-NAME.pem` and `node-NAME.key.pem`,
    /// CN = NAME, and the HOST of NAME@HOST as SAN.
    pub nodes: Vec<String>,
    /// Operator certificates for admin commands on the cluster port: `operator-NAME.pem` and
    /// `operator-NAME.key.pem`, CN = NAME, marked with `operator_role`.
    pub operators: Vec<String>,
    /// The role of every operator certificate of this run.
    pub operator_role: crate::Role,
    /// Overwrite existing files, CA included (which invalidates certificates it signed).
    pub force: bool,
    /// Validity of the server, client and node certificates, in days from now.
    pub days: u32,
}

impl Default for NewCerts {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_DIR),
            hosts: Vec::new(),
            clients: Vec::new(),
            nodes: Vec::new(),
            operators: Vec::new(),
            // The least a certificate can grant: `admin` is asked for by name.
            operator_role: crate::Role::Read,
            force: false,
            days: DEFAULT_DAYS,
        }
    }
}

/// One file to write.
struct Output {
    path: PathBuf,
    contents: Vec<u8>,
    /// A private key: created with mode 0600.
    secret: bool,
}

/// Makes the certificates `req` asks for and returns the files written, in the order written.
///
/// Nothing is written if any file in the way exists (without `force`) or a name is invalid.
pub fn new_certs(req: &NewCerts) -> Result<Vec<PathBuf>, SslError> {
    let dir = &req.dir;
    // A checkout's crate folder (the `ssl/` crate above all) is no place for private keys.
    if dir.join("Cargo.toml").exists() {
        return Err(SslError::SourceFolder { path: dir.clone() });
    }
    if !(1..=MAX_DAYS).contains(&req.days) {
        return Err(SslError::BadDays(req.days));
    }
    let hosts: Vec<String> = if req.hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect()
    } else {
        req.hosts.clone()
    };
    for host in &hosts {
        check_host(host)?;
    }
    let clients = dedup(&req.clients);
    let nodes = dedup(&req.nodes);
    let operators = dedup(&req.operators);
    for name in &clients {
        check_name("client", name)?;
    }
    for name in &operators {
        check_name("operator", name)?;
    }
    let mut node_hosts = Vec::with_capacity(nodes.len());
    for name in &nodes {
        check_name("node", name)?;
        let host = name.split_once('@').map(|(_, host)| host);
        if let Some(host) = host {
            check_host(host).map_err(|e| SslError::BadName {
                kind: "node",
                name: name.clone(),
                reason: e.to_string(),
            })?;
        }
        node_hosts.push(host);
    }

    // Decide what to write, and refuse before making anything.
    let ca_cert = dir.join(CA_CERT);
    let ca_key = dir.join(CA_KEY);
    let reuse_ca = !req.force
        && match (ca_cert.exists(), ca_key.exists()) {
            (true, true) => true,
            (false, false) => false,
            (true, false) => return Err(incomplete_ca(ca_cert, ca_key)),
            (false, true) => return Err(incomplete_ca(ca_key, ca_cert)),
        };
    let server_exists = dir.join(SERVER_CERT).exists() || dir.join(SERVER_KEY).exists();
    let make_server = req.force
        || !req.hosts.is_empty()
        || (clients.is_empty() && nodes.is_empty() && operators.is_empty())
        || !server_exists;
    let mut planned: Vec<PathBuf> = Vec::new();
    if !reuse_ca {
        planned.extend([CA_CERT, CA_CERT_DER, CA_KEY].map(|f| dir.join(f)));
    }
    if make_server {
        planned.extend([SERVER_CERT, SERVER_KEY].map(|f| dir.join(f)));
    }
    for name in &clients {
        planned.push(dir.join(format!("client-{name}.pem")));
        planned.push(dir.join(format!("client-{name}.key.pem")));
    }
    for name in &nodes {
        planned.push(dir.join(format!("node-{name}.pem")));
        planned.push(dir.join(format!("node-{name}.key.pem")));
    }
    for name in &operators {
        planned.push(dir.join(format!("operator-{name}.pem")));
        planned.push(dir.join(format!("operator-{name}.key.pem")));
    }
    if !req.force {
        if let Some(path) = planned.iter().find(|p| p.exists()) {
            return Err(SslError::Exists { path: path.clone() });
        }
    }

    // Make everything in memory, then write.
    let now = OffsetDateTime::now_utc();
    let mut outputs = Vec::new();
    let issuer = if reuse_ca {
        load_ca(&ca_cert, &ca_key)?
    } else {
        let (issuer, cert_pem, cert_der, key_pem) = make_ca(now)?;
        outputs.push(Output::public(ca_cert, cert_pem.into_bytes()));
        outputs.push(Output::public(dir.join(CA_CERT_DER), cert_der));
        outputs.push(Output::secret(ca_key, key_pem));
        issuer
    };
    let days = Duration::days(i64::from(req.days));
    if make_server {
        let params = leaf_params(
            "server certificate",
            &hosts[0],
            hosts.clone(),
            &[ExtendedKeyUsagePurpose::ServerAuth],
            now,
            days,
        )?;
        let (cert, key) = sign("server certificate", &params, &issuer)?;
        outputs.push(Output::public(dir.join(SERVER_CERT), cert));
        outputs.push(Output::secret(dir.join(SERVER_KEY), key));
    }
    for name in &clients {
        let what = format!("client certificate {name}");
        let params = leaf_params(
            &what,
            name,
            Vec::new(),
            &[ExtendedKeyUsagePurpose::ClientAuth],
            now,
            days,
        )?;
        let (cert, key) = sign(&what, &params, &issuer)?;
        outputs.push(Output::public(dir.join(format!("client-{name}.pem")), cert));
        outputs.push(Output::secret(
            dir.join(format!("client-{name}.key.pem")),
            key,
        ));
    }
    for (name, host) in nodes.iter().zip(node_hosts) {
        let what = format!("node certificate {name}");
        let params = leaf_params(
            &what,
            name,
            host.into_iter().map(str::to_owned).collect(),
            &crate::cluster::node_usages(),
            now,
            days,
        )?;
        let (cert, key) = sign(&what, &params, &issuer)?;
        outputs.push(Output::public(dir.join(format!("node-{name}.pem")), cert));
        outputs.push(Output::secret(
            dir.join(format!("node-{name}.key.pem")),
            key,
        ));
    }

    for name in &operators {
        let what = format!("operator certificate {name}");
        let params = leaf_params(
            &what,
            name,
            Vec::new(),
            &crate::identity::operator_usages(req.operator_role),
            now,
            days,
        )?;
        let (cert, key) = sign(&what, &params, &issuer)?;
        outputs.push(Output::public(
            dir.join(format!("operator-{name}.pem")),
            cert,
        ));
        outputs.push(Output::secret(
            dir.join(format!("operator-{name}.key.pem")),
            key,
        ));
    }

    fs::create_dir_all(dir).map_err(|source| SslError::Write {
        path: dir.clone(),
        source,
    })?;
    let mut written = Vec::with_capacity(outputs.len());
    for out in outputs {
        write_file(&out).map_err(|source| SslError::Write {
            path: out.path.clone(),
            source,
        })?;
        written.push(out.path);
    }
    Ok(written)
}

/// The subject common name of a DER certificate, if it parses and has one.
pub fn peer_common_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

impl Output {
    fn public(path: PathBuf, contents: Vec<u8>) -> Self {
        Self {
            path,
            contents,
            secret: false,
        }
    }

    fn secret(path: PathBuf, contents: String) -> Self {
        Self {
            path,
            contents: contents.into_bytes(),
            secret: true,
        }
    }
}

/// Writes through a temporary file renamed into place, so a reader never sees half a file
/// and a key is never readable by others, not even for a moment: the temporary file is
/// created with mode 0600 (an overwritten key file with looser bits is replaced, not reused).
fn write_file(out: &Output) -> io::Result<()> {
    let name = out
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = out.path.with_file_name(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if out.secret { 0o600 } else { 0o644 });
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(&out.contents)?;
        file.sync_all()?;
        fs::rename(&tmp, &out.path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new self-signed CA: (issuer, PEM certificate, DER certificate, PEM key).
fn make_ca(
    now: OffsetDateTime,
) -> Result<(Issuer<'static, KeyPair>, String, Vec<u8>, String), SslError> {
    let what = "CA certificate";
    let key = KeyPair::generate().map_err(|e| generate(what, e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // The time in the name tells CAs made by different runs apart.
    dn.push(
        DnType::CommonName,
        format!(
            "fubar CA {:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ),
    );
    dn.push(DnType::OrganizationName, "fubar");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(CA_DAYS);
    let cert = params.self_signed(&key).map_err(|e| generate(what, e))?;
    let key_pem = key.serialize_pem();
    Ok((
        Issuer::new(params, key),
        cert.pem(),
        cert.der().to_vec(),
        key_pem,
    ))
}

/// The CA of an earlier run, to sign more certificates with.
fn load_ca(cert_path: &Path, key_path: &Path) -> Result<Issuer<'static, KeyPair>, SslError> {
    let cert_pem = fs::read_to_string(cert_path).map_err(|source| SslError::ReadCert {
        path: cert_path.to_owned(),
        source,
    })?;
    let key_pem = fs::read_to_string(key_path).map_err(|source| SslError::ReadKey {
        path: key_path.to_owned(),
        source,
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| SslError::BadPem {
        path: key_path.to_owned(),
        what: "CA key",
        detail: e.to_string(),
    })?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| SslError::BadPem {
        path: cert_path.to_owned(),
        what: "CA certificate",
        detail: e.to_string(),
    })
}

/// Parameters of a leaf certificate: CN, SANs (IP strings become IP SANs), extended usages.
fn leaf_params(
    what: &str,
    cn: &str,
    sans: Vec<String>,
    usages: &[ExtendedKeyUsagePurpose],
    now: OffsetDateTime,
    days: Duration,
) -> Result<CertificateParams, SslError> {
    let mut params = CertificateParams::new(sans).map_err(|e| generate(what, e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "fubar");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + days;
    Ok(params)
}

/// A new key and its certificate signed by the CA: (PEM certificate, PEM key).
fn sign(
    what: &str,
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(Vec<u8>, String), SslError> {
    let key = KeyPair::generate().map_err(|e| generate(what, e))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| generate(what, e))?;
    Ok((cert.pem().into_bytes(), key.serialize_pem()))
}

fn generate(what: &str, source: rcgen::Error) -> SslError {
    SslError::Generate {
        what: what.to_owned(),
        source,
    }
}

fn incomplete_ca(present: PathBuf, missing: PathBuf) -> SslError {
    SslError::IncompleteCa { present, missing }
}

/// Names in the order given, each once.
fn dedup(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// A host of a certificate: an IP address or a DNS name.
fn check_host(host: &str) -> Result<(), SslError> {
    if host.parse::<IpAddr>().is_ok() || DnsName::try_from(host).is_ok() {
        return Ok(());
    }
    Err(SslError::BadName {
        kind: "host",
        name: host.to_owned(),
        reason: "neither an IP address nor a DNS name".to_owned(),
    })
}

/// [`check_host`] for the cluster module.
pub(crate) fn check_host_pub(host: &str) -> Result<(), SslError> {
    check_host(host)
}

/// Writes a private key (0600) and then its public certificate, each through a temporary
/// file renamed into place.
pub(crate) fn write_secret_and_public(
    secret: (&Path, Vec<u8>),
    public: (&Path, Vec<u8>),
) -> Result<(), SslError> {
    for (path, contents, secret) in [(secret.0, secret.1, true), (public.0, public.1, false)] {
        let out = Output {
            path: path.to_owned(),
            contents,
            secret,
        };
        write_file(&out).map_err(|source| SslError::Write {
            path: out.path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// A client or node name: it becomes a CN and part of a file name, so it is kept to
/// letters, digits and `. _ - @`, at most 64 characters (the CN limit), not starting with a dot.
fn check_name(kind: &'static str, name: &str) -> Result<(), SslError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 64 {
        "longer than 64 characters"
    } else if name.starts_with('.') {
        "starts with a dot"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        "only letters, digits and . _ - @ are allowed"
    } else {
        return Ok(());
    };
    Err(SslError::BadName {
        kind,
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}
