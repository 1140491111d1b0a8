//! The `fubar ctl` side: a node's admin socket on this machine, or else, for a node named
//! `NAME@HOST[:PORT]`, its cluster port over QUIC (`fubar_monitor::admin::AdminClient`),
//! proving membership with the cluster cookie or a node certificate.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::frame;
use fubar_logproto::link::ADMIN_ALPN;
use fubar_monitor::admin::AdminClient;
use fubar_monitor::cookie::Cookie;

use crate::cluster::NodeName;

/// Time a command may take on the node (hashing a password is the slowest).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// QUIC idle timeout of a remote admin connection (keep-alives at a third of it).
const REMOTE_IDLE: Duration = Duration::from_secs(30);

/// Where a node's admin endpoint is.
#[derive(Debug, Clone)]
pub enum Target {
    /// Its Unix socket on this machine.
    Local(PathBuf),
    /// Its cluster port on another machine.
    Remote(Box<Remote>),
}

/// A node reached over its cluster port, and how to prove membership to it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The node, with its cluster port.
    pub node: NodeName,
    /// The cluster's own CA, trusting the node's certificate; none: the node must prove the
    /// cookie.
    pub cafile: Option<PathBuf>,
    /// The cluster cookie.
    pub cookie_file: PathBuf,
    /// A node certificate and its key, proving membership instead of the cookie.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Why the local socket was not used (for error messages).
    pub socket: PathBuf,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(socket) => write!(f, "{}", socket.display()),
            Self::Remote(r) => write!(
                f,
                "{} (cluster://{}:{})",
                r.node.id(),
                r.node.host,
                r.node.port
            ),
        }
    }
}

/// Sends one request and returns its reply.
pub fn request(target: &Target, req: &AdminRequest) -> io::Result<AdminResponse> {
    match target {
        Target::Local(socket) => local_request(socket, req),
        Target::Remote(remote) => {
            let mut reply = None;
            remote_exchange(remote, req, Some(REPLY_TIMEOUT), |r| {
                reply = Some(r);
                Ok(false)
            })?;
            reply.ok_or_else(|| io::Error::other("the node sent no reply"))
        }
    }
}

/// Sends one request and hands each reply to `each` until the node ends the stream or `each`
/// returns `false` (a `log tail`).
pub fn stream(
    target: &Target,
    req: &AdminRequest,
    mut each: impl FnMut(AdminResponse) -> io::Result<bool>,
) -> io::Result<()> {
    match target {
        Target::Local(socket) => {
            let mut stream = connect(socket)?;
            stream.write_all(&frame::encode(req).map_err(io::Error::other)?)?;
            loop {
                let mut header = [0u8; 4];
                if stream.read_exact(&mut header).is_err() {
                    return Ok(());
                }
                let len = frame::body_len(header, frame::MAX_FRAME).map_err(io::Error::other)?;
                let mut body = vec![0u8; len];
                stream.read_exact(&mut body)?;
                if !each(frame::decode(&body).map_err(io::Error::other)?)? {
                    return Ok(());
                }
            }
        }
        Target::Remote(remote) => remote_exchange(remote, req, None, each),
    }
}

fn connect(socket: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the node's admin socket {}: {e} (is `fubar node` running with the same --name and --data-dir?)",
                socket.display()
            ),
        )
    })
}

fn local_request(socket: &Path, req: &AdminRequest) -> io::Result<AdminResponse> {
    let mut stream = connect(socket)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.write_all(&frame::encode(req).map_err(io::Error::other)?)?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = frame::body_len(header, frame::MAX_FRAME).map_err(io::Error::other)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    frame::decode(&body).map_err(io::Error::other)
}

/// One remote request on its own connection (and a small runtime: ctl is synchronous).
fn remote_exchange(
    remote: &Remote,
    req: &AdminRequest,
    limit: Option<Duration>,
    each: impl FnMut(AdminResponse) -> io::Result<bool>,
) -> io::Result<()> {
    let unreachable = |e: &dyn fmt::Display| {
        io::Error::other(format!(
            "cannot reach {} over its cluster port {}:{}: {e} (no admin socket at {} either)",
            remote.node.id(),
            remote.node.host,
            remote.node.port,
            remote.socket.display()
        ))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let exchange = remote_async(remote, req, each);
        match limit {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .map_err(|_| unreachable(&"timed out"))?,
            None => exchange.await,
        }
        .map_err(|e| match e {
            Failure::Monitor(e) => unreachable(&e),
            Failure::Setup(e) => unreachable(&e),
            Failure::Output(e) => e,
        })
    })
}

enum Failure {
    /// The connection or the monitor failed.
    Monitor(fubar_monitor::MonitorError),
    /// The CA, cookie or certificate is unusable, or the host does not resolve.
    Setup(String),
    /// Printing a reply failed.
    Output(io::Error),
}

async fn remote_async(
    remote: &Remote,
    req: &AdminRequest,
    mut each: impl FnMut(AdminResponse) -> io::Result<bool>,
) -> Result<(), Failure> {
    let setup = |e: &dyn fmt::Display| Failure::Setup(e.to_string());
    fubar_ssl::install_crypto_provider();
    let cert = remote
        .cert
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let trust =
        match &remote.cafile {
            Some(ca) => fubar_ssl::ClusterTrust::Ca(ca.clone()),
            None if cert.is_some() => return Err(setup(
                &"a node certificate (--certfile) is checked against the cluster CA: give --cafile",
            )),
            None => fubar_ssl::ClusterTrust::Cookie,
        };
    let identity = cert.map(|(c, k)| fubar_ssl::NodeIdentity {
        certfile: c.to_owned(),
        keyfile: k.to_owned(),
    });
    // With a CA, the server's node certificate must be the node named, not any of the CA.
    let names = [remote.node.id(), remote.node.to_string()];
    let tls =
        fubar_ssl::cluster_client_config_for_node(identity.as_ref(), &trust, &[ADMIN_ALPN], &names)
            .map_err(|e| setup(&format_args!("the cluster's TLS ({trust}): {e}")))?;
    let (cookie, client) = match &remote.cert {
        Some((certfile, _)) => (None, certificate_name(certfile).map_err(|e| setup(&e))?),
        None => {
            let cookie = Cookie::load(&remote.cookie_file).map_err(|e| setup(&e))?;
            (Some(cookie), format!("ctl@{}", local_host()))
        }
    };
    let addr = remote
        .node
        .cluster_addr()
        .map_err(|e| setup(&format_args!("cannot resolve {}: {e}", remote.node.host)))?;
    let mut conn = AdminClient::connect(
        addr,
        &remote.node.host,
        tls,
        cookie.as_ref(),
        &client,
        REMOTE_IDLE,
    )
    .await
    .map_err(Failure::Monitor)?;
    conn.send(req).await.map_err(Failure::Monitor)?;
    let ended = loop {
        match conn.next().await {
            Ok(Some(reply)) => match each(reply) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(Failure::Output(e)),
            },
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::Monitor(e)),
        }
    };
    conn.close().await;
    ended
}

/// The CN of the first certificate in a PEM file: the name a certificate holder goes by.
fn certificate_name(path: &Path) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject as _;
    let cert = rustls::pki_types::CertificateDer::from_pem_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    fubar_ssl::peer_common_name(&cert)
        .ok_or_else(|| format!("{}: the certificate has no CN", path.display()))
}

/// This machine's host name, as the default node name has it.
fn local_host() -> String {
    let name = crate::settings::Settings::default().node.name;
    name.split_once('@')
        .map_or_else(|| "localhost".to_owned(), |(_, h)| h.to_owned())
}
