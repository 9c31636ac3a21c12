//! The ledger writer's CPU per call against the number of calls already stored, with the
//! `calls` table appended in admission order (schema 2, `seq` as key) or with an index on the
//! random Call-ID as well (what schema 1's Call-ID key cost): the experiment behind the choice
//! of key in `sip-edge/src/ledger/schema.rs`. Each batch is one transaction of `rows::UPSERT`s,
//! as the writer thread commits them; the figure is the thread's CPU time (user + system) per
//! call, so it includes SQLite's writes to the WAL and its checkpoints.
//!
//! ```text
//! cargo run --release -p tollgate-benches --example ledger_rows -- \
//!     [--layout appended|indexed] [--stored N] [--batch B] [--calls N] [--dir DIR]
//! ```
use std::sync::Arc;
use std::time::Instant;

use tollgate::ledger::{rows, schema, Synchronous};
use tollgate_engine::credits::Money;
use tollgate_engine::numbering::{Destination, NumberType, Region};
use tollgate_engine::{Basis, Funding, Grant, Route, StoredCall};

const NOW: u64 = 1_795_000_000;

fn thread_cpu_us() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> anyhow::Result<()> {
    let layout = arg("--layout", "appended");
    let stored: u64 = arg("--stored", "200000").parse()?;
    let batch: u64 = arg("--batch", "4").parse()?;
    let calls: u64 = arg("--calls", "40000").parse()?;
    let dir = tempfile_dir(&arg("--dir", &std::env::temp_dir().display().to_string()))?;
    let path = dir.join("ledger_rows.db");
    let mut conn = schema::open_writer(&path, Synchronous::Normal)?;
    match layout.as_str() {
        "appended" => {}
        "indexed" => conn.execute_batch("CREATE UNIQUE INDEX calls_call_id ON calls (call_id)")?,
        other => anyhow::bail!("--layout {other}: appended or indexed"),
    }
    let template = call();
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut seq = 0u64;
    let mut write = |conn: &mut rusqlite::Connection, n: u64| -> anyhow::Result<()> {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(rows::UPSERT)?;
            let mut scratch = rows::Scratch::default();
            for _ in 0..n {
                // xorshift: Call-IDs as random as a proxy's.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                seq += 1;
                let mut c = template.clone();
                c.seq = seq;
                c.call_id = format!("{rng:016x}{:08x}@10.0.0.1", seq);
                c.started_at = NOW + seq / 1000;
                rows::bind(&mut stmt, &c, &mut scratch)?;
            }
        }
        tx.commit()?;
        Ok(())
    };
    let mut left = stored;
    while left > 0 {
        let n = left.min(4096);
        write(&mut conn, n)?;
        left -= n;
    }
    let (cpu0, wall0) = (thread_cpu_us(), Instant::now());
    for _ in 0..calls / batch {
        write(&mut conn, batch)?;
    }
    let written = (calls / batch * batch).max(1) as f64;
    println!(
        "layout {layout:8} stored {stored:8} batch {batch:5}: {:6.2} us CPU per call, {:6.2} us wall",
        (thread_cpu_us() - cpu0) / written,
        wall0.elapsed().as_secs_f64() * 1e6 / written,
    );
    drop(conn);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A fresh directory under `base` for this run's files.
fn tempfile_dir(base: &str) -> anyhow::Result<std::path::PathBuf> {
    let d = std::path::Path::new(base).join(format!("ledger_rows.{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A Direct Routing call abroad, as `benches/kamailio/compare.sh` makes them.
fn call() -> StoredCall {
    let gb = Region::new("GB").expect("GB");
    StoredCall::admitted(
        "",
        Grant {
            seq: 0,
            basis: Basis::DirectRouting,
            tenant: Arc::from("contoso"),
            user: Arc::from("grace@contoso.com"),
            dialed: Arc::from("+442079460000"),
            destination: Some(Destination::new(
                "+442079460000",
                44,
                gb,
                NumberType::FixedLine,
            )),
            route: Some(Route::Direct("sbc1.contoso.com".into())),
            funding: Funding::None,
            reserved_seconds: 1800,
            reserved_money: Money::ZERO,
            started_at: NOW,
            expires_at: NOW + 1800 + 120,
            hold: None,
        },
    )
}
