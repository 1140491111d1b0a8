//! `fubar log dump`: reads a node's binary log files directly, node running or not.

use std::io::Write as _;

use anyhow::Context as _;
use fubar_logproto::Class;

use super::ctl::located;
use crate::cli::OfflineLogCommand;

/// Runs one `fubar log` command.
pub(crate) fn run(cmd: OfflineLogCommand) -> anyhow::Result<()> {
    let (dir, node, class, file) = match cmd {
        OfflineLogCommand::Tail {
            node,
            remote,
            class,
            query,
        } => return super::search::tail(&node, &remote, class, query),
        OfflineLogCommand::Reindex { node } => return super::search::reindex(&node),
        OfflineLogCommand::Dump {
            dir,
            node,
            class,
            file,
        } => (dir, node, class, file),
    };
    let dir = dir.unwrap_or_else(|| located(&node).log_dir());
    if !dir.is_dir() {
        anyhow::bail!("no log directory at {}", dir.display());
    }
    let classes: Vec<Class> = match class {
        Some(c) => vec![c.parse()?],
        None => Class::ALL
            .into_iter()
            .filter(|c| dir.join(c.name()).is_dir())
            .collect(),
    };
    let mut out: Box<dyn std::io::Write> = match &file {
        Some(f) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(f).with_context(|| format!("cannot create {}", f.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for class in classes {
        let report = fubar_logs::dump_dir(&dir, class, &mut out)?;
        if report.skipped_bytes > 0 {
            eprintln!(
                "fubar: {class}: {} corrupt bytes skipped",
                report.skipped_bytes
            );
        }
    }
    out.flush()?;
    Ok(())
}
