//! The `log` commands of the admin endpoint: the node's log engine at run time.

use std::io;
use std::path::Path;

use fubar_logproto::admin::{AdminRequest, AdminResponse, LogClassStatus};
use fubar_logproto::Class;
use fubar_logs::Redirect;
use tokio::sync::mpsc;

use super::context::NodeContext;

/// Runs one `log` request but `dump` (blocking: it waits on the log writer).
pub(super) fn execute(node: &NodeContext, request: AdminRequest) -> AdminResponse {
    let Some(logs) = node.logs.as_ref() else {
        return AdminResponse::Error("this node runs without its log engine".into());
    };
    let class = |name: &str| name.parse::<Class>().map_err(|e| e.to_string());
    let result = match request {
        AdminRequest::LogOpen { class: name } => class(&name).and_then(|c| {
            logs.open(c).map_err(|e| e.to_string())?;
            Ok(AdminResponse::Done(format!("{c} open")))
        }),
        AdminRequest::LogClose { class: name } => class(&name).and_then(|c| {
            logs.close(c).map_err(|e| e.to_string())?;
            Ok(AdminResponse::Done(format!("{c} closed")))
        }),
        AdminRequest::LogOut {
            class: name,
            redirect,
        } => class(&name).and_then(|c| {
            let r: Redirect = redirect
                .parse()
                .map_err(|e: fubar_logs::LogError| e.to_string())?;
            let shown = r.to_string();
            logs.out(c, r).map_err(|e| e.to_string())?;
            tracing::info!(target: "info", class = %c, redirect = %shown, "log redirected");
            Ok(AdminResponse::Done(format!("{c} -> {shown}")))
        }),
        AdminRequest::LogList => Ok(AdminResponse::LogClasses(
            logs.list()
                .into_iter()
                .map(|s| LogClassStatus {
                    class: s.class.to_string(),
                    open: s.open,
                    redirect: s.redirect.to_string(),
                    files: s.files as u64,
                    bytes: s.bytes,
                    events: s.events,
                    overwritten: s.overwritten,
                    dropped: s.dropped,
                })
                .collect(),
        )),
        // Never the request's Debug: it may carry a password.
        other => Err(format!(
            "not a log request: {}",
            super::authz::Shown(&other)
        )),
    };
    result.unwrap_or_else(AdminResponse::Error)
}

/// Size of a `DumpText` piece: small enough that the reply queue holds little.
const DUMP_PIECE: usize = 64 << 10;

/// `log dump [CLASS]`: the class's text (or every class's with segment files) sent back on
/// `replies`, in pieces, at most `log.max_dump_bytes` in all (blocking: it reads files and
/// waits on the queue). The node writes nothing: the caller writes the file.
pub(super) fn dump(
    node: &NodeContext,
    class: Option<&str>,
    replies: &mpsc::Sender<AdminResponse>,
) -> Result<(), String> {
    let broker = &node.broker;
    let Some(logs) = node.logs.as_ref() else {
        return Err("this node runs without its log engine".into());
    };
    let settings = broker.settings();
    let classes = match class {
        Some(name) => vec![name.parse::<Class>().map_err(|e| e.to_string())?],
        None => Class::ALL
            .into_iter()
            .filter(|c| fubar_logs::has_class_segments(&settings.log_dir(), *c).unwrap_or(false))
            .collect(),
    };
    if classes.is_empty() {
        return Err("no class has log files to dump".into());
    }
    let mut out = Pieces {
        replies,
        piece: Vec::with_capacity(DUMP_PIECE),
        left: settings.log.max_dump_bytes,
        cut: false,
    };
    let gone = |_| "the caller went away".to_owned();
    for class in classes {
        let start = AdminResponse::DumpStart {
            node: settings.node.name.clone(),
            class: class.to_string(),
        };
        replies.blocking_send(start).map_err(gone)?;
        let report = match logs.dump_to(class, &mut out, Path::new("the caller")) {
            Ok(r) => r.unwrap_or_default(),
            // Cut short: what was sent stands, and the end says so.
            Err(_) if out.cut => fubar_logs::DumpReport::default(),
            Err(e) if replies.is_closed() => {
                tracing::debug!(target: "debug", error = %e, "dump not delivered");
                return Err("the caller went away".into());
            }
            Err(e) => return Err(e.to_string()),
        };
        out.send_piece()
            .map_err(|_| "the caller went away".to_owned())?;
        let end = AdminResponse::DumpEnd {
            class: class.to_string(),
            events: report.events,
            skipped_bytes: report.skipped_bytes,
            cut: out.cut.then(|| {
                format!(
                    "cut short at log.max_dump_bytes ({} bytes)",
                    settings.log.max_dump_bytes
                )
            }),
        };
        replies.blocking_send(end).map_err(gone)?;
        if out.cut {
            break;
        }
    }
    Ok(())
}

/// The dump's text, sent in pieces of [`DUMP_PIECE`] bytes until the bound is reached.
struct Pieces<'a> {
    replies: &'a mpsc::Sender<AdminResponse>,
    piece: Vec<u8>,
    /// Bytes the bound still allows.
    left: u64,
    /// The bound was reached.
    cut: bool,
}

impl Pieces<'_> {
    fn send_piece(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(DUMP_PIECE));
        self.replies
            .blocking_send(AdminResponse::DumpText(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the caller went away"))
    }
}

impl io::Write for Pieces<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cut || buf.len() as u64 > self.left {
            self.cut = true;
            return Err(io::Error::other("the dump's size bound"));
        }
        self.left -= buf.len() as u64;
        self.piece.extend_from_slice(buf);
        if self.piece.len() >= DUMP_PIECE {
            self.send_piece()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn pieces(replies: &mpsc::Sender<AdminResponse>, left: u64) -> Pieces<'_> {
        Pieces {
            replies,
            piece: Vec::new(),
            left,
            cut: false,
        }
    }

    fn texts(rx: &mut mpsc::Receiver<AdminResponse>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(reply) = rx.try_recv() {
            match reply {
                AdminResponse::DumpText(t) => out.push(t),
                other => panic!("not text: {other:?}"),
            }
        }
        out
    }

    /// A large dump goes out in pieces no larger than a piece and a line, not as one reply.
    #[test]
    fn a_dump_goes_out_in_pieces() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut out = pieces(&tx, u64::MAX);
        let line = [b'x'; 1000];
        for _ in 0..200 {
            out.write_all(&line).unwrap();
        }
        out.send_piece().unwrap();
        let sent = texts(&mut rx);
        assert!(sent.len() > 1, "one reply of {} bytes", sent[0].len());
        assert!(sent.iter().all(|p| p.len() < DUMP_PIECE + line.len()));
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), 200 * 1000);
    }

    /// `log.max_dump_bytes` bounds what is sent: a line past it is refused and the dump is cut.
    #[test]
    fn the_size_bound_cuts_the_dump() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut out = pieces(&tx, 2500);
        out.write_all(&[b'a'; 1000]).unwrap();
        out.write_all(&[b'b'; 1000]).unwrap();
        assert!(out.write_all(&[b'c'; 1000]).is_err());
        assert!(out.cut);
        // Nothing more once cut, even what would still fit.
        assert!(out.write_all(b"d").is_err());
        out.send_piece().unwrap();
        let sent: Vec<u8> = texts(&mut rx).concat();
        assert_eq!(sent.len(), 2000);
        assert!(!sent.contains(&b'c'));
    }

    /// A caller that went away stops the dump instead of reading on.
    #[test]
    fn a_caller_gone_stops_the_dump() {
        let (tx, rx) = mpsc::channel(64);
        drop(rx);
        let mut out = pieces(&tx, u64::MAX);
        let big = vec![b'x'; DUMP_PIECE];
        let err = out.write_all(&big).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
