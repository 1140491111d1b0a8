//! `fubar reset`: deletes a node's preserved state, after asking.

use std::io::{BufRead as _, Write as _};

use anyhow::{bail, Context as _};
use fubar_store::{Store, SyncMode};

use super::ctl::located;
use crate::cli::ResetArgs;

/// Clears the state of the node named by the flags.
pub(crate) fn run(args: ResetArgs) -> anyhow::Result<()> {
    let settings = located(&args.node);
    let state = settings.state_dir();
    if !state.exists() {
        println!("no state at {}: nothing to clear", state.display());
        return Ok(());
    }
    // The store's lock tells whether a node is using this state now; a damaged state that
    // cannot be opened is exactly what reset is for, so only "in use" stops us.
    if let Err(e) = Store::open(&state, SyncMode::None, std::time::Duration::ZERO) {
        if e.is_in_use() {
            bail!(
                "the state at {} is in use: stop the node first (fubar ctl stop)",
                state.display()
            );
        }
    }
    if !args.yes {
        print!(
            "Delete all preserved state of {} at {} (accounts, retained messages, sessions, settings)? [y/N] ",
            settings.node.name,
            state.display()
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing deleted");
            return Ok(());
        }
    }
    std::fs::remove_dir_all(&state)
        .with_context(|| format!("cannot delete {}", state.display()))?;
    println!("state of {} cleared", settings.node.name);
    Ok(())
}
