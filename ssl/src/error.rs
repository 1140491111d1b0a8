//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong loading TLS material or making certificates; messages name the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SslError {
    /// A certificate (or CA) file could not be read.
    #[error("cannot read certificate file {}: {source}", path.display())]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A private key file could not be read.
    #[error("cannot read key file {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not the PEM it should be (no such item in it, or a broken one).
    #[error("invalid {what} file {}: {detail}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What it should hold: "certificate", "key" or "CA certificate".
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the material (a key that does not fit its certificate, an unusable CA).
    #[error("{context}: {source}")]
    Tls {
        /// Which files were being used.
        context: String,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA file.
    #[error("cannot verify client certificates with CA file {}: {source}", path.display())]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::server::VerifierBuilderError,
    },
    /// A CA file is needed (client verification, or a client with no built-in roots).
    #[error("{0}: no CA file given")]
    CaRequired(&'static str),
    /// A client verification mode that is not `none`, `optional` or `required`.
    #[error("invalid client verification {0:?}: expected none, optional or required")]
    BadVerify(String),
    /// A host, client or node name that cannot go in a certificate or a file name.
    #[error("invalid {kind} name {name:?}: {reason}")]
    BadName {
        /// "host", "client" or "node".
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A validity that is zero or reaches past the year 9999.
    #[error("invalid validity of {0} days: expected 1 to {max}", max = crate::certs::MAX_DAYS)]
    BadDays(u32),
    /// A file that would be written exists, and overwriting was not asked for.
    #[error("{} already exists; use --force to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The CA certificate exists but its key does not (or the other way round).
    #[error("{} exists but {} does not: cannot sign with this CA (use --force to make a new one)", present.display(), missing.display())]
    IncompleteCa {
        /// The file that is there.
        present: PathBuf,
        /// The file that is not.
        missing: PathBuf,
    },
    /// rcgen could not make or sign a certificate.
    #[error("cannot make {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: String,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// The folder holds a `Cargo.toml`: a source folder, where keys would end up in git.
    #[error("{} holds a Cargo.toml: certificates and keys do not go into a source folder (the default is data/ssl)", path.display())]
    SourceFolder {
        /// The folder.
        path: PathBuf,
    },
    /// A directory could not be created or a file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}
