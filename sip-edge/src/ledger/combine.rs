//! Committing on the threads that receive the calls (flat combining).
//!
//! A UDP worker collects the writes of the calls in one received batch in the [`Collector`] it
//! owns ([`collect`]), adds them to a shared queue, and commits whatever that queue holds if the
//! connection is free ([`Store::next`], one batch per call, each returning its [`Outcome`] for
//! the worker to act on before it looks again). If another thread holds the connection, the worker leaves at once:
//! that thread looks at the queue again after it lets go of the connection, and commits what it
//! finds, so no write is left behind and no worker ever waits for another's commit. When both
//! workers commit at once their batches end up in one transaction, as they would with the
//! writer thread, without a wake-up of another thread per batch.
//!
//! Why not leave it all to the writer thread: at moderate load, handing it a batch costs a
//! futex wake-up, its sleep for the linger and two context switches, which on this 2-core VM
//! weighed more than the commit. At high load the writer thread is the better place again
//! (in parallel with receiving); `transport::pace` decides which (`docs/performance.md`,
//! "Committing on the receiving thread").
//!
//! Why a write is never left behind: a worker adds its writes under the queue's mutex and then
//! tries the connection; a committer lets go of the connection and then checks the queue under
//! the same mutex. If the check comes first, the worker's attempt comes after the connection was
//! let go, so it fails only when a third thread holds it, which checks in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use super::checkpoint::{self, WalTail};
use super::upsert::WriteConn;
use super::{lock, writer, Collector, Outcome, Rejected, Write};

/// The write connection, and the writes waiting for whoever holds it next.
pub(super) struct Store<W> {
    conn: Mutex<WriteConn>,
    queue: Mutex<Vec<Write<W>>>,
    /// How many writes `queue` holds, readable without its lock.
    queued: AtomicUsize,
    /// The checkpointer asks the holder of the connection to finish its copy.
    wal_tail: Arc<WalTail>,
}

impl<W> Store<W> {
    pub fn new(conn: WriteConn) -> Store<W> {
        Store {
            conn: Mutex::new(conn),
            queue: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            wal_tail: Arc::default(),
        }
    }

    /// The flag the checkpointer raises when the WAL should start over.
    pub fn wal_tail(&self) -> Arc<WalTail> {
        Arc::clone(&self.wal_tail)
    }

    /// If the checkpointer asked for it and the connection is free, copies the rest of the WAL
    /// into the database, so that the next commit starts the WAL over (see `checkpoint`).
    /// Called once a batch's answers are out: they do not wait for the copy. Writes queued
    /// meanwhile are committed by the caller's next look at the queue ([`Store::next`]).
    pub fn restart_wal(&self) {
        if !self.wal_tail.is_raised() {
            return;
        }
        // Taken: its holder does it after its own commit.
        let Some(conn) = self.try_conn() else {
            return;
        };
        if self.wal_tail.take() {
            if let Err(e) = checkpoint::checkpoint(&conn) {
                tracing::debug!(error = %e, "ledger checkpoint on the write connection");
            }
        }
    }

    /// The connection if no other thread holds it.
    fn try_conn(&self) -> Option<MutexGuard<'_, WriteConn>> {
        match self.conn.try_lock() {
            Ok(c) => Some(c),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The connection, waiting for it (the writer thread, and start-up).
    pub fn conn(&self) -> MutexGuard<'_, WriteConn> {
        lock(&self.conn)
    }

    /// Adds `writes` (drained) to the queue.
    pub fn add(&self, writes: &mut Vec<Write<W>>) {
        if !writes.is_empty() {
            let mut q = lock(&self.queue);
            q.append(writes);
            self.queued.store(q.len(), Ordering::Relaxed);
        }
    }

    /// How many writes wait in the queue (they pile up only while a commit is slow: a
    /// stalled disk).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Commits what the queue holds, in `batch` (an empty buffer to work in), if it holds
    /// anything and the connection is free, and returns the outcome; `None` when there is
    /// nothing (more) for this caller to commit. Call it again once the outcome is acted on
    /// (and [`Store::restart_wal`]), until `None`: batch after batch while the queue refills.
    pub fn next<'b>(&self, batch: &'b mut Vec<Write<W>>) -> Option<Outcome<'b, W>> {
        loop {
            // Taken: its holder checks the queue once it lets go.
            let mut conn = self.try_conn()?;
            {
                let mut q = lock(&self.queue);
                std::mem::swap(&mut *q, batch);
                self.queued.store(0, Ordering::Relaxed);
            }
            if batch.is_empty() {
                // Let go of the connection, then look at the queue (the order the module doc
                // explains): a write added meanwhile is committed here or by the one that
                // took the connection.
                drop(conn);
                if lock(&self.queue).is_empty() {
                    return None;
                }
                continue;
            }
            let at = Instant::now();
            let mut rejected = Vec::new();
            let result = writer::commit(&mut conn, batch, None, &mut |write, e| {
                rejected.push(Rejected {
                    write,
                    error: e.to_string(),
                });
            });
            drop(conn);
            return Some(Outcome::of(batch, result, rejected, at));
        }
    }
}

/// What [`collect`] did with a write.
pub(super) enum Collected<W> {
    /// Kept for the collector's next commit.
    Kept,
    /// The caller collects, but too much already waits: refuse it (`503 overloaded`).
    Full(Write<W>),
    /// No collector: the write goes to the writer thread.
    NotHere(Write<W>),
}

/// Keeps `w` in `here` for its owner's next commit, unless `waiting` writes (the store's
/// queue) and those already kept are `max` or more.
pub(super) fn collect<W>(
    here: Option<&mut Collector<W>>,
    w: Write<W>,
    waiting: usize,
    max: usize,
) -> Collected<W> {
    match here {
        Some(here) => {
            if waiting + here.mine.len() >= max {
                return Collected::Full(w);
            }
            here.mine.push(w);
            Collected::Kept
        }
        None => Collected::NotHere(w),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashSet;

    use tollgate_engine::{Request, StoredCall};

    use super::*;
    use crate::ledger::query::tests::{engine, NOV};
    use crate::ledger::Synchronous;

    /// Records the Call-IDs of what was committed.
    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl Record {
        /// Acts on every outcome `store` has for `batch`, as a driver does.
        fn commit(&self, store: &Store<()>, batch: &mut Vec<Write<()>>) {
            while let Some(o) = store.next(batch) {
                if let Some(r) = o.rejected.first() {
                    panic!("{} rejected: {}", r.write.call.call_id, r.error);
                }
                if let Some(e) = o.failed {
                    panic!("commit failed: {e}");
                }
                lock(&self.0).extend(o.writes.map(|w| w.call.call_id));
                store.restart_wal();
            }
        }
    }

    /// `n` distinct admitted calls named `{prefix}-{i}`, numbered from `first`.
    pub(in crate::ledger) fn writes(prefix: &str, first: u64, n: u64) -> Vec<Write<()>> {
        let e = engine(NOV);
        let r = Request {
            call_id: "model",
            caller: "alice@contoso.com",
            dialed: "+12065550100",
        };
        assert!(e.authorize(&r, NOV).is_admit());
        let model = e
            .reservations()
            .get("model")
            .map(|r| StoredCall::from_record("model", &r))
            .unwrap();
        (0..n)
            .map(|i| {
                let mut call = model.clone();
                call.call_id = format!("{prefix}-{i}");
                call.seq = first + i;
                Write { call, waiter: () }
            })
            .collect()
    }

    pub(in crate::ledger) fn rows(store: &Store<()>) -> i64 {
        store
            .conn()
            .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_worker_that_finds_the_connection_taken_leaves_its_writes_to_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::new(WriteConn::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap());
        let record = Record::default();
        let holder = store.conn();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut mine = writes("worker", 1, 5);
                store.add(&mut mine);
                // The connection is taken: it leaves at once, its writes queued.
                assert!(store.next(&mut Vec::new()).is_none());
            });
        });
        assert!(lock(&record.0).is_empty());
        drop(holder);
        // What the holder does once it lets go.
        record.commit(&store, &mut Vec::new());
        assert_eq!(lock(&record.0).len(), 5);
        assert_eq!(rows(&store), 5);
        assert!(lock(&store.queue).is_empty());
    }

    #[test]
    fn a_collecting_thread_refuses_writes_once_enough_wait() {
        let mut ws = writes("w", 1, 3).into_iter();
        let mut next = || ws.next().unwrap();
        let mut here = Collector::default();
        // Not collecting: the write goes to the writer thread.
        assert!(matches!(collect(None, next(), 0, 2), Collected::NotHere(_)));
        assert!(matches!(
            collect(Some(&mut here), next(), 0, 2),
            Collected::Kept
        ));
        // One kept here and one in the store's queue: the queue's bound (2) is reached.
        assert!(matches!(
            collect(Some(&mut here), next(), 1, 2),
            Collected::Full(_)
        ));
        assert_eq!(here.mine.len(), 1);
    }

    #[test]
    fn two_workers_committing_at_once_commit_every_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::new(WriteConn::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap());
        let record = Record::default();
        std::thread::scope(|s| {
            for (w, prefix) in ["a", "b"].into_iter().enumerate() {
                let (store, record) = (&store, &record);
                s.spawn(move || {
                    let mut all = writes(prefix, 1 + 1000 * w as u64, 300);
                    let mut spare = Vec::new();
                    while !all.is_empty() {
                        let mut mine: Vec<Write<()>> = all.drain(..all.len().min(7)).collect();
                        store.add(&mut mine);
                        record.commit(store, &mut spare);
                    }
                });
            }
        });
        // Each worker's last commit either committed the queue or found the connection taken
        // by the other, which checked the queue after letting go: nothing is left.
        assert!(lock(&store.queue).is_empty());
        let ids = lock(&record.0);
        assert_eq!(ids.len(), 600);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 600);
        assert_eq!(rows(&store), 600);
    }

    /// Under steady load a `PASSIVE` checkpoint never finds the whole WAL copied (the writer
    /// appended more meanwhile), so SQLite never starts the WAL over and it grows as long as
    /// the load lasts. A reader holding an older snapshot stands in for those appends here:
    /// the checkpoint copies only up to it. Once the checkpointer raises the flag, the write
    /// connection copies the rest, and the next commit starts the WAL over.
    #[test]
    fn the_wal_starts_over_once_the_write_connection_finishes_the_copy() {
        for finish in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.db");
            let store: Store<()> = Store::new(WriteConn::open(&path, Synchronous::Normal).unwrap());
            store
                .conn()
                .execute_batch("PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x BLOB);")
                .unwrap();
            let write = |pages: usize| {
                let mut conn = store.conn();
                let tx = conn.transaction().unwrap();
                for _ in 0..pages {
                    tx.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                        .unwrap();
                }
                tx.commit().unwrap();
            };
            let other = rusqlite::Connection::open(&path).unwrap();
            let reader = rusqlite::Connection::open(&path).unwrap();
            write(100);
            reader
                .execute_batch("BEGIN; SELECT count(*) FROM t;")
                .unwrap();
            write(100);
            let (frames, copied) = checkpoint::checkpoint(&other).unwrap();
            assert!(copied < frames, "{copied} of {frames}");
            reader.execute_batch("COMMIT").unwrap();
            if finish {
                store.wal_tail().raise();
            }
            store.restart_wal();
            write(5);
            let (frames, _) = checkpoint::checkpoint(&other).unwrap();
            if finish {
                assert!(frames < 20, "the WAL started over: {frames} frames");
            } else {
                assert!(
                    frames > 200,
                    "without the copy it only grows: {frames} frames"
                );
            }
        }
    }

    /// The checkpointer raises the flag once the WAL is past its threshold
    /// (`RESTART_FRAMES` in the daemon).
    #[test]
    fn the_checkpointer_asks_for_the_rest_of_a_long_wal() {
        const RESTART: i64 = 300;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let store: Store<()> = Store::new(WriteConn::open(&path, Synchronous::Normal).unwrap());
        {
            let mut conn = store.conn();
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x BLOB);")
                .unwrap();
            let tx = conn.transaction().unwrap();
            for _ in 0..RESTART {
                tx.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let tail = store.wal_tail();
        assert!(!tail.is_raised());
        let mut c = checkpoint::Checkpointer::start(
            &path,
            std::time::Duration::from_millis(5),
            store.wal_tail(),
            RESTART,
        )
        .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !tail.is_raised() {
            assert!(Instant::now() < deadline, "never raised");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        c.stop();
    }
}
