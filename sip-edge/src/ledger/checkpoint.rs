//! WAL checkpoints off the writer thread.
//!
//! Left to itself, SQLite checkpoints inside the commit that takes the WAL past 1000 pages: it
//! copies those pages into the database file and syncs both, milliseconds during which that
//! batch's 302s wait and the next batch cannot commit — a stall every ~15,000 calls, at the
//! tail of the latency. So the writer's connection has automatic checkpoints off
//! (`wal_autocheckpoint = 0`) and this thread, with a connection of its own, runs a `PASSIVE`
//! checkpoint every [`EVERY`]: it copies what no reader still needs and never blocks the writer,
//! which keeps appending meanwhile and starts the WAL over once it has all been copied.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::LedgerError;

/// How often the WAL is copied back. At 100,000 calls/s ~650 pages are appended in this time:
/// about what SQLite's default (1000 pages) would let pile up.
pub const EVERY: Duration = Duration::from_millis(100);

/// The checkpoint thread; dropping it (or [`Checkpointer::stop`]) stops it.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to `path` and starts checkpointing every `every`.
    pub fn start(path: &Path, every: Duration) -> Result<Checkpointer, LedgerError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tollgate-ckpt".into())
            .spawn(move || run(&conn, &flag, every))
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

fn run(conn: &Connection, stop: &(Mutex<bool>, Condvar), every: Duration) {
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
        match checkpoint(conn) {
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
        let mut c = Checkpointer::start(&path, Duration::from_millis(10)).unwrap();
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
