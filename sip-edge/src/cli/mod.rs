//! The `tollgate` command line (DESIGN §5). One module per subcommand.

pub mod numbers;

use clap::{Parser, Subcommand};

/// Tollgate: outbound call authorization for SIP proxies.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify dialed strings read from stdin, one per line, as a caller in REGION would dial
    /// them; writes one JSON line each.
    Numbers(numbers::Args),
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Numbers(args) => numbers::run(args),
    }
}
