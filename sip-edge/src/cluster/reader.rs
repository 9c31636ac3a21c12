//! The cluster store through the store seam's read side ([`StoreReader`]), for the CLI
//! (`tollgate pools`, `tollgate cdrs` with `[cluster].store` set): every node's calls and the
//! cluster-wide pools, read with a runtime of its own (the CLI is not async).

use tollgate_engine::pools::{MonthKey, PoolStatus};
use tollgate_engine::StoredCall;

use super::calls::primary;
use super::store::{ClusterError, ClusterStore};
use crate::store::{StoreError, StoreReader};

/// A connection to the cluster store for one command.
pub struct ClusterReader {
    runtime: tokio::runtime::Runtime,
    store: ClusterStore,
}

fn unavailable(e: ClusterError) -> StoreError {
    StoreError::Unavailable(format!("cluster store: {e}"))
}

impl ClusterReader {
    /// Connects to the store at `url`.
    pub fn open(url: &str) -> Result<ClusterReader, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let store = runtime
            .block_on(ClusterStore::connect(url))
            .map_err(unavailable)?;
        Ok(ClusterReader { runtime, store })
    }
}

impl StoreReader for ClusterReader {
    fn call(&self, call_id: &str) -> Result<Option<StoredCall>, StoreError> {
        self.runtime
            .block_on(self.store.calls(call_id))
            .map(|rows| primary(&rows).map(|(_, c)| c.clone()))
            .map_err(unavailable)
    }

    /// The pools cluster-wide: `reserved_seconds` counts calls only; what nodes hold in unused
    /// shares is taken off `remaining_seconds` (DESIGN §6).
    fn pools(&self, month: MonthKey) -> Result<Vec<PoolStatus>, StoreError> {
        let rows = self
            .runtime
            .block_on(self.store.pools(month))
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|p| PoolStatus {
                remaining_seconds: p.remaining_seconds(),
                key: p.key,
                month: p.month,
                capacity_seconds: p.capacity_seconds,
                used_seconds: p.used_seconds,
                reserved_seconds: p.reserved_seconds,
            })
            .collect())
    }

    fn cdrs(&self, month: MonthKey) -> Result<Vec<StoredCall>, StoreError> {
        self.runtime
            .block_on(self.store.cdrs(month))
            .map_err(unavailable)
    }

    /// A node recovers from its own ledger, never from the cluster store.
    fn recovery(&self, _month: MonthKey) -> Result<Vec<StoredCall>, StoreError> {
        Err(StoreError::Unavailable(
            "a node recovers from its own ledger, not from the cluster store".into(),
        ))
    }
}
