//! The store seam, read side: what the HTTP API, the CLI and start-up recovery read back from
//! where admitted calls are kept — calls, pools, call records — free of SIP, sockets and SQL.
//!
//! Today the one store is the SQLite ledger (the daemon's [`crate::ledger::Ledger`], and a
//! read-only [`crate::ledger::Reader`] for the CLI while the daemon runs); a store shared by
//! several nodes (DESIGN §6) is another implementation of the same trait. Errors carry no
//! driver type: [`StoreError`] says what failed in words.

use tollgate_engine::pools::{MonthKey, PoolStatus};
use tollgate_engine::StoredCall;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The daemon keeps nothing durable (`[ledger].enabled = false`): there is nothing to read.
    #[error("the ledger is in memory only")]
    NotDurable,
    /// The store could not be read (its message says why).
    #[error("{0}")]
    Unavailable(String),
}

/// What a store reads back.
pub trait StoreReader {
    /// One call by Call-ID, whatever its state; `None` if unknown.
    fn call(&self, call_id: &str) -> Result<Option<StoredCall>, StoreError>;
    /// The pools of `month` as they stood at the end of their last write.
    fn pools(&self, month: MonthKey) -> Result<Vec<PoolStatus>, StoreError>;
    /// Every call charged to `month`, in admission order (`tollgate cdrs`).
    fn cdrs(&self, month: MonthKey) -> Result<Vec<StoredCall>, StoreError>;
    /// What start-up needs to rebuild the engine for `month`: open reservations, calls charged
    /// this month, credits calls ([`tollgate_engine::restore`]).
    fn recovery(&self, month: MonthKey) -> Result<Vec<StoredCall>, StoreError>;
}
