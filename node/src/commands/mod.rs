//! The subcommands' bodies: the outermost layer, where errors become one line and an exit
//! code.

mod bench;
mod ctl;
mod dump;
mod log;
mod node;
mod pubsub;
mod reset;
mod search;
mod shell;
mod ssl;

use crate::cli::{Cli, Command, ConfigCommand, ConsoleCommand};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // One crypto provider (ring) for rustls, installed before any TLS configuration is built.
    fubar_ssl::install_crypto_provider();
    match cli.command {
        Command::Node(args) => node::run(args),
        Command::Monitor(args) => node::run_monitor(args),
        Command::Search(args) => search::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Console(ConsoleCommand::Url { node, remote }) => {
            let socket = ctl::target(&node, &remote)?;
            ctl::print(crate::admin::request(
                &socket,
                &fubar_logproto::admin::AdminRequest::ConsoleSignIn,
            )?)
        }
        Command::Reset(args) => reset::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Log(cmd) => log::run(cmd),
        Command::Pub(args) => pubsub::run_pub(args),
        Command::Sub(args) => pubsub::run_sub(args),
        Command::Ssl(cmd) => ssl::run(cmd),
        Command::Config(ConfigCommand::Example) => {
            print!("{}", crate::settings::example());
            Ok(())
        }
    }
}
