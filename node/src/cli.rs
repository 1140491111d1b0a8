//! The command line: clap types only. `main` parses them and hands them to `commands::run`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// fubar: a clustered MQTT broker built to be debugged.
#[derive(Debug, Parser)]
#[command(name = "fubar", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker node (MQTT on 0.0.0.0:1883 by default, state under ./data/).
    Node(NodeArgs),
}

/// Flags of `fubar node`. Each overrides the settings file, which overrides the defaults.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Settings file (TOML); see the README for every key and its default.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node name, NAME@HOST [default: fubar@<hostname>].
    #[arg(long)]
    pub name: Option<String>,
    /// Data directory; the node's state goes under DIR/<name>/ [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the MQTT listener binds [default: 0.0.0.0].
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// MQTT TCP port; 0 picks a free one [default: 1883].
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// Largest MQTT packet accepted, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_packet_size: Option<usize>,
    /// Log classes printed to stdout, comma-separated [default: trace,warning,error,info].
    #[arg(long, value_name = "CLASSES", value_delimiter = ',')]
    pub log_stdout: Option<Vec<String>>,
}
