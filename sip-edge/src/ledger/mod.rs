//! The durable ledger (DESIGN §6): every admitted call's reservation and settlement in SQLite,
//! written by one thread with group commit, read back at start-up.
//!
//! The call path hands a [`Write`] (the call's whole row, and what to do once it is durable)
//! to [`Ledger::submit`]; the writer thread ([`writer`]) takes everything queued, commits it in
//! one transaction, and only then lets the [`Committer`] send the batch's 302s
//! ("nothing admitted is lost": a 302 leaves only after its reservation is committed). If the
//! commit fails, the committer turns the batch's admissions into `503 store_unavailable`
//! (emergency calls still get their 302) and the writer retries the rest with the next batch,
//! so service resumes by itself when writes succeed again.
//!
//! The queue is bounded (`[ledger].queue`): when it is full the call path answers
//! `503 overloaded` at once rather than letting memory and latency grow.
//!
//! A UDP worker commits its own calls instead, on its own thread ([`Ledger::commit_here`],
//! [`combine`]); the writer thread takes everything else (HTTP `end`/`extend`, expiries, TCP,
//! pool capacities, retries). Both share the one connection: SQLite has one writer at a time.
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use rusqlite::Connection;
use serde::Deserialize;
use tollgate_engine::pools::{MonthKey, PoolStatus};
use tollgate_engine::{Basis, StoredCall};

use crate::server::transactions::TxKey;
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

/// Where a SIP response goes once its batch is committed: the source of the request
/// (DESIGN §2 step 8).
#[derive(Clone, Debug)]
pub enum ReplyTo {
    /// A handle on the receiving UDP socket (a `dup` of it, usable from any thread).
    Udp {
        socket: Arc<std::net::UdpSocket>,
        to: SocketAddr,
    },
    /// The connection's writer.
    Tcp(tokio::sync::mpsc::Sender<Vec<u8>>),
    /// Nowhere (unit tests, and the in-memory seam which answers inline).
    None,
}

impl ReplyTo {
    /// Sends without blocking (`MSG_DONTWAIT` over UDP; [`crate::server`] sends a committed
    /// batch's UDP answers with one `sendmmsg` per socket instead); a full socket buffer or a
    /// closed connection drops the response
    /// (over UDP the client retransmits and gets it from the transaction cache).
    pub fn send(&self, bytes: &[u8]) {
        match self {
            ReplyTo::Udp { socket, to } => {
                if let Err(e) = tollgate_udp::send_one(socket, bytes, *to) {
                    tracing::debug!(error = %e, %to, "udp send");
                }
            }
            ReplyTo::Tcp(tx) => {
                let _ = tx.try_send(bytes.to_vec());
            }
            ReplyTo::None => {}
        }
    }
}

/// A SIP response held until its batch commits.
#[derive(Debug)]
pub struct SipReply {
    /// Shared with the transaction cache once sent.
    pub bytes: Arc<[u8]>,
    pub to: ReplyTo,
    /// Cache the bytes under this INVITE transaction once sent.
    pub tx: Option<TxKey>,
    /// An admission (the bytes are its 302), on this basis.
    pub admit: Option<Basis>,
    /// A new admission, not the replay of one already made: if its batch fails it is undone.
    pub fresh: bool,
    /// The transport label for metrics.
    pub transport: &'static str,
}

/// What happens once a write is durable.
#[derive(Debug)]
pub enum After {
    Nothing,
    Sip(SipReply),
    /// An HTTP handler waits: `true` once committed, `false` if the commit failed.
    Notify(tokio::sync::oneshot::Sender<bool>),
}

/// One call's row and what waits on it.
#[derive(Debug)]
pub struct Write {
    pub call: StoredCall,
    pub after: After,
}

/// Why [`Ledger::submit`] did not queue a write (it is handed back).
#[derive(Debug)]
pub enum Refused {
    /// The queue is full: shed load (`503 overloaded`).
    Full(Box<Write>),
    /// The writer is gone (shutting down, or it died): `503 store_unavailable`.
    Closed(Box<Write>),
}

/// What the daemon does with a batch's writes once the writer knows their fate.
pub trait Committer: Send + Sync + 'static {
    /// The batch's writes are durable (the committer drains `batch`).
    fn committed(&self, batch: &mut Vec<Write>);
    /// Its batch could not be committed. Returns what the writer should try again with the
    /// next batch (state the engine already holds), or `None` to forget it (an admission
    /// refused instead).
    fn failed(&self, w: Write) -> Option<Write>;
    /// `w` can never be committed (its row breaks a constraint or holds a value SQLite
    /// refuses: see `writer::permanent`); it was taken out of its batch, whose other writes
    /// commit without it. Nothing is retried: whatever waits on `w` is told it failed.
    fn rejected(&self, w: Write, error: &rusqlite::Error);
    /// One commit attempt of `records` writes took `seconds`; `error` says why it failed.
    fn batch(&self, records: usize, seconds: f64, error: Option<&rusqlite::Error>);
}

pub(crate) enum Job {
    /// Boxed: a queue slot stays small (the queue is allocated whole, up front).
    Call(Box<Write>),
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
pub struct Ledger {
    durable: Option<Durable>,
}

struct Durable {
    settings: Settings,
    /// The one write connection, and the writes of the UDP workers waiting for it.
    store: Arc<combine::Store>,
    /// Whether [`Ledger::start`] ran.
    started: std::sync::atomic::AtomicBool,
    tx: OnceLock<SyncSender<Job>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<checkpoint::Checkpointer>>,
    /// For the HTTP API's reads (not on the call path).
    reader: Mutex<Option<Connection>>,
    /// This process is the ledger's only writer ([`exclusive`]); released at exit.
    _exclusive: exclusive::Exclusive,
}

impl Ledger {
    /// The in-memory seam.
    pub fn memory() -> Ledger {
        Ledger { durable: None }
    }

    /// Opens (creating or migrating) the ledger file and reads back what start-up recovery
    /// needs for the month of `now` (see [`tollgate_engine::restore`]). Fails with
    /// [`LedgerError::Locked`] if another process has it open this way.
    pub fn open(settings: Settings, now: u64) -> Result<(Ledger, Recovery), LedgerError> {
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

    /// Starts the writer thread; `committer` is told the fate of every write.
    pub fn start(&self, committer: Weak<dyn Committer>) -> Result<(), LedgerError> {
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
            .spawn(move || writer::run(&store, rx, committer, batch, linger))
            .map_err(|e| LedgerError::Io("starting the ledger writer".into(), e))?;
        let _ = d.tx.set(tx);
        *lock(&d.thread) = Some(thread);
        *lock(&d.checkpointer) = Some(checkpointer);
        Ok(())
    }

    /// Queues a write for the next batch (on a thread that [collects](Ledger::collect_here),
    /// for its next [`Ledger::commit_here`]). Never blocks.
    pub fn submit(&self, w: Write) -> Result<(), Refused> {
        let w = match &self.durable {
            Some(d) => match combine::collect(w, d.store.queued(), d.settings.queue) {
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

    /// From now on, writes submitted on this thread wait for this thread's next
    /// [`Ledger::commit_here`] instead of going to the writer (`on`), or go to the writer
    /// again. Returns whether this thread now collects (never for the in-memory seam, nor
    /// before [`Ledger::start`]). Call [`Ledger::commit_here`] before turning it off.
    pub fn collect_here(&self, on: bool) -> bool {
        let on = on && self.durable.as_ref().is_some_and(|d| d.tx.get().is_some());
        combine::set_collecting(on);
        on
    }

    /// Commits the writes this thread collected since its last call, with whatever the other
    /// collecting threads queued, unless another thread is committing (it then commits them
    /// itself: see [`combine`]); `committer` is told each batch's fate, as for the writer's.
    /// What a failed batch's committer wants retried goes to the writer thread, which retries
    /// until a commit succeeds.
    pub fn commit_here(&self, committer: &dyn Committer) {
        let Some(d) = &self.durable else { return };
        let Some((mut mine, mut spare)) = combine::take() else {
            return;
        };
        if !mine.is_empty() {
            d.store.add(&mut mine);
            d.store
                .combine(&mut spare, committer, &mut |w| self.retry(w));
        }
        combine::give_back(mine, spare);
    }

    /// Hands a write whose commit failed on a collecting thread to the writer to retry.
    fn retry(&self, w: Write) {
        let Some(tx) = self.durable.as_ref().and_then(|d| d.tx.get()) else {
            return;
        };
        if tx.try_send(Job::Call(Box::new(w))).is_err() {
            tracing::error!("ledger queue full: a write that failed to commit is lost");
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
impl StoreReader for Ledger {
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
