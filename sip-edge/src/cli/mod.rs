//! The `tollgate` command line (DESIGN §5). One module per subcommand.

pub mod check;
pub mod decide;
pub mod ledger;
pub mod numbers;
pub mod serve;
pub(crate) mod setup;

pub use setup::resolve_path;

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
    /// A dry-run decision for a caller and a dialed number, with the rule that fired; reserves
    /// nothing. Without --caller/--dial, reads JSON lines {"caller","dial"} from stdin.
    Decide(decide::Args),
    /// Validate the config and the directory: exit 0, or 2 printing every error.
    Check(check::Args),
    /// The daemon: answers INVITEs over UDP and TCP, serves the HTTP API and metrics.
    Serve(serve::Args),
    /// Call records (ended calls) of a month from the ledger, as CSV or JSON lines.
    Cdrs(ledger::CdrsArgs),
    /// The pools of a month (default: this one) from the ledger.
    Pools(ledger::PoolsArgs),
}

/// Runs the parsed command line; returns the process exit code.
///
/// A command whose standard output is closed early (`tollgate decide … | head -1`) stops
/// quietly with exit code 0, as `cat` and ripgrep do: the reader has all it wanted, so the
/// `EPIPE` (SIGPIPE is ignored by Rust programs) is no error worth a message. Commands write
/// through `writeln!`, never `println!`, which would panic there.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let result = match cli.command {
        Command::Numbers(args) => numbers::run(args),
        Command::Decide(args) => decide::run(args),
        Command::Check(args) => check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Cdrs(args) => ledger::cdrs(args),
        Command::Pools(args) => ledger::pools(args),
    };
    match result {
        Err(e) if broken_pipe(&e) => Ok(0),
        other => other,
    }
}

/// Whether `e` is, or was caused by, a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
