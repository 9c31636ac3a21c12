//! `tollgate cdrs` and `tollgate pools` (DESIGN §5): read the ledger file named by
//! `[ledger].path`, read-only, while the daemon runs or not (WAL readers never block it); with
//! several nodes (`[cluster].store`), the cluster store: every node's calls, the pools
//! cluster-wide.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tollgate_engine::pools::MonthKey;
use tollgate_engine::StoredCall;

use super::setup;
use crate::cluster::reader::ClusterReader;
use crate::config::DaemonConfig;
use crate::ledger::{rows, Reader};
use crate::store::StoreReader;

#[derive(Debug, clap::Args)]
pub struct CdrsArgs {
    /// The daemon configuration file (for `[ledger].path`).
    #[arg(long, default_value = "config/tollgate.toml")]
    pub config: PathBuf,
    /// The month, `YYYY-MM` (UTC); calls are charged to the month they started in.
    #[arg(long)]
    pub month: String,
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct PoolsArgs {
    /// The daemon configuration file (for `[ledger].path`).
    #[arg(long, default_value = "config/tollgate.toml")]
    pub config: PathBuf,
    /// The month, `YYYY-MM` (default: this month, UTC).
    #[arg(long)]
    pub month: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// The CSV columns of a call record, in order.
const CDR_COLUMNS: &str = "call_id,tenant,user,dialed,e164,region,number_type,basis,state,month,\
pool_region,pool_sku,pool_kind,reserved_seconds,billable_seconds,charged_seconds,\
charged_credits,started_at,ended_at";

/// Opens what `config` keeps calls in: with `[cluster].store` set, the cluster store (every
/// node's calls, the cluster-wide pools); else the ledger. Exit code 2 and a message on error.
fn open(config: &Path) -> Result<Box<dyn StoreReader>, String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("{}: cannot read: {e}", config.display()))?;
    let file = DaemonConfig::from_toml(&text).map_err(|e| e.to_string())?;
    if file.cluster.enabled() {
        return ClusterReader::open(file.cluster.store.trim())
            .map(|r| Box::new(r) as Box<dyn StoreReader>)
            .map_err(|e| format!("tollgate.toml: [cluster].store: {e}"));
    }
    open_ledger(config, &file).map(|r| Box::new(r) as Box<dyn StoreReader>)
}

/// Opens the ledger named by `file` (read from `config`) **read-only**, while the daemon runs
/// or not: WAL readers never block the writer, and nothing here takes a lock the daemon
/// needs (for `cdrs`, `pools` and `decide`). An error says why, naming the field.
pub(super) fn open_ledger(config: &Path, file: &DaemonConfig) -> Result<Reader, String> {
    let path = setup::resolve_path(config, &file.ledger.path);
    if !file.ledger.enabled {
        return Err("tollgate.toml: [ledger].enabled = false: there is no ledger to read".into());
    }
    if !path.exists() {
        return Err(format!(
            "tollgate.toml: [ledger].path: {}: no such file (has the daemon run?)",
            path.display()
        ));
    }
    Reader::open(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn month(text: &str) -> Result<MonthKey, String> {
    rows::parse_month(text).ok_or_else(|| format!("--month {text:?}: expected YYYY-MM"))
}

pub fn cdrs(args: CdrsArgs) -> anyhow::Result<i32> {
    let (conn, m) = match open(&args.config).and_then(|c| Ok((c, month(&args.month)?))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return Ok(2);
        }
    };
    let calls = conn.cdrs(m).context("reading the ledger")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => {
            for c in &calls {
                writeln!(out, "{}", crate::http::call_json(c))?;
            }
        }
        Format::Csv => {
            writeln!(out, "{CDR_COLUMNS}")?;
            for c in &calls {
                writeln!(out, "{}", csv_line(c))?;
            }
        }
    }
    out.flush()?;
    Ok(0)
}

/// One CSV record (RFC 4180 quoting where a field needs it).
fn csv_line(c: &StoredCall) -> String {
    let d = c.destination.as_ref();
    let (pr, ps, pk) = match &c.funding {
        tollgate_engine::StoredFunding::Pool { key, .. } => (
            key.region.as_str().to_string(),
            key.sku.to_string(),
            key.kind.as_str(),
        ),
        _ => (String::new(), String::new(), ""),
    };
    let fields = [
        c.call_id.clone(),
        c.tenant.to_string(),
        c.user.to_string(),
        c.dialed.to_string(),
        d.map_or(String::new(), |d| d.e164().to_string()),
        d.map_or(String::new(), |d| d.region.as_str().to_string()),
        d.map_or(String::new(), |d| d.number_type.as_str().to_string()),
        c.basis.as_str().to_string(),
        c.state.as_str().to_string(),
        c.month().to_string(),
        pr,
        ps,
        pk.to_string(),
        c.reserved_seconds.to_string(),
        c.billable_seconds.to_string(),
        c.charged_seconds.to_string(),
        c.charged_money.to_string(),
        c.started_at.to_string(),
        c.ended_at.map_or(String::new(), |t| t.to_string()),
    ];
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn pools(args: PoolsArgs) -> anyhow::Result<i32> {
    let m = match &args.month {
        Some(t) => month(t),
        None => Ok(MonthKey::of(setup::now())),
    };
    let (conn, m) = match open(&args.config).and_then(|c| Ok((c, m?))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return Ok(2);
        }
    };
    let pools = conn.pools(m).context("reading the ledger")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => {
            let v: Vec<_> = pools.iter().map(crate::http::pool_json).collect();
            writeln!(out, "{}", serde_json::json!({ "pools": v }))?;
        }
        Format::Csv => {
            writeln!(out, "tenant,region,sku,kind,month,capacity_seconds,used_seconds,reserved_seconds,remaining_seconds")?;
            for p in &pools {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    p.key.tenant,
                    p.key.region.as_str(),
                    p.key.sku,
                    p.key.kind.as_str(),
                    p.month,
                    p.capacity_seconds,
                    p.used_seconds,
                    p.reserved_seconds,
                    p.remaining_seconds
                )?;
            }
        }
    }
    out.flush()?;
    Ok(0)
}
