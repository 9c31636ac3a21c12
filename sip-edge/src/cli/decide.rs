//! `tollgate decide [--config …] --caller ID --dial DIGITS [--json]` (DESIGN §5): a dry-run
//! decision with the rule that fired; reserves nothing. With neither `--caller` nor `--dial` it
//! reads JSON lines `{"caller": "...", "dial": "..."}` from stdin and writes one JSON decision
//! per line; a bad input line gets a JSON error line.
//!
//! The pools are the running daemon's: before deciding, the ledger of `[ledger].path` is read
//! **read-only** (no lock the daemon holds or needs; it may be running) and the engine rebuilds
//! this month's pools, balances and open reservations from it exactly as the daemon does at
//! start (`StoreReader::recovery`, `Engine::restore`), so a user whose pool the daemon has
//! used up gets `pool_exhausted` here too. When there is no ledger to read (disabled, not
//! created yet, unreadable), every decision says so (`"pools": "not_consulted"` and why), as
//! its pools then count as unused.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tollgate_engine::conference::Service;
use tollgate_engine::pools::MonthKey;
use tollgate_engine::Engine;

use super::setup;
use crate::config::DaemonConfig;
use crate::decision::{line, Line};
use crate::store::StoreReader;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon configuration file (`[directory]`, `[grants]`, `[routes]` are read).
    #[arg(long, default_value = "config/tollgate.toml")]
    pub config: PathBuf,
    /// The caller: a UPN (`alice@contoso.com`) or a line URI (`+14255550101`).
    #[arg(long)]
    pub caller: Option<String>,
    /// The dialed string, as in the Request-URI user part.
    #[arg(long)]
    pub dial: Option<String>,
    /// `conference-dialout`: decide a meeting's dial-out with the caller as its organizer
    /// (as `X-Tollgate-Service` asks); default `call`.
    #[arg(long, default_value = "call", value_parser = parse_service)]
    pub service: Service,
    /// Print the decision as JSON (always so in stdin mode).
    #[arg(long)]
    pub json: bool,
    /// Decide as of this unix time instead of now.
    #[arg(long)]
    pub now: Option<u64>,
}

/// Where `decide` took the pools from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pools {
    /// The ledger file, read at start.
    Ledger(PathBuf),
    /// None read: why. Every pool counts as unused.
    NotConsulted(String),
}

impl Pools {
    fn label(&self) -> &'static str {
        match self {
            Pools::Ledger(_) => "ledger",
            Pools::NotConsulted(_) => "not_consulted",
        }
    }

    fn note(&self) -> Option<String> {
        match self {
            Pools::Ledger(_) => None,
            Pools::NotConsulted(why) => Some(why.clone()),
        }
    }

    /// Fills the `pools` fields of a line.
    fn mark(&self, l: &mut Line<'_>) {
        l.pools = Some(self.label());
        l.pools_note = self.note();
    }
}

/// Rebuilds in `engine` what the daemon's ledger holds for the month of `now` (pools,
/// balances, open reservations), the way `serve` does at start; nothing is written.
fn consult_ledger(config: &Path, file: &DaemonConfig, engine: &Engine, now: u64) -> Pools {
    let conn = match super::ledger::open_ledger(config, file) {
        Ok(c) => c,
        Err(why) => return Pools::NotConsulted(why),
    };
    let path = setup::resolve_path(config, &file.ledger.path);
    match conn.recovery(MonthKey::of(now)) {
        Ok(calls) => {
            engine.restore(calls, now);
            // As `serve` does next: reservations past grant + grace count as used.
            engine.expire(now);
            Pools::Ledger(path)
        }
        Err(e) => Pools::NotConsulted(format!("{}: {e}", path.display())),
    }
}

fn parse_service(s: &str) -> Result<Service, String> {
    Service::from_header(s)
        .ok_or_else(|| format!("{s:?} is neither `call` nor `conference-dialout`"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    caller: String,
    dial: String,
    /// `call` (default) or `conference-dialout`.
    #[serde(default)]
    service: Option<String>,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    error: String,
    input: &'a str,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let Some(setup) = setup::load_or_report(&args.config, false) else {
        return Ok(2);
    };
    let file = setup.daemon.file.clone();
    let engine = setup::engine(setup)?;
    let now = args.now.unwrap_or_else(setup::now);
    let pools = consult_ledger(&args.config, &file, &engine, now);
    match (&args.caller, &args.dial) {
        (Some(caller), Some(dial)) => {
            let d = engine.decide_as(caller, dial, args.service, now);
            let mut l = line(&engine, caller, dial, args.service, &d);
            pools.mark(&mut l);
            let mut out = std::io::stdout().lock();
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&l)?)?;
            } else {
                print_human(&mut out, &l)?;
            }
            out.flush()?;
            Ok(0)
        }
        (None, None) => stdin_mode(&engine, now, &pools),
        _ => {
            eprintln!("tollgate decide: give both --caller and --dial, or neither (stdin mode)");
            Ok(2)
        }
    }
}

fn print_human(out: &mut impl Write, l: &Line<'_>) -> std::io::Result<()> {
    let what = l.basis.or(l.reason).unwrap_or("");
    writeln!(out, "{} {} {what}", l.outcome, l.status)?;
    writeln!(out, "  rule:         {}", l.rule)?;
    if let Some(service) = l.service {
        writeln!(out, "  service:      {service}")?;
    }
    let fields = [
        ("dial_plan", l.dial_plan_rule.clone()),
        ("normalized", l.normalized.clone()),
        ("e164", l.e164.clone()),
        ("region", l.region.clone()),
        ("number_type", l.number_type.map(str::to_string)),
        ("route", l.route.clone()),
        ("max_duration", l.max_duration.map(|m| format!("{m} s"))),
        ("shadow", l.shadow_reason.map(str::to_string)),
        ("limit", l.limit.as_ref().map(|x| x.text.clone())),
        (
            "retry_after",
            l.limit
                .as_ref()
                .and_then(|x| x.retry_after)
                .map(|r| format!("{r} s")),
        ),
        ("warning", l.warning.as_ref().map(|x| x.text.clone())),
        (
            "pools",
            match (&l.pools, &l.pools_note) {
                (Some(_), Some(why)) => Some(format!(
                    "not consulted ({why}): every pool counted as unused"
                )),
                (Some(p), None) => Some(format!("{p} (as the running daemon has them)")),
                _ => None,
            },
        ),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            writeln!(out, "  {:<13} {v}", format!("{k}:"))?;
        }
    }
    if let Some(v) = &l.voice_routing {
        writeln!(
            out,
            "  policy:       {} (usage {:?}, route {:?})",
            v.policy, v.usage, v.route
        )?;
        for c in &v.contacts {
            writeln!(
                out,
                "  contact:      q={} {} {} (route {:?})",
                c.q, c.gateway, c.host, c.route
            )?;
        }
    }
    Ok(())
}

fn stdin_mode(engine: &Engine, now: u64, pools: &Pools) -> anyhow::Result<i32> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for raw in stdin.split(b'\n') {
        let raw = raw.context("reading stdin")?;
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let input = serde_json::from_str::<Input>(text)
            .map_err(|e| format!("bad input line: {e}"))
            .and_then(|i| {
                let service = i
                    .service
                    .as_deref()
                    .map_or(Ok(Service::Call), parse_service);
                service
                    .map(|s| (i, s))
                    .map_err(|e| format!("bad input line: service: {e}"))
            });
        let json = match input {
            Ok((i, service)) => {
                let d = engine.decide_as(&i.caller, &i.dial, service, now);
                let mut l = line(engine, &i.caller, &i.dial, service, &d);
                pools.mark(&mut l);
                serde_json::to_string(&l)?
            }
            Err(error) => serde_json::to_string(&ErrorLine { error, input: text })?,
        };
        writeln!(out, "{json}")?;
    }
    out.flush()?;
    Ok(0)
}
