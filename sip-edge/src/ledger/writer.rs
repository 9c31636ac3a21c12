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

use super::{rows, Committer, Job, Write};

/// A batch this large is worth committing without lingering: a commit costs ~14 µs of CPU plus
/// ~2.3 µs per call (`benches/examples/ledger_rows.rs`, appended rows), so past 32 calls
/// waiting for more saves under half a microsecond per call, and at high rates it would only
/// add latency.
const ENOUGH_TO_COMMIT: usize = 32;

/// How long to wait for more calls once the queue is empty: the rest of `[ledger].linger_us`,
/// but no longer than the last batch's arrival rate says it takes to reach
/// [`ENOUGH_TO_COMMIT`]. At 4,000 calls/s that is the whole linger (4 calls per 1 ms); at
/// 100,000 calls/s about 0.3 ms, so the linger costs little latency where batches fill anyway.
#[derive(Debug)]
struct Linger {
    max: Duration,
    /// Calls per second while the last batch gathered (0: unknown).
    rate: f64,
}

impl Linger {
    fn new(max: Duration) -> Linger {
        Linger { max, rate: 0.0 }
    }

    /// How long to sleep with `have` calls gathered `elapsed` after the first.
    fn wait(&self, have: usize, elapsed: Duration) -> Duration {
        let left = self.max.saturating_sub(elapsed);
        if have >= ENOUGH_TO_COMMIT {
            return Duration::ZERO;
        }
        if self.rate > 0.0 {
            let to_enough = (ENOUGH_TO_COMMIT - have) as f64 / self.rate;
            left.min(Duration::from_secs_f64(to_enough))
        } else {
            left
        }
    }

    /// A batch of `calls` finished gathering `elapsed` after its first call came.
    fn gathered(&mut self, calls: usize, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        self.rate = if calls > 1 && secs > 0.0 {
            (calls - 1) as f64 / secs
        } else {
            0.0
        };
    }
}

/// How often a failed batch is retried when nothing new arrives.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Retried writes kept at most; beyond this the oldest are dropped (and logged): the engine's
/// memory still holds their state, only their durability is lost.
const MAX_RETRY: usize = 1 << 20;

const POOL_UPSERT: &str = "INSERT INTO pools (month, tenant, region, sku, kind, \
    capacity_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (month, tenant, region, sku, \
    kind) DO UPDATE SET capacity_seconds = excluded.capacity_seconds";

pub(super) fn run(
    mut conn: Connection,
    rx: Receiver<Job>,
    committer: Weak<dyn Committer>,
    max_batch: usize,
    linger: Duration,
) {
    let mut retry: Vec<Write> = Vec::new();
    let mut batch: Vec<Write> = Vec::with_capacity(max_batch);
    let mut pools: Option<Vec<PoolStatus>> = None;
    let mut stop = false;
    let mut linger = Linger::new(linger);
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
        let result = commit(&mut conn, &batch, pools.as_deref());
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
            }
            Err(_) => {
                for w in batch.drain(..) {
                    if let Some(w) = c.failed(w) {
                        retry.push(w);
                    }
                }
                if retry.len() > MAX_RETRY {
                    let n = retry.len() - MAX_RETRY;
                    tracing::error!(dropped = n, "ledger retry queue full: oldest writes lost");
                    retry.drain(..n);
                }
            }
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
fn commit(
    conn: &mut Connection,
    batch: &[Write],
    pools: Option<&[PoolStatus]>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(rows::UPSERT)?;
        for w in batch {
            rows::bind(&mut stmt, &w.call)?;
        }
        if let Some(pools) = pools {
            let mut stmt = tx.prepare_cached(POOL_UPSERT)?;
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
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_linger_shrinks_as_the_rate_grows() {
        let mut l = Linger::new(MS);
        // Nothing known yet: the whole linger, less what has passed.
        assert_eq!(l.wait(1, Duration::ZERO), MS);
        assert_eq!(l.wait(1, MS / 4), MS * 3 / 4);
        assert_eq!(l.wait(1, MS * 2), Duration::ZERO);
        // 4 calls in 1 ms (4,000/s): 31 more would take ~7.75 ms, so the whole linger.
        l.gathered(5, MS);
        assert_eq!(l.wait(1, Duration::ZERO), MS);
        // 100 calls per ms: 31 more take 0.31 ms.
        l.gathered(101, MS);
        let w = l.wait(1, Duration::ZERO);
        assert!(w > MS / 4 && w < MS / 3, "{w:?}");
        // A full batch does not wait; one call tells nothing about the rate.
        assert_eq!(l.wait(ENOUGH_TO_COMMIT, Duration::ZERO), Duration::ZERO);
        l.gathered(1, MS);
        assert_eq!(l.wait(1, Duration::ZERO), MS);
    }
}
