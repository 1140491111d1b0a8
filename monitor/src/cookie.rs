//! The cluster cookie: a shared secret in a 0600 file, proven by each side of a link by
//! HMAC-SHA256 over both sides' fresh nonces and the TLS session's channel binding, never sent.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use fubar_logproto::link::{proof_input, ProofRole, MAC_LEN, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::MonitorError;

/// Name of the cookie file in a data dir.
pub const COOKIE_FILE: &str = "cookie";

/// Random bytes in a new cookie (written as hex).
const NEW_COOKIE_BYTES: usize = 32;

/// The shortest cookie accepted, bytes (a weak secret makes the proof worthless).
pub const MIN_COOKIE_LEN: usize = 16;

/// The cluster secret, as an HMAC key (its bytes are not kept).
#[derive(Clone)]
pub struct Cookie {
    key: hmac::Key,
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(..)")
    }
}

/// The cookie file of a data dir (`--cookie-file` overrides it).
pub fn cookie_path(data_dir: &Path) -> PathBuf {
    data_dir.join(COOKIE_FILE)
}

impl Cookie {
    /// A cookie from its secret bytes; at least [`MIN_COOKIE_LEN`] of them.
    pub fn from_secret(secret: &[u8]) -> Option<Self> {
        (secret.len() >= MIN_COOKIE_LEN).then(|| Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// Reads the cookie file, or creates it (mode 0600, random) if it does not exist.
    ///
    /// The secret is the file's text without surrounding whitespace. A file other users can
    /// read or write is refused, as Erlang refuses such a cookie.
    pub fn load_or_create(path: &Path) -> Result<Self, MonitorError> {
        match create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(MonitorError::io("create cookie file", path, e)),
        }
        Self::load(path)
    }

    /// Reads the cookie file (a client's copy of it; never created): the same checks as
    /// [`Cookie::load_or_create`].
    pub fn load(path: &Path) -> Result<Self, MonitorError> {
        let bad = |reason: &str| MonitorError::Cookie {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let meta = fs::metadata(path).map_err(|e| MonitorError::io("read", path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(bad("other users may read or write it; chmod 600 it"));
            }
        }
        if !meta.is_file() {
            return Err(bad("not a regular file"));
        }
        let text = fs::read(path).map_err(|e| MonitorError::io("read", path, e))?;
        Self::from_secret(text.trim_ascii())
            .ok_or_else(|| bad(&format!("shorter than {MIN_COOKIE_LEN} bytes")))
    }

    /// The client's proof that it knows the cookie, for this session, both nonces, node and
    /// epoch.
    pub fn prove(
        &self,
        binding: &[u8],
        server_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
        node: &str,
        epoch: u64,
    ) -> [u8; MAC_LEN] {
        self.sign(&proof_input(
            ProofRole::Client,
            binding,
            server_nonce,
            client_nonce,
            node,
            epoch,
        ))
    }

    /// Whether `mac` is the client's proof for these inputs (compared in constant time).
    pub fn verify(
        &self,
        binding: &[u8],
        server_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
        node: &str,
        epoch: u64,
        mac: &[u8],
    ) -> bool {
        let input = proof_input(
            ProofRole::Client,
            binding,
            server_nonce,
            client_nonce,
            node,
            epoch,
        );
        hmac::verify(&self.key, &input, mac).is_ok()
    }

    /// The server's proof that it knows the cookie, for this session and both nonces.
    pub fn prove_server(
        &self,
        binding: &[u8],
        server_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
    ) -> [u8; MAC_LEN] {
        self.sign(&proof_input(
            ProofRole::Server,
            binding,
            server_nonce,
            client_nonce,
            "",
            0,
        ))
    }

    /// Whether `mac` is the server's proof for these inputs (compared in constant time).
    pub fn verify_server(
        &self,
        binding: &[u8],
        server_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
        mac: &[u8],
    ) -> bool {
        let input = proof_input(
            ProofRole::Server,
            binding,
            server_nonce,
            client_nonce,
            "",
            0,
        );
        hmac::verify(&self.key, &input, mac).is_ok()
    }

    fn sign(&self, input: &[u8]) -> [u8; MAC_LEN] {
        let tag = hmac::sign(&self.key, input);
        let mut mac = [0; MAC_LEN];
        mac.copy_from_slice(tag.as_ref());
        mac
    }
}

/// Fresh random bytes for a challenge.
pub fn nonce() -> Result<[u8; NONCE_LEN], MonitorError> {
    let mut nonce = [0; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| MonitorError::BadConfig("the system random generator failed".into()))?;
    Ok(nonce)
}

/// Creates a new random cookie file, failing with `AlreadyExists` if there is one.
fn create(path: &Path) -> io::Result<()> {
    let mut secret = [0; NEW_COOKIE_BYTES];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| io::Error::other("the system random generator failed"))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(hex.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cookie_is_created_0600_and_read_back_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let path = cookie_path(&tmp.path().join("data"));
        let made = Cookie::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Cookie::load_or_create(&path).unwrap();
        let (sn, cn) = (nonce().unwrap(), nonce().unwrap());
        let mac = made.prove(b"tls", &sn, &cn, "n1@h", 7);
        assert!(again.verify(b"tls", &sn, &cn, "n1@h", 7, &mac));
        assert!(!again.verify(b"other tls", &sn, &cn, "n1@h", 7, &mac));
        assert!(!again.verify(b"tls", &sn, &cn, "n2@h", 7, &mac));
        assert!(!again.verify(b"tls", &sn, &cn, "n1@h", 8, &mac));
        assert!(!again.verify(b"tls", &[0; NONCE_LEN], &cn, "n1@h", 7, &mac));
        assert!(!again.verify(b"tls", &sn, &[0; NONCE_LEN], "n1@h", 7, &mac));
        let other = Cookie::from_secret(b"another cluster's secret").unwrap();
        assert!(!other.verify(b"tls", &sn, &cn, "n1@h", 7, &mac));
        assert!(!again.verify(b"tls", &sn, &cn, "n1@h", 7, &mac[..31]));
        // The server's proof is its own: a client's cannot stand for it, nor the reverse.
        let server = made.prove_server(b"tls", &sn, &cn);
        assert!(again.verify_server(b"tls", &sn, &cn, &server));
        assert!(!again.verify_server(b"tls", &cn, &sn, &server));
        assert!(!other.verify_server(b"tls", &sn, &cn, &server));
        let empty = made.prove(b"tls", &sn, &cn, "", 0);
        assert!(!again.verify_server(b"tls", &sn, &cn, &empty));
        assert!(!again.verify(b"tls", &sn, &cn, "", 0, &server));
    }

    #[test]
    fn loose_permissions_and_short_secrets_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cookie");
        fs::write(&path, "0123456789abcdef0123\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let err = Cookie::load_or_create(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        Cookie::load_or_create(&path).unwrap();
        fs::write(&path, "short\n").unwrap();
        let err = Cookie::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("shorter than 16"), "{err}");
        assert!(Cookie::from_secret(b"").is_none());
    }
}
