//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

use fubar_logproto::frame::FrameError;

/// What can go wrong on the log link, at the monitor or in a node's shipper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// A file or directory operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A socket could not be bound or used.
    #[error("{op}: {source}")]
    Net {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The TLS material could not be turned into a QUIC configuration.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// The cookie file is unusable (readable by others, empty, unreadable).
    #[error("cookie file {}: {reason}", path.display())]
    Cookie {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A frame could not be made or read (malformed, too large).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer broke the protocol (a message out of place, a batch that does not add up).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The QUIC connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The connection could not be started.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// Reading or writing the stream failed.
    #[error("stream: {0}")]
    Stream(String),
    /// The peer is not a member of the cluster (or the monitor said so).
    #[error("refused: {0}")]
    Refused(String),
    /// A step took longer than its limit.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The event sink (the log engine) failed to write.
    #[error("log engine: {0}")]
    Logs(#[from] fubar_logs::LogError),
    /// The spool is corrupt beyond repair.
    #[error("spool {}: {reason}", path.display())]
    Spool {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value that cannot work.
    #[error("bad configuration: {0}")]
    BadConfig(String),
}

impl MonitorError {
    /// An `Io` error for `path`.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
