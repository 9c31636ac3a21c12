//! `tollgate-load`: the SIP load generator of issue 7 (see `benches/README.md`).
//!
//! ```text
//! tollgate-load --target 127.0.0.1:5060 --rate 20000 --duration 10 --directory config
//! tollgate-load --rate max --concurrency 2000 --calls 1000000 --json -
//! tollgate-load --write-directory /tmp/dir --users 100000
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tollgate_benches::load::directory::{self, Listen};
use tollgate_benches::load::invite::Via;
use tollgate_benches::load::mix::{Mix, Weights};
use tollgate_benches::load::report::Report;
use tollgate_benches::load::run::{self, Plan};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Transport {
    Udp,
    Tcp,
}

/// Sends SIP INVITEs to a Tollgate daemon and reports answers and latency.
#[derive(Debug, Parser)]
#[command(name = "tollgate-load", version)]
struct Args {
    /// The daemon's SIP address (loopback).
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    #[arg(long, value_enum, default_value = "udp")]
    transport: Transport,
    /// UDP sockets (one thread each).
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// TCP connections (one thread each).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls per second (open loop), or `max` (closed loop, see --concurrency).
    #[arg(long, default_value = "1000")]
    rate: String,
    /// Closed loop (`--rate max`): calls outstanding at once, in total.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// Seconds of new calls (then the last answers are awaited).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many calls (before --duration runs out, if sooner).
    #[arg(long)]
    calls: Option<u64>,
    /// Seconds without a final response before a call counts as timed out (Timer B, 64·T1).
    #[arg(long, default_value_t = 32.0)]
    timeout: f64,
    /// Do not retransmit INVITEs over UDP (Timer A).
    #[arg(long)]
    no_retransmit: bool,
    /// The directory whose users.csv gives the callers.
    #[arg(long, default_value = "config")]
    directory: PathBuf,
    /// Dialed-number mix: default, domestic, emergency.
    #[arg(long, default_value = "default")]
    mix: String,
    /// INVITEs without the SDP body.
    #[arg(long)]
    no_sdp: bool,
    /// Write the report as JSON to this file (`-`: stdout, instead of the table).
    #[arg(long)]
    json: Option<PathBuf>,
    /// UDP: one system call per message instead of batches (sendmmsg/recvmmsg).
    #[arg(long)]
    no_mmsg: bool,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Call-ID run number (default: from the clock and the process id).
    #[arg(long)]
    run_id: Option<u32>,
    /// Write a synthetic directory of --users users (and a tollgate.toml serving it) here,
    /// then exit.
    #[arg(long)]
    write_directory: Option<PathBuf>,
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// --write-directory: the SIP address of the written tollgate.toml.
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip_listen: SocketAddr,
    /// --write-directory: the HTTP address of the written tollgate.toml.
    #[arg(long, default_value = "127.0.0.1:9090")]
    http_listen: SocketAddr,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-load: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.write_directory {
        let listen = Listen {
            sip: args.sip_listen,
            http: args.http_listen,
        };
        directory::write(dir, args.users, listen)?;
        eprintln!(
            "tollgate-load: wrote {} users to {} (serve with --config {})",
            args.users,
            dir.display(),
            dir.join("tollgate.toml").display()
        );
        return Ok(());
    }
    anyhow::ensure!(
        args.target.ip().is_loopback(),
        "--target {} is not a loopback address: tollgate-load only loads a local daemon",
        args.target
    );
    let rate = match args.rate.as_str() {
        "max" => None,
        r => {
            let r: f64 = r
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r > 0.0)
                .with_context(|| format!("--rate {r}: a positive number or `max`"))?;
            Some(r)
        }
    };
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0 && args.duration <= 86_400.0,
        "--duration: between 0 and 86400 seconds"
    );
    anyhow::ensure!(
        args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 600.0,
        "--timeout: between 0 and 600 seconds"
    );
    let weights = Weights::by_name(&args.mix)
        .with_context(|| format!("--mix {}: one of default, domestic, emergency", args.mix))?;
    let mix = Mix::from_directory(&args.directory, weights)?;
    let (transport, workers) = match args.transport {
        Transport::Udp => (Via::Udp, args.sockets),
        Transport::Tcp => (Via::Tcp, args.connections),
    };
    anyhow::ensure!(
        (1..=256).contains(&workers),
        "--sockets/--connections: 1 to 256"
    );
    let plan = Plan {
        target: args.target,
        transport,
        workers,
        rate,
        concurrency: args.concurrency.max(1),
        duration: Duration::from_secs_f64(args.duration),
        calls: args.calls,
        timeout: Duration::from_secs_f64(args.timeout),
        retransmit: !args.no_retransmit,
        sdp: !args.no_sdp,
        mmsg: !args.no_mmsg,
        run_id: args.run_id.unwrap_or_else(default_run_id),
        progress: !args.quiet,
    };
    let outcome = run::run(&plan, Arc::new(mix))?;
    let report = Report::new(&plan, &outcome);
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => {
            std::fs::write(p, json + "\n")
                .with_context(|| format!("cannot write {}", p.display()))?;
            print!("{}", report.table());
        }
        None => print!("{}", report.table()),
    }
    if outcome.failed {
        anyhow::bail!("a connection failed during the run (see above)");
    }
    Ok(())
}

/// A run number unlikely to repeat: seconds since the epoch mixed with the process id.
fn default_run_id() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((secs as u32) ^ (std::process::id() << 16)) % 1_000_000_000
}
