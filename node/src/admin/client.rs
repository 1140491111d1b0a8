//! The `fubar ctl` side of the admin socket.

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::frame;

/// Time a command may take on the node (hashing a password is the slowest).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends one request to the node listening at `socket` and returns its reply.
pub fn request(socket: &Path, req: &AdminRequest) -> io::Result<AdminResponse> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the node's admin socket {}: {e} (is `fubar node` running with the same --name and --data-dir?)",
                socket.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.write_all(&frame::encode(req).map_err(io::Error::other)?)?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = frame::body_len(header, frame::MAX_FRAME).map_err(io::Error::other)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    frame::decode(&body).map_err(io::Error::other)
}
