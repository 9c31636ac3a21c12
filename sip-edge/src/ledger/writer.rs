//! The writer thread: group commit (DESIGN §6).
//!
//! It blocks for the first write, then takes whatever else is queued (up to the batch size),
//! waiting at most `linger` after the first write for more (`[ledger].linger_us`): while one
//! transaction commits the next batch gathers, so batches grow with the load and a commit costs
//! its calls a share each; the linger keeps batches from being tiny at moderate load, where a
//! commit per handful of calls would cost each of them tens of µs of CPU. The linger shortens
//! itself when calls come fast enough to fill a batch anyway ([`Linger`]).
//!
//! A batch that fails to commit is rolled back whole; the [`Committer`] decides per write what
//! to retry, and the retried writes go first in the next attempt. While something waits for a
//! retry the writer tries again at least once a second, so a ledger whose disk filled up comes
//! back by itself when space returns.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Weak;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tollgate_engine::pools::PoolStatus;

use super::combine::Store;
use super::linger::{Linger, ENOUGH_TO_COMMIT};
use super::upsert::WriteConn;
use super::{Committer, Job, Write};

/// How often a failed batch is retried when nothing new arrives.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Retried writes kept at most; beyond this the oldest are dropped (and logged): the engine's
/// memory still holds their state, only their durability is lost.
const MAX_RETRY: usize = 1 << 20;

const POOL_UPSERT: &str = "INSERT INTO pools (month, tenant, region, sku, kind, \
    capacity_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (month, tenant, region, sku, \
    kind) DO UPDATE SET capacity_seconds = excluded.capacity_seconds";

pub(super) fn run(
    store: &Store,
    rx: Receiver<Job>,
    committer: Weak<dyn Committer>,
    max_batch: usize,
    linger: Duration,
) {
    let mut retry: Vec<Write> = Vec::new();
    let mut batch: Vec<Write> = Vec::with_capacity(max_batch);
    let mut combined: Vec<Write> = Vec::new();
    let mut pools: Option<Vec<PoolStatus>> = None;
    let mut stop = false;
    let mut linger = Linger::new(linger, ENOUGH_TO_COMMIT);
    while !stop {
        let first = if retry.is_empty() && pools.is_none() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(RETRY_EVERY)
        };
        batch.append(&mut retry);
        let mut next = match first {
            Ok(j) => Some(j),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                stop = true;
                None
            }
        };
        let gathering = Instant::now();
        let retried = batch.len();
        while let Some(job) = next.take() {
            match job {
                Job::Call(w) => batch.push(*w),
                Job::Pools(p) => pools = Some(p),
                Job::Stop => {
                    stop = true;
                    break;
                }
            }
            if batch.len() >= max_batch {
                break;
            }
            next = rx.try_recv().ok();
            if next.is_none() {
                // Nothing queued: sleep (see `Linger`), then take what came. A sleep, not a
                // wait on the channel: senders do not wake a sleeping thread, so they pay no
                // system call per write.
                let wait = linger.wait(batch.len(), gathering.elapsed());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                    next = rx.try_recv().ok();
                }
            }
        }
        linger.gathered(batch.len() - retried, gathering.elapsed());
        if batch.is_empty() && pools.is_none() {
            continue;
        }
        let Some(c) = committer.upgrade() else {
            return;
        };
        let at = Instant::now();
        let result = commit(&mut store.conn(), &batch, pools.as_deref());
        c.batch(
            batch.len(),
            at.elapsed().as_secs_f64(),
            result.as_ref().err(),
        );
        match result {
            Ok(()) => {
                pools = None;
                c.committed(&mut batch);
                batch.clear();
                store.restart_wal();
            }
            Err(_) => {
                for w in batch.drain(..) {
                    if let Some(w) = c.failed(w) {
                        retry.push(w);
                    }
                }
            }
        }
        // A UDP worker may have found the connection taken by this commit: its writes wait in
        // the store's queue for whoever lets go of the connection (see `combine`).
        store.combine(&mut combined, &*c, &mut |w| retry.push(w));
        if retry.len() > MAX_RETRY {
            let n = retry.len() - MAX_RETRY;
            tracing::error!(dropped = n, "ledger retry queue full: oldest writes lost");
            retry.drain(..n);
        }
    }
    if !retry.is_empty() {
        tracing::error!(
            writes = retry.len(),
            "ledger stopped with writes it could not commit"
        );
    }
}

/// One transaction: every write's upsert, and the pool capacities if given.
///
/// `BEGIN` and `COMMIT` are statements prepared once (rusqlite's statement cache), not
/// `Connection::transaction`, which parses both again for every batch: ~3,400 instructions a
/// commit, ~900 a row at a few rows per commit (callgrind, `tollgate-load` at 2,000 calls/s).
pub(super) fn commit(
    conn: &mut WriteConn,
    batch: &[Write],
    pools: Option<&[PoolStatus]>,
) -> rusqlite::Result<()> {
    let (conn, upsert) = conn.parts();
    conn.prepare_cached("BEGIN")?.execute([])?;
    let rows = batch.iter().try_for_each(|w| upsert.write(&w.call));
    upsert.clear();
    let result = rows
        .and_then(|()| pools.map_or(Ok(()), |p| write_pools(conn, p)))
        .and_then(|()| conn.prepare_cached("COMMIT")?.execute([]).map(drop));
    if result.is_err() && !conn.is_autocommit() {
        // Nothing of the batch is kept; the caller retries or refuses it.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

fn write_pools(conn: &Connection, pools: &[PoolStatus]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(POOL_UPSERT)?;
    for p in pools {
        stmt.execute(params![
            p.month.to_string(),
            &*p.key.tenant,
            p.key.region.as_str(),
            &*p.key.sku,
            p.key.kind.as_str(),
            p.capacity_seconds as i64,
        ])?;
    }
    Ok(())
}
