//! The `fubar` command: parse arguments, hand off, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc: the broker and its log writer allocate on many threads and free across them,
/// where glibc's allocator spends a large share of the time (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match fubar::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "fubar: {} (see fubar --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::FAILURE;
        }
    };
    match fubar::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fubar: {e:#}");
            ExitCode::FAILURE
        }
    }
}
