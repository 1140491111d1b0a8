//! The subcommands' bodies: the outermost layer, where errors become one line and an exit
//! code.

mod node;

use crate::cli::{Cli, Command};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Node(args) => node::run(args),
    }
}
