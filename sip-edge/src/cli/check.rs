//! `tollgate check [--config …]`: validates the config and the directory (DESIGN §5). Exit 0, or
//! 2 printing every error, one per line.

use std::io::Write;
use std::path::PathBuf;

use super::setup;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon configuration file.
    #[arg(long, default_value = "config/tollgate.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    // Everything `serve` reads before it binds, the token file included.
    match setup::load(&args.config, true) {
        Ok(s) => {
            writeln!(
                std::io::stdout().lock(),
                "ok: {} tenants, {} users, {} pools ({})",
                s.snapshot.tenants.len(),
                s.snapshot.users.len(),
                s.snapshot.pools.len(),
                s.directory.display()
            )?;
            Ok(0)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("tollgate check: {} error(s)", errors.len());
            Ok(2)
        }
    }
}
