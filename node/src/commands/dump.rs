//! `fubar ctl log dump [CLASS] [PATH]`: the node sends a class's text back and this side
//! writes it, so a node never writes a file at a requester's choice. The file is made here
//! with mode 0600 and never over an existing file or through a symbolic link.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use fubar_logproto::admin::{AdminRequest, AdminResponse};

use crate::admin;

/// Where one class's text goes.
enum Out {
    Stdout(io::StdoutLock<'static>),
    File(io::BufWriter<File>, PathBuf),
}

impl Out {
    fn writer(&mut self) -> &mut dyn io::Write {
        match self {
            Self::Stdout(s) => s,
            Self::File(f, _) => f,
        }
    }
}

/// Dumps `class` (every class with log files without one) from the node: one class to
/// `path` (standard output without one), every class to a file each in the directory `path`
/// (the current directory without one), named as Erlang fubar named them.
pub(crate) fn run(
    target: &admin::Target,
    class: Option<String>,
    path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let one = class.is_some();
    let at = chrono::Utc::now();
    let mut out: Option<Out> = None;
    let mut refused = None;
    let mut said = Vec::new();
    admin::stream(target, &AdminRequest::LogDump { class }, |reply| {
        match reply {
            AdminResponse::DumpStart { node, class } => {
                let class: fubar_logproto::Class = class.parse().map_err(io::Error::other)?;
                out = Some(match (&path, one) {
                    (None, true) => Out::Stdout(io::stdout().lock()),
                    (Some(p), true) => Out::File(create(p)?, p.clone()),
                    (dir, false) => {
                        let dir = match dir {
                            Some(d) => d.clone(),
                            None => std::env::current_dir()?,
                        };
                        std::fs::create_dir_all(&dir)?;
                        let p = dir.join(fubar_logs::dump_file_name(&node, at, class));
                        Out::File(create(&p)?, p)
                    }
                });
            }
            AdminResponse::DumpText(text) => match &mut out {
                Some(o) => o.writer().write_all(&text)?,
                None => return Err(io::Error::other("dump text before its class")),
            },
            AdminResponse::DumpEnd {
                class,
                events,
                skipped_bytes,
                cut,
            } => {
                let mut done = out
                    .take()
                    .ok_or_else(|| io::Error::other("a dump's end before its start"))?;
                done.writer().flush()?;
                let skipped = if skipped_bytes == 0 {
                    String::new()
                } else {
                    format!(" ({skipped_bytes} corrupt bytes skipped)")
                };
                let cut = cut.map(|c| format!(" [{c}]")).unwrap_or_default();
                match (&done, one) {
                    // The text is on standard output: the summary goes beside it.
                    (Out::Stdout(_), _) => {
                        eprintln!("{events} events of {class}{skipped}{cut}");
                    }
                    (Out::File(_, p), true) => said.push(format!(
                        "{events} events of {class} written to {}{skipped}{cut}",
                        p.display()
                    )),
                    (Out::File(_, p), false) => said.push(format!(
                        "{class}: {events} events -> {}{skipped}{cut}",
                        p.display()
                    )),
                }
            }
            AdminResponse::Error(why) => {
                refused = Some(why);
                return Ok(false);
            }
            other => {
                return Err(io::Error::other(format!(
                    "unexpected reply to a dump: {}",
                    kind(&other)
                )))
            }
        }
        Ok(true)
    })?;
    for line in &said {
        println!("{line}");
    }
    if let Some(why) = refused {
        anyhow::bail!("{why}");
    }
    if out.is_some() {
        anyhow::bail!("the node stopped in the middle of the dump");
    }
    Ok(())
}

/// A new file, mode 0600: never an existing file, never through a symbolic link (`O_EXCL`
/// refuses both, a dangling link included).
fn create(path: &Path) -> io::Result<io::BufWriter<File>> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(io::BufWriter::new)
        .map_err(|e| {
            let why = if e.kind() == io::ErrorKind::AlreadyExists {
                "it exists already (a dump never overwrites a file nor follows a link)".to_owned()
            } else {
                e.to_string()
            };
            io::Error::new(e.kind(), format!("cannot create {}: {why}", path.display()))
        })
}

fn kind(reply: &AdminResponse) -> &'static str {
    match reply {
        AdminResponse::Done(_) => "Done",
        AdminResponse::Status(_) => "Status",
        AdminResponse::Events(_) | AdminResponse::Event(_) => "Events",
        _ => "another reply",
    }
}
