//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

use fubar_logproto::event::UnknownClass;

/// Everything that can go wrong in the log engine; messages name the path or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file or directory operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "open", "read", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A name that is not a log class.
    #[error(transparent)]
    UnknownClass(#[from] UnknownClass),
    /// A redirect that is not `none`, `stdout` or an acceptable file prefix.
    #[error("bad log redirect {value:?}: {reason} (allowed: none, stdout, or a file prefix without '/', '\\', '..', control characters, at most {max} bytes)", max = crate::redirect::MAX_PREFIX_LEN)]
    BadRedirect {
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A configuration value that cannot work.
    #[error("bad log configuration: {0}")]
    BadConfig(String),
    /// An event that cannot be recorded (too large, or not encodable).
    #[error("{0}")]
    Event(String),
    /// The writer thread has stopped (after `shutdown`, or it died).
    #[error("the log writer has stopped")]
    Stopped,
}

impl LogError {
    /// An `Io` error for `path`.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
