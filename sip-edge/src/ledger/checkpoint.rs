//! WAL checkpoints off the writer thread.
//!
//! Left to itself, SQLite checkpoints inside the commit that takes the WAL past 1000 pages: it
//! copies those pages into the database file and syncs both, milliseconds during which that
//! batch's 302s wait and the next batch cannot commit — a stall every ~15,000 calls, at the
//! tail of the latency. So the writer's connection has automatic checkpoints off
//! (`wal_autocheckpoint = 0`) and this thread, with a connection of its own, runs a `PASSIVE`
//! checkpoint every [`EVERY`]: it copies what no reader still needs and never blocks the writer,
//! which keeps appending meanwhile.
//!
//! SQLite starts the WAL over (writes from its first frame again) only when a write
//! transaction begins and finds *every* frame copied. Under steady load that never happens: by
//! the time a checkpoint has copied what it saw, the writer has appended more. The WAL then
//! grows without end (measured: 133 MB after 5 s at 80k calls/s, beside a 43 MB database),
//! and every commit writes into new pages of the file (the filesystem allocating blocks, the
//! page cache taking fresh pages), which was ~5% of the daemon's CPU. So once a checkpoint
//! finds the WAL past [`RESTART_FRAMES`], it raises a flag ([`WalTail`]), and whoever holds the
//! write connection next, once its batch's answers are out, copies the frames appended since
//! (`Store::restart_wal`): nothing can be appended meanwhile, so the next commit starts the WAL
//! over, and its file is reused. That copy and its two syncs hold the write connection for
//! 0.4–5 ms (median 3 ms, measured at 40–80k calls/s), during which no batch commits: hence a
//! threshold that makes it rare (every few seconds at the highest rates), not every checkpoint.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::LedgerError;

/// How often the WAL is copied back. At 100,000 calls/s ~650 pages are appended in this time:
/// about what SQLite's default (1000 pages) would let pile up.
pub const EVERY: Duration = Duration::from_millis(100);

/// Past this many frames (64 MiB of 4 KiB pages: ~4 s of writes at 80k calls/s), the write
/// connection finishes the copy itself. Under half of `journal_size_limit` (see
/// `schema::open_writer`), so a WAL started over is never cut back and regrown.
pub const RESTART_FRAMES: i64 = 16_384;

/// Raised by the checkpointer when the WAL is past [`RESTART_FRAMES`]; taken down by the holder
/// of the write connection that copies the rest (see the module docs).
#[derive(Debug, Default)]
pub struct WalTail(AtomicBool);

impl WalTail {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Takes the flag down; whether it was up.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// The checkpoint thread; dropping it (or [`Checkpointer::stop`]) stops it.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to `path` and starts checkpointing every `every`, raising `tail`
    /// when the WAL is past `restart_frames` ([`RESTART_FRAMES`]).
    pub fn start(
        path: &Path,
        every: Duration,
        tail: Arc<WalTail>,
        restart_frames: i64,
    ) -> Result<Checkpointer, LedgerError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tollgate-ckpt".into())
            .spawn(move || run(&conn, &flag, every, &tail, restart_frames))
            .map_err(|e| LedgerError::Io("starting the ledger checkpointer".into(), e))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    conn: &Connection,
    stop: &(Mutex<bool>, Condvar),
    every: Duration,
    tail: &WalTail,
    restart_frames: i64,
) {
    let (lock, wake) = stop;
    let mut failing = false;
    let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
    while !*stopped {
        stopped = wake
            .wait_timeout(stopped, every)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
        if *stopped {
            break;
        }
        // On failure (a full disk) the writer goes on and the WAL grows until a checkpoint
        // succeeds again; logged when it starts failing and when it recovers, not every time.
        let result = checkpoint(conn);
        if result
            .as_ref()
            .is_ok_and(|&(frames, _)| frames >= restart_frames)
        {
            tail.raise();
        }
        match result {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "ledger checkpoint failed; retrying");
            }
            Ok(_) if failing => {
                failing = false;
                tracing::info!("ledger checkpoints succeed again");
            }
            _ => {}
        }
    }
}

/// One `PASSIVE` checkpoint: (WAL frames, frames copied into the database).
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{schema, Synchronous};

    #[test]
    fn copies_the_wal_the_writer_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let w = schema::open_writer(&path, Synchronous::Normal).unwrap();
        w.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        w.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        for _ in 0..1500 {
            w.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        // All of it is in the WAL: the database file holds the schema only.
        let size = || std::fs::metadata(&path).unwrap().len();
        assert!(size() < 100_000, "{}", size());
        let mut c = Checkpointer::start(
            &path,
            Duration::from_millis(10),
            Arc::default(),
            RESTART_FRAMES,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < 1500 * 4000 {
            assert!(std::time::Instant::now() < deadline, "{}", size());
            std::thread::sleep(Duration::from_millis(20));
        }
        c.stop();
        // The writer starts the WAL over on its next write.
        w.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let reader = Connection::open(&path).unwrap();
        let (frames, _) = checkpoint(&reader).unwrap();
        assert!(frames < 10, "{frames}");
    }
}
