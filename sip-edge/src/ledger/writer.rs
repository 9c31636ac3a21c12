//! The writer thread: group commit (DESIGN §6).
//!
//! It blocks for the first write, then takes whatever else is queued (up to the batch size),
//! waiting at most `linger` after the first write for more (`[ledger].linger_us`): while one
//! transaction commits the next batch gathers, so batches grow with the load and a commit costs
//! its calls a share each; the linger keeps batches from being tiny at moderate load, where a
//! commit per handful of calls would cost each of them tens of µs of CPU. The linger shortens
//! itself when calls come fast enough to fill a batch anyway ([`Linger`]).
//!
//! A batch that fails to commit is rolled back whole; the driver, given the [`Outcome`], says
//! what to retry, and the retried writes go first in the next attempt. While something waits for a
//! retry the writer tries again at least once a second, so a ledger whose disk filled up comes
//! back by itself when space returns.
//!
//! A write that can never commit (its row breaks a constraint, or holds a value SQLite refuses:
//! [`permanent`]) must not hold the others hostage: retried with its batch for ever, it would
//! fail every later batch too, and the ledger would refuse every admission and settlement from
//! then on. [`commit`] knows which row failed; a permanent failure takes that write out of the
//! batch (into [`Outcome::rejected`]: the driver logs and counts it, nothing is retried) and
//! commits the rest at once. Failures of the disk or the database (full, I/O, busy) stay whole-batch and retried.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tollgate_engine::pools::PoolStatus;

use super::combine::Store;
use super::linger::{Linger, ENOUGH_TO_COMMIT};
use super::upsert::WriteConn;
use super::{Job, Outcome, Rejected, Write};

/// How often a failed batch is retried when nothing new arrives.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Retried writes kept at most; beyond this the oldest are dropped (and logged): the engine's
/// memory still holds their state, only their durability is lost.
const MAX_RETRY: usize = 1 << 20;

const POOL_UPSERT: &str = "INSERT INTO pools (month, tenant, region, sku, kind, \
    capacity_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (month, tenant, region, sku, \
    kind) DO UPDATE SET capacity_seconds = excluded.capacity_seconds";

/// The writer thread's loop until [`Job::Stop`] (or every sender is gone); `apply` acts on each
/// commit's outcome and returns what to retry.
pub(super) fn run<W>(
    store: &Store<W>,
    rx: Receiver<Job<W>>,
    apply: &mut dyn FnMut(Outcome<'_, W>) -> Vec<Write<W>>,
    max_batch: usize,
    linger: Duration,
) {
    let mut retry: Vec<Write<W>> = Vec::new();
    let mut batch: Vec<Write<W>> = Vec::with_capacity(max_batch);
    let mut combined: Vec<Write<W>> = Vec::new();
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
        let at = Instant::now();
        let mut rejected = Vec::new();
        let result = commit(
            &mut store.conn(),
            &mut batch,
            pools.as_deref(),
            &mut |write, e| {
                rejected.push(Rejected {
                    write,
                    error: e.to_string(),
                });
            },
        );
        let committed = result.is_ok();
        if committed {
            pools = None;
        }
        retry.extend(apply(Outcome::of(&mut batch, result, rejected, at)));
        if committed {
            store.restart_wal();
        }
        // A UDP worker may have found the connection taken by this commit: its writes wait in
        // the store's queue for whoever lets go of the connection (see `combine`).
        while let Some(outcome) = store.next(&mut combined) {
            retry.extend(apply(outcome));
            store.restart_wal();
        }
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
///
/// A row that fails for good ([`permanent`]) is taken out of `batch` and handed to `reject`,
/// and the rest is tried again at once; any other failure rolls the whole batch back and is
/// returned (the caller retries or refuses it).
pub(super) fn commit<W>(
    conn: &mut WriteConn,
    batch: &mut Vec<Write<W>>,
    pools: Option<&[PoolStatus]>,
    reject: &mut dyn FnMut(Write<W>, &rusqlite::Error),
) -> rusqlite::Result<()> {
    loop {
        match attempt(conn, batch, pools) {
            Ok(()) => return Ok(()),
            Err((Some(i), e)) if permanent(&e) && i < batch.len() => {
                // Order within a batch does not matter: each row is a different call.
                let w = batch.swap_remove(i);
                reject(w, &e);
            }
            Err((_, e)) => return Err(e),
        }
    }
}

/// One transaction of `batch`; on failure, the index of the row that failed (`None`: not a
/// row, e.g. `COMMIT`) and why.
fn attempt<W>(
    conn: &mut WriteConn,
    batch: &[Write<W>],
    pools: Option<&[PoolStatus]>,
) -> Result<(), (Option<usize>, rusqlite::Error)> {
    let (conn, upsert) = conn.parts();
    let no_row = |e| (None, e);
    conn.prepare_cached("BEGIN")
        .and_then(|mut s| s.execute([]))
        .map_err(no_row)?;
    let rows = batch
        .iter()
        .enumerate()
        .try_for_each(|(i, w)| upsert.write(&w.call).map_err(|e| (Some(i), e)));
    upsert.clear();
    let result = rows
        .and_then(|()| {
            pools
                .map_or(Ok(()), |p| write_pools(conn, p))
                .map_err(no_row)
        })
        .and_then(|()| {
            conn.prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]))
                .map(drop)
                .map_err(no_row)
        });
    if result.is_err() && !conn.is_autocommit() {
        // Nothing of the batch is kept.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Whether a row's write failed for a reason that no retry can cure: the row itself is at
/// fault (a constraint, a type, a value out of range or too big). Everything else (disk full,
/// I/O, busy, locked, out of memory, read-only, ...) may pass and is retried.
pub(super) fn permanent(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::ToSqlConversionFailure(_)
        | rusqlite::Error::IntegralValueOutOfRange(..) => true,
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            C::ConstraintViolation | C::TypeMismatch | C::TooBig | C::ParameterOutOfRange
        ),
        _ => false,
    }
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
            super::rows::saturate(p.capacity_seconds),
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ledger::combine::tests::{rows, writes};
    use crate::ledger::{lock, Synchronous};

    /// A row SQLite refuses for good: what a value out of range or a broken constraint is.
    const POISON: &str = "CREATE TRIGGER poison BEFORE INSERT ON calls \
        WHEN NEW.call_id LIKE 'poison%' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;";

    fn store() -> (tempfile::TempDir, Store<()>) {
        let dir = tempfile::tempdir().unwrap();
        let conn = WriteConn::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap();
        conn.execute_batch(POISON).unwrap();
        (dir, Store::new(conn))
    }

    /// The Call-IDs of each fate, as the daemon's driver is told them.
    #[derive(Default)]
    struct Fate {
        committed: Mutex<Vec<String>>,
        failed: Mutex<Vec<String>>,
        rejected: Mutex<Vec<String>>,
    }

    impl Fate {
        /// Records `o`; returns what failed, to try again with the next batch (as the daemon
        /// does for a settlement).
        fn apply(&self, o: Outcome<'_, ()>) -> Vec<Write<()>> {
            lock(&self.rejected).extend(o.rejected.into_iter().map(|r| r.write.call.call_id));
            if o.failed.is_none() {
                lock(&self.committed).extend(o.writes.map(|w| w.call.call_id));
                return Vec::new();
            }
            let failed: Vec<Write<()>> = o.writes.collect();
            lock(&self.failed).extend(failed.iter().map(|w| w.call.call_id.clone()));
            failed
        }
    }

    fn sorted(m: &Mutex<Vec<String>>) -> Vec<String> {
        let mut v = lock(m).clone();
        v.sort();
        v
    }

    #[test]
    fn a_row_that_can_never_commit_is_taken_out_and_the_rest_of_its_batch_commits() {
        let (_dir, store) = store();
        let mut batch = writes("a", 1, 3);
        batch.extend(writes("poison", 10, 2));
        batch.extend(writes("b", 20, 2));
        let mut rejected = Vec::new();
        let r = commit(&mut store.conn(), &mut batch, None, &mut |w, e| {
            assert!(permanent(e), "{e}");
            rejected.push(w.call.call_id);
        });
        assert!(r.is_ok(), "{r:?}");
        rejected.sort();
        assert_eq!(rejected, ["poison-0", "poison-1"]);
        assert_eq!(batch.len(), 5);
        assert_eq!(rows(&store), 5);
    }

    #[test]
    fn a_failure_of_the_database_is_not_blamed_on_a_row() {
        let (_dir, store) = store();
        // Every write now fails as on a read-only file: it may pass, so it is retried whole.
        store.conn().execute_batch("PRAGMA query_only = 1").unwrap();
        let mut batch = writes("a", 1, 3);
        let r = commit(&mut store.conn(), &mut batch, None, &mut |w, e| {
            panic!("{} rejected for {e}", w.call.call_id)
        });
        let e = r.unwrap_err();
        assert!(!permanent(&e), "{e}");
        assert_eq!(batch.len(), 3);
        store.conn().execute_batch("PRAGMA query_only = 0").unwrap();
        assert_eq!(rows(&store), 0);
    }

    /// Before, the poisoned write failed its batch, was retried with every later one and
    /// failed them all: nothing was ever committed again.
    #[test]
    fn the_writer_keeps_committing_after_a_write_that_can_never_commit() {
        let (_dir, store) = store();
        let fate = Fate::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        std::thread::scope(|s| {
            let (store, fate) = (&store, &fate);
            s.spawn(move || run(store, rx, &mut |o| fate.apply(o), 16, Duration::ZERO));
            for w in writes("poison", 1, 1).into_iter().chain(writes("a", 2, 3)) {
                tx.send(Job::Call(Box::new(w))).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
            for w in writes("b", 10, 3) {
                tx.send(Job::Call(Box::new(w))).unwrap();
            }
            tx.send(Job::Stop).unwrap();
        });
        assert_eq!(
            sorted(&fate.committed),
            ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]
        );
        assert_eq!(sorted(&fate.rejected), ["poison-0"]);
        assert!(lock(&fate.failed).is_empty(), "{:?}", lock(&fate.failed));
        assert_eq!(rows(&store), 6);
    }
}
