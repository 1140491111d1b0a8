//! The subcommands' bodies: the outermost layer, where errors become one line and an exit
//! code.

mod bench;
mod ctl;
mod log;
mod node;
mod reset;
mod shell;
mod ssl;

use crate::cli::{Cli, Command};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Node(args) => node::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Reset(args) => reset::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Log(cmd) => log::run(cmd),
        Command::Ssl(cmd) => ssl::run(cmd),
    }
}
