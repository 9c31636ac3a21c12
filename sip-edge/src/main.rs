//! The `tollgate` binary: parses the command line and hands over to [`tollgate::cli`].

use clap::Parser;

fn main() {
    let cli = tollgate::cli::Cli::parse();
    match tollgate::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            std::process::exit(1);
        }
    }
}
