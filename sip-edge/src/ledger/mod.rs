//! The durable ledger (DESIGN §6): every admitted call's reservation and settlement in SQLite,
//! written by one thread with group commit, read back at start-up.
//!
//! The call path hands a [`Write`] (the call's whole row, and a `W` that waits on it: the
//! ledger knows nothing of what that is) to [`Ledger::submit`]; the writer thread ([`writer`])
//! takes everything queued and commits it in one transaction. The ledger answers no one: each
//! commit attempt yields an [`Outcome`] (what committed, or why the batch failed; what can
//! never commit) that the driver acts on, and the driver says what to retry with the next
//! batch, so service resumes by itself when writes succeed again. What the daemon does with
//! an outcome (a 302 leaves only after its commit) is `server::durable`'s.
//!
//! The queue is bounded (`[ledger].queue`): when it is full the call path answers
//! `503 overloaded` at once rather than letting memory and latency grow.
//!
//! A UDP worker commits its own calls instead, on its own thread: it owns a [`Collector`],
//! submits its calls' writes into it and then calls [`Ledger::commit`] until it has no more
//! outcomes ([`combine`]); the writer thread takes everything else (HTTP `end`/`extend`,
//! expiries, TCP, pool capacities, retries). Both share the one connection: SQLite has one
//! writer at a time.
//!
//! [`Ledger::memory`] is the in-memory seam: no file, nothing durable, the call path answers at
//! once. It exists for `[ledger].enabled = false` and for measuring what the ledger costs.

mod checkpoint;
mod combine;
mod exclusive;
pub mod linger;
pub(crate) mod query;
pub mod rows;
pub mod schema;
mod upsert;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use rusqlite::Connection;
use serde::Deserialize;
use tollgate_engine::pools::{MonthKey, PoolStatus};
use tollgate_engine::StoredCall;

use crate::store::{StoreError, StoreReader};

/// Why the ledger could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("schema version {0} is not one this build can read (it writes {v})", v = schema::VERSION)]
    Schema(i64),
    #[error("call {call_id:?}: column {column} holds a value this build cannot read")]
    BadRow {
        call_id: String,
        column: &'static str,
    },
    #[error("the ledger is in memory only")]
    NotDurable,
    #[error(
        "in use by another tollgate ({}lock {}): one daemon writes a ledger at a time",
        pid.map(|p| format!("pid {p}, ")).unwrap_or_default(),
        lock.display()
    )]
    Locked { lock: PathBuf, pid: Option<u32> },
}

/// `[ledger].synchronous`: SQLite's `synchronous` in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Each commit reaches the operating system before its 302s leave: nothing is lost when
    /// the process dies (`kill -9`, panic, OOM); an OS crash or power cut may lose the last
    /// commits.
    #[default]
    Normal,
    /// Each commit is also `fsync`ed: survives power loss, at the cost of a disk flush per
    /// batch (group commit amortises it over the calls of the batch).
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Ledger settings (`[ledger]`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Writes waiting for the writer at most.
    pub queue: usize,
    /// Writes per transaction at most.
    pub batch: usize,
    /// How long a batch may wait for more writes after its first one.
    pub linger: std::time::Duration,
}

/// One call's row and what waits on it (`W`: the driver's, e.g. a held SIP answer; the ledger
/// only carries it to the [`Outcome`] of the commit that decides its fate).
#[derive(Debug)]
pub struct Write<W> {
    pub call: StoredCall,
    pub waiter: W,
}

/// Why [`Ledger::submit`] did not queue a write (it is handed back).
#[derive(Debug)]
pub enum Refused<W> {
    /// The queue is full: shed load (`503 overloaded`).
    Full(Box<Write<W>>),
    /// The writer is gone (shutting down, or it died): `503 store_unavailable`.
    Closed(Box<Write<W>>),
}

/// Why a batch could not be committed, in words: the driver logs it and answers what waits;
/// no driver type leaks past the ledger.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommitError(String);

/// A write taken out of its batch because it can never be committed (its row breaks a
/// constraint or holds a value SQLite refuses: see `writer::permanent`); the rest of its
/// batch commits without it.
#[derive(Debug)]
pub struct Rejected<W> {
    pub write: Write<W>,
    /// Why, in words.
    pub error: String,
}

/// What one commit attempt did: the value the driver acts on once the connection is let go,
/// as a sans-I/O protocol hands back what to transmit. The ledger never answers anyone
/// itself; whatever waits on a write learns its fate only from here.
#[derive(Debug)]
pub struct Outcome<'a, W> {
    /// The batch's writes: durable if `failed` is `None`, else rolled back whole. Whatever
    /// the driver leaves in the iterator is dropped.
    pub writes: std::vec::Drain<'a, Write<W>>,
    /// Why the batch was rolled back.
    pub failed: Option<CommitError>,
    /// Writes that can never commit, taken out of the batch (not retried).
    pub rejected: Vec<Rejected<W>>,
    /// Writes the attempt held (`writes`).
    pub records: usize,
    /// How long the attempt took.
    pub seconds: f64,
}

impl<'a, W> Outcome<'a, W> {
    /// The outcome of committing `batch` (whose permanently failing rows are in `rejected`),
    /// started at `at`.
    fn of(
        batch: &'a mut Vec<Write<W>>,
        result: rusqlite::Result<()>,
        rejected: Vec<Rejected<W>>,
        at: std::time::Instant,
    ) -> Outcome<'a, W> {
        Outcome {
            records: batch.len(),
            seconds: at.elapsed().as_secs_f64(),
            failed: result.err().map(|e| CommitError(e.to_string())),
            rejected,
            writes: batch.drain(..),
        }
    }
}

/// A UDP worker's writes since its last commit, and a buffer to commit in: owned by the worker
/// and handed to [`Ledger::submit`] for the calls it handles, then to [`Ledger::commit`]
/// (flat combining, see `combine`). Threads without one submit to the writer thread.
#[derive(Debug)]
pub struct Collector<W> {
    mine: Vec<Write<W>>,
    spare: Vec<Write<W>>,
    /// Between a [`Ledger::commit`] that returned an outcome and the one that returns `None`.
    combining: bool,
}

impl<W> Default for Collector<W> {
    fn default() -> Collector<W> {
        Collector {
            mine: Vec::new(),
            spare: Vec::new(),
            combining: false,
        }
    }
}

pub(crate) enum Job<W> {
    /// Boxed: a queue slot stays small (the queue is allocated whole, up front).
    Call(Box<Write<W>>),
    /// This month's pool capacities (at start, after a reload, at rollover).
    Pools(Vec<PoolStatus>),
    Stop,
}

/// What the engine needs back from the ledger at start-up.
pub struct Recovery {
    /// For [`tollgate_engine::Engine::restore`].
    pub calls: Vec<StoredCall>,
    /// For [`tollgate_engine::Engine::seq_floor`]: one past the highest `seq` stored.
    pub next_seq: u64,
}

/// The ledger: durable (SQLite) or the in-memory seam.
pub struct Ledger<W> {
    durable: Option<Durable<W>>,
}

struct Durable<W> {
    settings: Settings,
    /// The one write connection, and the writes of the UDP workers waiting for it.
    store: Arc<combine::Store<W>>,
    /// Whether [`Ledger::start`] ran.
    started: std::sync::atomic::AtomicBool,
    tx: OnceLock<SyncSender<Job<W>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<checkpoint::Checkpointer>>,
    /// For the HTTP API's reads (not on the call path).
    reader: Mutex<Option<Connection>>,
    /// This process is the ledger's only writer ([`exclusive`]); released at exit.
    _exclusive: exclusive::Exclusive,
}

impl<W: Send + 'static> Ledger<W> {
    /// The in-memory seam.
    pub fn memory() -> Ledger<W> {
        Ledger { durable: None }
    }

    /// Opens (creating or migrating) the ledger file and reads back what start-up recovery
    /// needs for the month of `now` (see [`tollgate_engine::restore`]). Fails with
    /// [`LedgerError::Locked`] if another process has it open this way.
    pub fn open(settings: Settings, now: u64) -> Result<(Ledger<W>, Recovery), LedgerError> {
        let exclusive = exclusive::acquire(&settings.path)?;
        let conn = upsert::WriteConn::open(&settings.path, settings.synchronous)?;
        let recovery = Recovery {
            calls: query::recovery(&conn, tollgate_engine::pools::MonthKey::of(now))?,
            next_seq: query::next_seq(&conn)?,
        };
        let ledger = Ledger {
            durable: Some(Durable {
                settings,
                store: Arc::new(combine::Store::new(conn)),
                started: std::sync::atomic::AtomicBool::new(false),
                tx: OnceLock::new(),
                thread: Mutex::new(None),
                checkpointer: Mutex::new(None),
                reader: Mutex::new(None),
                _exclusive: exclusive,
            }),
        };
        Ok((ledger, recovery))
    }

    /// Whether writes go to a file (else answers leave at once and nothing survives a restart).
    pub fn is_durable(&self) -> bool {
        self.durable.is_some()
    }

    /// `[ledger].linger_us` (zero for the in-memory seam).
    pub fn linger(&self) -> std::time::Duration {
        self.durable
            .as_ref()
            .map_or(std::time::Duration::ZERO, |d| d.settings.linger)
    }

    pub fn path(&self) -> Option<&Path> {
        self.durable.as_ref().map(|d| d.settings.path.as_path())
    }

    /// Starts the writer thread; `apply` is the driver's hand on it: it gets the [`Outcome`]
    /// of every commit the writer makes, right after it (the writer's answers leave from that
    /// thread, with no hop to another), and returns what to try again with the next batch.
    pub fn start(
        &self,
        mut apply: impl FnMut(Outcome<'_, W>) -> Vec<Write<W>> + Send + 'static,
    ) -> Result<(), LedgerError> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        if d.started.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        let store = Arc::clone(&d.store);
        // Checkpoints run on their own thread ([`checkpoint`]).
        store.conn().pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = checkpoint::Checkpointer::start(
            &d.settings.path,
            checkpoint::EVERY,
            store.wal_tail(),
            checkpoint::RESTART_FRAMES,
        )?;
        let (tx, rx) = std::sync::mpsc::sync_channel(d.settings.queue.max(1));
        let (batch, linger) = (d.settings.batch.max(1), d.settings.linger);
        let thread = std::thread::Builder::new()
            .name("tollgate-ledger".into())
            .spawn(move || writer::run(&store, rx, &mut apply, batch, linger))
            .map_err(|e| LedgerError::Io("starting the ledger writer".into(), e))?;
        let _ = d.tx.set(tx);
        *lock(&d.thread) = Some(thread);
        *lock(&d.checkpointer) = Some(checkpointer);
        Ok(())
    }

    /// Whether a thread may commit its own writes ([`Collector`], [`Ledger::commit`]): the
    /// ledger is durable and its writer started (it takes what such a commit must retry).
    pub fn collects(&self) -> bool {
        self.durable.as_ref().is_some_and(|d| d.tx.get().is_some())
    }

    /// Queues a write for the next batch: in `here`, for its owner's next [`Ledger::commit`],
    /// or without one for the writer thread. Never blocks.
    pub fn submit(&self, w: Write<W>, here: Option<&mut Collector<W>>) -> Result<(), Refused<W>> {
        let w = match &self.durable {
            Some(d) => match combine::collect(here, w, d.store.queued(), d.settings.queue) {
                combine::Collected::Kept => return Ok(()),
                combine::Collected::Full(w) => return Err(Refused::Full(Box::new(w))),
                combine::Collected::NotHere(w) => w,
            },
            None => w,
        };
        let Some(tx) = self.durable.as_ref().and_then(|d| d.tx.get()) else {
            return Err(Refused::Closed(Box::new(w)));
        };
        match tx.try_send(Job::Call(Box::new(w))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Job::Call(w))) => Err(Refused::Full(w)),
            Err(TrySendError::Disconnected(Job::Call(w))) => Err(Refused::Closed(w)),
            Err(_) => Ok(()),
        }
    }

    /// Records this month's pool capacities; `false` if the queue is full (try again later).
    pub fn write_pools(&self, statuses: Vec<PoolStatus>) -> bool {
        match self.durable.as_ref().and_then(|d| d.tx.get()) {
            Some(tx) => !matches!(
                tx.try_send(Job::Pools(statuses)),
                Err(TrySendError::Full(_))
            ),
            None => true,
        }
    }

    /// Commits what is queued and stops the writer (SIGTERM).
    pub fn stop(&self) {
        let Some(d) = &self.durable else { return };
        if let Some(tx) = d.tx.get() {
            let _ = tx.send(Job::Stop);
        }
        if let Some(t) = lock(&d.thread).take() {
            let _ = t.join();
        }
        if let Some(mut c) = lock(&d.checkpointer).take() {
            c.stop();
        }
    }

    /// Commits, on the calling thread, the writes `here` collected since the last call, with
    /// whatever the other collecting threads queued, unless another thread is committing (it
    /// then commits them itself: see `combine`). Returns each batch's [`Outcome`] in turn:
    /// call it again, once the outcome is acted on, until it returns `None`. What the driver
    /// wants retried goes to [`Ledger::retry`].
    pub fn commit<'c>(&self, here: &'c mut Collector<W>) -> Option<Outcome<'c, W>> {
        let d = self.durable.as_ref()?;
        if !here.mine.is_empty() {
            d.store.add(&mut here.mine);
            here.combining = true;
        } else if here.combining {
            // The last batch's answers are out: the WAL may start over now.
            d.store.restart_wal();
        }
        if !here.combining {
            return None;
        }
        let outcome = d.store.next(&mut here.spare);
        here.combining = outcome.is_some();
        outcome
    }

    /// Hands writes whose commit failed on a collecting thread to the writer to retry.
    pub fn retry(&self, writes: Vec<Write<W>>) {
        if writes.is_empty() {
            return;
        }
        let Some(tx) = self.durable.as_ref().and_then(|d| d.tx.get()) else {
            return;
        };
        for w in writes {
            if tx.try_send(Job::Call(Box::new(w))).is_err() {
                tracing::error!("ledger queue full: a write that failed to commit is lost");
            }
        }
    }

    /// Runs `f` on the read connection (opened on first use).
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError>,
    ) -> Result<T, StoreError> {
        let d = self.durable.as_ref().ok_or(StoreError::NotDurable)?;
        let mut guard = lock(&d.reader);
        if guard.is_none() {
            *guard = Some(schema::open_reader(&d.settings.path).map_err(unavailable)?);
        }
        match guard.as_ref() {
            Some(c) => f(c).map_err(unavailable),
            None => Err(StoreError::NotDurable),
        }
    }
}

/// The daemon's ledger, read through its own read connection (WAL: never blocks the writer).
impl<W: Send + 'static> StoreReader for Ledger<W> {
    fn call(&self, call_id: &str) -> Result<Option<StoredCall>, StoreError> {
        self.read(|c| query::call(c, call_id))
    }
    fn pools(&self, month: MonthKey) -> Result<Vec<PoolStatus>, StoreError> {
        self.read(|c| query::pools(c, month))
    }
    fn cdrs(&self, month: MonthKey) -> Result<Vec<StoredCall>, StoreError> {
        self.read(|c| query::cdrs(c, month))
    }
    fn recovery(&self, month: MonthKey) -> Result<Vec<StoredCall>, StoreError> {
        self.read(|c| query::recovery(c, month))
    }
}

/// A ledger file opened **read-only** by another process than the daemon (`tollgate cdrs`,
/// `pools`, `decide`), while the daemon runs or not: WAL readers never block the writer, and
/// nothing here takes the lock the daemon holds.
pub struct Reader {
    conn: Connection,
}

impl Reader {
    /// Opens the ledger file at `path` read-only.
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        Ok(Reader {
            conn: schema::open_reader(path).map_err(unavailable)?,
        })
    }
}

impl StoreReader for Reader {
    fn call(&self, call_id: &str) -> Result<Option<StoredCall>, StoreError> {
        query::call(&self.conn, call_id).map_err(unavailable)
    }
    fn pools(&self, month: MonthKey) -> Result<Vec<PoolStatus>, StoreError> {
        query::pools(&self.conn, month).map_err(unavailable)
    }
    fn cdrs(&self, month: MonthKey) -> Result<Vec<StoredCall>, StoreError> {
        query::cdrs(&self.conn, month).map_err(unavailable)
    }
    fn recovery(&self, month: MonthKey) -> Result<Vec<StoredCall>, StoreError> {
        query::recovery(&self.conn, month).map_err(unavailable)
    }
}

/// A ledger error as the store seam says it: in words, no driver type.
fn unavailable(e: LedgerError) -> StoreError {
    match e {
        LedgerError::NotDurable => StoreError::NotDurable,
        e => StoreError::Unavailable(e.to_string()),
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
