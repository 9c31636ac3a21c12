//! The cluster store (DESIGN §6 "Several nodes"): the pools and credit balances of record in
//! PostgreSQL, the shares nodes hold of them, the nodes, and every node's calls.
//!
//! # The model (the contract every node keeps)
//!
//! - **Accounts** (`tg_accounts`): a pool of one month in seconds
//!   (`pool/2026-12/contoso/US/MCOPSTN1/domestic`, [`pool_account`]) or a tenant's
//!   Communications Credits in micro-units (`credits/contoso`, [`credits_account`]), with
//!   `capacity`, `used` (ended calls' charges), `reserved` (calls still running) and `held`
//!   (shares nodes hold and have not spent). `available = capacity − used − reserved − held`,
//!   and **`used + reserved + held ≤ capacity` at every instant**: every statement that takes
//!   from `available` is conditional on it (`UPDATE … WHERE available >= n`).
//! - **Shares** (`tg_shares`): what one node holds of one account, with the expiry of its lease.
//!   A node's heartbeat renews its leases; a silent node's shares go back to their accounts
//!   once expired ([`ClusterStore::expire_shares`], which any node runs; each share returns
//!   once).
//! - **Calls** (`tg_calls`): every node's calls, delivered from its ledger after the local
//!   commit ([`ClusterStore::deliver`], idempotent). A call's reservation moves from its node's
//!   share to `reserved` when it arrives; its end moves it to `used` (its charge) and gives the
//!   rest back to `available`. A call ends **once**: whichever end reaches the store first (the
//!   admitting node's, or another node's [`ClusterStore::finish`]) wins; later ones change
//!   nothing. The one case that can take from `available` without a check: a call whose node's
//!   share expired before the call arrived (the node was silent longer than the lease, then
//!   delivered); it is admitted already, so it is counted (`Delivered::unbacked`).
//! - Tables are created by the first node under an advisory lock ([`ClusterStore::migrate`]),
//!   so several nodes starting at once are safe.
//!
//! Times are unix seconds passed in by the caller (the driver, or a test), never the database
//! clock: the lease logic is testable and the nodes' clocks are the ones that matter.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Transaction};
use tollgate_engine::pools::{MonthKey, PoolKey};
use tollgate_engine::{CallState, StoredCall, StoredFunding};

use crate::ledger::rows::{self, parse_kind, parse_month, JsonCells};

/// The schema version this build writes.
pub const VERSION: i32 = 1;

/// The advisory lock migrations take (`"toll"`).
const MIGRATION_LOCK: i64 = 0x746f_6c6c;

/// How long one exchange with the store may take before the store counts as unreachable.
pub const TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tg_meta (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS tg_accounts (
    account text PRIMARY KEY,
    capacity bigint NOT NULL DEFAULT 0,
    used bigint NOT NULL DEFAULT 0,
    reserved bigint NOT NULL DEFAULT 0,
    held bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tg_nodes (
    node_id text PRIMARY KEY,
    http text NOT NULL,
    started_at bigint NOT NULL,
    seen_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS tg_shares (
    account text NOT NULL,
    node_id text NOT NULL,
    held bigint NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (account, node_id)
);
CREATE TABLE IF NOT EXISTS tg_calls (
    call_id text PRIMARY KEY,
    node_id text NOT NULL,
    account text,
    state text NOT NULL,
    version integer NOT NULL,
    reserved bigint NOT NULL,
    charged bigint NOT NULL,
    month text NOT NULL,
    seq bigint NOT NULL,
    ended_by text,
    changed bigint NOT NULL,
    row jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS tg_calls_month ON tg_calls (month, seq);
CREATE INDEX IF NOT EXISTS tg_calls_changed ON tg_calls (node_id, changed);
";

/// Why an exchange with the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store cannot be reached (refused, closed, timed out): retried by the driver.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The store answered with an error (a deadlock, a constraint): retried by the driver.
    #[error("{0}")]
    Database(String),
    /// The store holds a schema this build does not know.
    #[error("schema version {0} is newer than this build's ({VERSION})")]
    Schema(i32),
    /// A row this build cannot read.
    #[error("{0}")]
    BadRow(String),
    /// No such call in the store.
    #[error("unknown call")]
    UnknownCall,
    /// Not connected yet.
    #[error("not connected")]
    NotConnected,
}

impl ClusterError {
    /// Whether the connection is lost (the driver connects again).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClusterError::Unreachable(_) | ClusterError::NotConnected
        )
    }
}

impl From<tokio_postgres::Error> for ClusterError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            ClusterError::Database(format!("{}: {}", db.code().code(), db.message()))
        } else {
            ClusterError::Unreachable(e.to_string())
        }
    }
}

impl From<crate::ledger::LedgerError> for ClusterError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        ClusterError::BadRow(e.to_string())
    }
}

/// A name part with `/` and `%` escaped, so account names split back unambiguously.
fn part(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn unpart(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

/// The account of a pool for one month.
pub fn pool_account(month: MonthKey, key: &PoolKey) -> String {
    format!(
        "pool/{month}/{}/{}/{}/{}",
        part(&key.tenant),
        key.region.as_str(),
        part(&key.sku),
        key.kind.as_str()
    )
}

/// The account of a tenant's Communications Credits.
pub fn credits_account(tenant: &str) -> String {
    format!("credits/{}", part(tenant))
}

/// A pool account's month and key, if `name` is one.
pub fn parse_pool_account(name: &str) -> Option<(MonthKey, PoolKey)> {
    let mut it = name.strip_prefix("pool/")?.split('/');
    let month = parse_month(it.next()?)?;
    let tenant = unpart(it.next()?);
    let region = tollgate_engine::numbering::Region::new(it.next()?)?;
    let sku = unpart(it.next()?);
    let kind = parse_kind(it.next()?)?;
    Some((
        month,
        PoolKey {
            tenant: tenant.into(),
            region,
            sku: sku.into(),
            kind,
        },
    ))
}

/// The account a call draws on, and what it reserved and was charged there (seconds of a
/// pool, micro-units of credits).
pub fn call_account(c: &StoredCall) -> Option<(String, i64, i64)> {
    match &c.funding {
        StoredFunding::None => None,
        StoredFunding::Pool { key, month } => Some((
            pool_account(*month, key),
            rows::saturate(c.reserved_seconds),
            rows::saturate(c.charged_seconds),
        )),
        StoredFunding::Credits { .. } => Some((
            credits_account(&c.tenant),
            c.reserved_money.0.max(0),
            c.charged_money.0.max(0),
        )),
    }
}

/// One account's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountRow {
    pub capacity: i64,
    pub used: i64,
    pub reserved: i64,
    pub held: i64,
    /// What the asking node holds of `held`.
    pub mine: i64,
}

impl AccountRow {
    /// What no call and no share holds.
    pub fn available(&self) -> u64 {
        u64::try_from(self.capacity - self.used - self.reserved - self.held).unwrap_or(0)
    }

    /// What the other nodes hold in shares.
    pub fn held_by_others(&self) -> u64 {
        u64::try_from(self.held - self.mine).unwrap_or(0)
    }
}

/// A pool as the cluster sees it (`GET /v1/pools`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRow {
    pub key: PoolKey,
    pub month: MonthKey,
    pub capacity_seconds: u64,
    pub used_seconds: u64,
    pub reserved_seconds: u64,
    /// Unused shares nodes hold.
    pub held_seconds: u64,
}

impl PoolRow {
    /// Capacity − used − reserved − held.
    pub fn remaining_seconds(&self) -> u64 {
        self.capacity_seconds
            .saturating_sub(self.used_seconds)
            .saturating_sub(self.reserved_seconds)
            .saturating_sub(self.held_seconds)
    }
}

/// One node as the store knows it.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub node_id: String,
    pub http: String,
    pub started_at: i64,
    pub seen_at: i64,
    /// (account, held, lease expiry).
    pub shares: Vec<(String, i64, i64)>,
}

/// The nodes and their shares (`GET /v1/cluster`).
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
}

/// What a delivery did.
#[derive(Clone, Debug, Default)]
pub struct Delivered {
    /// Rows that changed the store.
    pub applied: usize,
    /// Calls already ended in the store (by another node) when this node's row arrived.
    pub already_final: Vec<StoredCall>,
    /// Reserved by calls whose node's share had expired before they arrived (see the model).
    pub unbacked: i64,
}

/// What [`ClusterStore::finish`] did.
#[derive(Clone, Debug)]
pub enum Finish {
    /// The call was reserved; it is ended now, by this row.
    Finished,
    /// Another end came first: the row as it stands.
    AlreadyFinal(Box<StoredCall>),
    /// No such call.
    Unknown,
}

/// The stored part of a call that the accounting looks at.
struct Old {
    node: String,
    state: CallState,
    version: i32,
    reserved: i64,
    /// The JSON text of the row.
    row: String,
}

/// Changes a batch makes to accounts, applied in account order (fewer deadlocks between
/// nodes).
#[derive(Default)]
struct Deltas {
    /// (account, node) → reservation to move out of that node's share.
    from_share: HashMap<(String, String), i64>,
    /// account → (reserved, used) changes.
    account: HashMap<String, (i64, i64)>,
}

impl Deltas {
    fn reserve(&mut self, account: &str, node: &str, n: i64) {
        if n > 0 {
            *self
                .from_share
                .entry((account.to_string(), node.to_string()))
                .or_default() += n;
            self.account.entry(account.to_string()).or_default().0 += n;
        }
    }

    fn end(&mut self, account: &str, reserved: i64, charged: i64) {
        let e = self.account.entry(account.to_string()).or_default();
        e.0 -= reserved;
        e.1 += charged.min(reserved);
    }
}

/// A connection to the cluster store.
pub struct ClusterStore {
    client: Client,
}

fn call_state(s: &str) -> Result<CallState, ClusterError> {
    rows::parse_state(s).ok_or_else(|| ClusterError::BadRow(format!("state {s:?}")))
}

/// A stored row (the text of its JSON array) back into a call.
pub fn read_row(call_id: &str, row: &str) -> Result<StoredCall, ClusterError> {
    let cells: Vec<serde_json::Value> = serde_json::from_str(row)
        .map_err(|e| ClusterError::BadRow(format!("call {call_id:?}: {e}")))?;
    Ok(rows::read(&JsonCells {
        cells: &cells,
        call: call_id,
    })?)
}

impl ClusterStore {
    /// Connects (at most [`TIMEOUT`]); the connection runs on the current tokio runtime.
    pub async fn connect(url: &str) -> Result<ClusterStore, ClusterError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| ClusterError::Unreachable(e.to_string()))?;
        config.connect_timeout(TIMEOUT);
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "cluster store connection ended");
            }
        });
        Ok(ClusterStore { client })
    }

    /// Creates or checks the tables, under an advisory lock (several nodes may start at once).
    pub async fn migrate(&mut self) -> Result<(), ClusterError> {
        let tx = self.client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        let v: Option<i32> = tx
            .query_opt("SELECT max(version) FROM tg_meta", &[])
            .await?
            .and_then(|r| r.get(0));
        match v {
            None => {
                tx.execute("INSERT INTO tg_meta (version) VALUES ($1)", &[&VERSION])
                    .await?;
            }
            Some(v) if v > VERSION => return Err(ClusterError::Schema(v)),
            Some(_) => {}
        }
        tx.commit().await?;
        Ok(())
    }

    /// This node is alive: its row is refreshed and its shares' leases renewed.
    pub async fn heartbeat(
        &self,
        node: &str,
        http: &str,
        lease_seconds: u64,
        now: u64,
    ) -> Result<(), ClusterError> {
        let now = rows::saturate(now);
        let until = now.saturating_add(rows::saturate(lease_seconds));
        self.client
            .execute(
                "INSERT INTO tg_nodes (node_id, http, started_at, seen_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (node_id) DO UPDATE SET http = excluded.http, seen_at = excluded.seen_at",
                &[&node, &http, &now],
            )
            .await?;
        self.client
            .execute(
                "UPDATE tg_shares SET expires_at = $2 WHERE node_id = $1",
                &[&node, &until],
            )
            .await?;
        Ok(())
    }

    /// Nodes seen within the last `within` seconds (at least 1: the asking node).
    pub async fn nodes_alive(&self, now: u64, within: u64) -> Result<u64, ClusterError> {
        let since = rows::saturate(now).saturating_sub(rows::saturate(within));
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM tg_nodes WHERE seen_at >= $1",
                &[&since],
            )
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0).max(1))
    }

    /// Sets the capacities this node's directory gives (upsert of `capacity` only).
    pub async fn set_capacities(&self, accounts: &[(String, u64)]) -> Result<(), ClusterError> {
        let names: Vec<&str> = accounts.iter().map(|(n, _)| n.as_str()).collect();
        let caps: Vec<i64> = accounts.iter().map(|(_, c)| rows::saturate(*c)).collect();
        self.client
            .execute(
                "INSERT INTO tg_accounts (account, capacity) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
                 ON CONFLICT (account) DO UPDATE SET capacity = excluded.capacity \
                 WHERE tg_accounts.capacity <> excluded.capacity",
                &[&names, &caps],
            )
            .await?;
        Ok(())
    }

    /// The figures of `names`, with what `node` holds of each.
    pub async fn accounts(
        &self,
        names: &[String],
        node: &str,
    ) -> Result<HashMap<String, AccountRow>, ClusterError> {
        let rows = self
            .client
            .query(
                "SELECT a.account, a.capacity, a.used, a.reserved, a.held, COALESCE(s.held, 0) \
                 FROM tg_accounts a LEFT JOIN tg_shares s \
                 ON s.account = a.account AND s.node_id = $2 WHERE a.account = ANY($1)",
                &[&names, &node],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    AccountRow {
                        capacity: r.get(1),
                        used: r.get(2),
                        reserved: r.get(3),
                        held: r.get(4),
                        mine: r.get(5),
                    },
                )
            })
            .collect())
    }

    /// Draws up to `want` (at least `min`, else nothing) of `account` into `node`'s share:
    /// one statement, conditional on what the account has available (`… WHERE capacity −
    /// used − reserved − held >= min`), which also credits the share and renews its lease to
    /// `lease_seconds` from `now`. Takes `&self`: draws for several accounts go out together
    /// (tokio-postgres pipelines them). Returns what was granted.
    pub async fn draw(
        &self,
        node: &str,
        account: &str,
        want: u64,
        min: u64,
        lease_seconds: u64,
        now: u64,
    ) -> Result<u64, ClusterError> {
        let (want, min) = (rows::saturate(want), rows::saturate(min.max(1)));
        let until = rows::saturate(now).saturating_add(rows::saturate(lease_seconds));
        let granted: i64 = self
            .client
            .query_opt(
                "WITH a AS (SELECT account, LEAST($2, capacity - used - reserved - held) AS g \
                   FROM tg_accounts WHERE account = $1 \
                   AND capacity - used - reserved - held >= $3 FOR UPDATE), \
                 u AS (UPDATE tg_accounts t SET held = t.held + a.g FROM a \
                   WHERE t.account = a.account RETURNING a.g), \
                 s AS (INSERT INTO tg_shares (account, node_id, held, expires_at) \
                   SELECT $1, $4, g, $5 FROM u \
                   ON CONFLICT (account, node_id) DO UPDATE \
                   SET held = tg_shares.held + excluded.held, expires_at = excluded.expires_at) \
                 SELECT g FROM u",
                &[&account, &want, &min, &node, &until],
            )
            .await?
            .map_or(0, |r| r.get(0));
        Ok(u64::try_from(granted).unwrap_or(0))
    }

    /// Returns up to `n` of `node`'s share of `account` to the account, in one statement.
    /// Returns how much.
    pub async fn give_back(&self, node: &str, account: &str, n: u64) -> Result<u64, ClusterError> {
        let n = rows::saturate(n);
        let taken: i64 = self
            .client
            .query_opt(
                "WITH acc AS (SELECT account FROM tg_accounts WHERE account = $1 FOR UPDATE), \
                 old AS (SELECT held FROM tg_shares WHERE account = $1 AND node_id = $2 \
                   AND EXISTS (SELECT 1 FROM acc) FOR UPDATE), \
                 s AS (UPDATE tg_shares t SET held = t.held - LEAST(old.held, $3) FROM old \
                   WHERE t.account = $1 AND t.node_id = $2 RETURNING LEAST(old.held, $3) AS n), \
                 a AS (UPDATE tg_accounts SET held = held - (SELECT n FROM s) \
                   WHERE account = $1 AND EXISTS (SELECT 1 FROM s)) \
                 SELECT n FROM s",
                &[&account, &node, &n],
            )
            .await?
            .map_or(0, |r| r.get(0));
        Ok(u64::try_from(taken).unwrap_or(0))
    }

    /// Shares whose lease ended before `now` go back to their accounts (each once, whichever
    /// node runs this). Returns how many shares.
    pub async fn expire_shares(&mut self, now: u64) -> Result<u64, ClusterError> {
        let now = rows::saturate(now);
        let tx = self.client.transaction().await?;
        // Accounts before shares (see `settle_deltas`).
        tx.execute(
            "SELECT 1 FROM (SELECT account FROM tg_accounts WHERE account IN \
             (SELECT account FROM tg_shares WHERE expires_at < $1) \
             ORDER BY account FOR UPDATE) l",
            &[&now],
        )
        .await?;
        let gone = tx
            .query(
                "DELETE FROM tg_shares WHERE (account, node_id) IN \
                 (SELECT account, node_id FROM tg_shares WHERE expires_at < $1 \
                  ORDER BY account, node_id FOR UPDATE SKIP LOCKED) \
                 RETURNING account, node_id, held",
                &[&now],
            )
            .await?;
        let mut by_account: Vec<(String, i64)> = Vec::new();
        for r in &gone {
            let (account, node, held): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            tracing::info!(%account, %node, held, "a silent node's share returns");
            by_account.push((account, held));
        }
        by_account.sort();
        for (account, held) in &by_account {
            tx.execute(
                "UPDATE tg_accounts SET held = held - $2 WHERE account = $1",
                &[account, held],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(gone.len() as u64)
    }

    /// Applies a batch of `node`'s call rows in one transaction, idempotently (see the model).
    pub async fn deliver(
        &mut self,
        node: &str,
        calls: &[StoredCall],
    ) -> Result<Delivered, ClusterError> {
        let tx = self.client.transaction().await?;
        let mut ids: Vec<&str> = calls.iter().map(|c| c.call_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut old = lock_calls(&tx, &ids).await?;
        let mut deltas = Deltas::default();
        let mut out = Delivered::default();
        let mut upserts: Vec<Box<Upsert>> = Vec::with_capacity(calls.len());
        for c in calls {
            let prev = old.get(&c.call_id);
            match apply(node, prev, c, &mut deltas)? {
                Applied::Changed(upsert) => {
                    upserts.push(upsert);
                    out.applied += 1;
                    // A later row of the same call in this batch sees this one.
                    let owner = prev.map_or_else(|| node.to_string(), |p| p.node.clone());
                    let before = prev.map_or(0, |p| p.reserved);
                    old.insert(
                        c.call_id.clone(),
                        Old {
                            node: owner,
                            state: c.state,
                            version: i32::try_from(c.version).unwrap_or(i32::MAX),
                            reserved: call_account(c).map_or(0, |(_, r, _)| r).max(before),
                            row: rows::to_json(c),
                        },
                    );
                }
                Applied::AlreadyFinal(row) => out.already_final.push(*row),
                Applied::Nothing => {}
            }
        }
        if !upserts.is_empty() {
            write_calls(&tx, &upserts).await?;
        }
        out.unbacked = settle_deltas(&tx, deltas).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Ends a call `node` does not hold (its admitting node may be dead) with `ended`, the
    /// stored row ended by the engine: applied only while the store has it reserved.
    pub async fn finish(&mut self, node: &str, ended: &StoredCall) -> Result<Finish, ClusterError> {
        let tx = self.client.transaction().await?;
        let old = lock_calls(&tx, &[ended.call_id.as_str()]).await?;
        let Some(prev) = old.get(&ended.call_id) else {
            return Ok(Finish::Unknown);
        };
        if prev.state != CallState::Reserved {
            return Ok(Finish::AlreadyFinal(Box::new(read_row(
                &ended.call_id,
                &prev.row,
            )?)));
        }
        let mut deltas = Deltas::default();
        if let Applied::Changed(upsert) = apply(node, Some(prev), ended, &mut deltas)? {
            write_calls(&tx, &[upsert]).await?;
        }
        settle_deltas(&tx, deltas).await?;
        tx.commit().await?;
        Ok(Finish::Finished)
    }

    /// One call, whichever node admitted it.
    pub async fn call(&self, call_id: &str) -> Result<Option<StoredCall>, ClusterError> {
        match self
            .client
            .query_opt(
                "SELECT row::text FROM tg_calls WHERE call_id = $1",
                &[&call_id],
            )
            .await?
        {
            Some(r) => Ok(Some(read_row(call_id, r.get(0))?)),
            None => Ok(None),
        }
    }

    /// Calls `node` admitted that another node ended, written since `cursor`, and the cursor
    /// for the next poll (at most 10,000 at a time). `changed` is the id of the transaction
    /// that wrote a row, and the cursor the oldest transaction still running at the poll
    /// (`pg_snapshot_xmin`): a row committed after a poll by a transaction older than it is
    /// still seen by the next poll (a sequence number taken before commit would be skipped).
    /// A row may come twice; ending a call twice changes nothing.
    pub async fn calls_changed_since(
        &self,
        node: &str,
        cursor: i64,
    ) -> Result<(Vec<StoredCall>, i64), ClusterError> {
        let next: i64 = self
            .client
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                &[],
            )
            .await?
            .get(0);
        let rows = self
            .client
            .query(
                "SELECT call_id, row::text, changed FROM tg_calls WHERE node_id = $1 AND changed >= $2 \
                 AND ended_by IS NOT NULL AND ended_by <> $1 ORDER BY changed LIMIT 10000",
                &[&node, &cursor],
            )
            .await?;
        let calls = rows
            .iter()
            .map(|r| read_row(r.get::<_, &str>(0), r.get(1)))
            .collect::<Result<Vec<_>, _>>()?;
        // A full page: go on from its last transaction next time.
        let next = match rows.last() {
            Some(last) if rows.len() == 10_000 => last.get::<_, i64>(2),
            _ => next,
        };
        Ok((calls, next))
    }

    /// The pools of `month`, cluster-wide.
    pub async fn pools(&self, month: MonthKey) -> Result<Vec<PoolRow>, ClusterError> {
        let prefix = format!("pool/{month}/%");
        let rows = self
            .client
            .query(
                "SELECT account, capacity, used, reserved, held FROM tg_accounts \
                 WHERE account LIKE $1 ORDER BY account",
                &[&prefix],
            )
            .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(rows
            .iter()
            .filter_map(|r| {
                let (month, key) = parse_pool_account(&r.get::<_, String>(0))?;
                Some(PoolRow {
                    key,
                    month,
                    capacity_seconds: n(r.get(1)),
                    used_seconds: n(r.get(2)),
                    reserved_seconds: n(r.get(3)),
                    held_seconds: n(r.get(4)),
                })
            })
            .collect())
    }

    /// Every call charged to `month`, whichever node admitted it, in admission order.
    pub async fn cdrs(&self, month: MonthKey) -> Result<Vec<StoredCall>, ClusterError> {
        let rows = self
            .client
            .query(
                "SELECT call_id, row::text FROM tg_calls WHERE month = $1 ORDER BY seq, call_id",
                &[&month.to_string()],
            )
            .await?;
        rows.iter()
            .map(|r| read_row(r.get::<_, &str>(0), r.get(1)))
            .collect()
    }

    /// The nodes, and the shares each holds.
    pub async fn cluster(&self) -> Result<ClusterView, ClusterError> {
        let nodes = self
            .client
            .query(
                "SELECT node_id, http, started_at, seen_at FROM tg_nodes ORDER BY node_id",
                &[],
            )
            .await?;
        let shares = self
            .client
            .query(
                "SELECT node_id, account, held, expires_at FROM tg_shares ORDER BY node_id, account",
                &[],
            )
            .await?;
        let mut view = ClusterView {
            nodes: nodes
                .iter()
                .map(|r| NodeView {
                    node_id: r.get(0),
                    http: r.get(1),
                    started_at: r.get(2),
                    seen_at: r.get(3),
                    shares: Vec::new(),
                })
                .collect(),
        };
        for r in &shares {
            let node: String = r.get(0);
            if let Some(n) = view.nodes.iter_mut().find(|n| n.node_id == node) {
                n.shares.push((r.get(1), r.get(2), r.get(3)));
            }
        }
        Ok(view)
    }
}

/// Locks the rows of `ids` (sorted) and reads what the accounting needs.
async fn lock_calls(
    tx: &Transaction<'_>,
    ids: &[&str],
) -> Result<HashMap<String, Old>, ClusterError> {
    let rows = tx
        .query(
            "SELECT call_id, node_id, state, version, reserved, row::text FROM tg_calls \
             WHERE call_id = ANY($1) ORDER BY call_id FOR UPDATE",
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.get::<_, String>(0),
                Old {
                    node: r.get(1),
                    state: call_state(r.get(2))?,
                    version: r.get(3),
                    reserved: r.get(4),
                    row: r.get(5),
                },
            ))
        })
        .collect()
}

/// What [`apply`] did with one row.
enum Applied {
    /// The row to write.
    Changed(Box<Upsert>),
    AlreadyFinal(Box<StoredCall>),
    Nothing,
}

/// One call row to write, its parameters owned (the writes of a batch go out together).
struct Upsert {
    call_id: String,
    owner: String,
    account: Option<String>,
    state: &'static str,
    version: i32,
    reserved: i64,
    charged: i64,
    month: String,
    seq: i64,
    ended_by: Option<String>,
    row: String,
}

/// Writes a batch's call rows in one statement (`UNNEST` of one array per column); a call
/// written twice in the batch is written once, as its last row (its accounting already counted
/// both). `changed` is the writing transaction's id: see [`ClusterStore::calls_changed_since`].
async fn write_calls(tx: &Transaction<'_>, upserts: &[Box<Upsert>]) -> Result<(), ClusterError> {
    let mut last: HashMap<&str, &Upsert> = HashMap::with_capacity(upserts.len());
    for u in upserts {
        last.insert(u.call_id.as_str(), u);
    }
    let rows: Vec<&Upsert> = last.into_values().collect();
    let col = |f: fn(&Upsert) -> String| rows.iter().map(|u| f(u)).collect::<Vec<String>>();
    let ids = col(|u| u.call_id.clone());
    let owners = col(|u| u.owner.clone());
    let accounts: Vec<Option<&str>> = rows.iter().map(|u| u.account.as_deref()).collect();
    let states: Vec<&str> = rows.iter().map(|u| u.state).collect();
    let versions: Vec<i32> = rows.iter().map(|u| u.version).collect();
    let reserved: Vec<i64> = rows.iter().map(|u| u.reserved).collect();
    let charged: Vec<i64> = rows.iter().map(|u| u.charged).collect();
    let months = col(|u| u.month.clone());
    let seqs: Vec<i64> = rows.iter().map(|u| u.seq).collect();
    let ended_by: Vec<Option<&str>> = rows.iter().map(|u| u.ended_by.as_deref()).collect();
    let bodies = col(|u| u.row.clone());
    tx.execute(
        "INSERT INTO tg_calls (call_id, node_id, account, state, version, reserved, charged, \
         month, seq, ended_by, changed, row) \
         SELECT c, n, a, s, v, r, ch, m, sq, e, pg_current_xact_id()::text::bigint, rw::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], \
         $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::text[]) \
         AS t(c, n, a, s, v, r, ch, m, sq, e, rw) \
         ON CONFLICT (call_id) DO UPDATE SET state = excluded.state, \
         version = excluded.version, \
         reserved = GREATEST(tg_calls.reserved, excluded.reserved), \
         charged = excluded.charged, ended_by = excluded.ended_by, \
         changed = excluded.changed, row = excluded.row",
        &[
            &ids, &owners, &accounts, &states, &versions, &reserved, &charged, &months, &seqs,
            &ended_by, &bodies,
        ],
    )
    .await?;
    Ok(())
}

/// One call row against what the store holds (see the model); account changes go to
/// `deltas`, the row to write is returned.
fn apply(
    node: &str,
    prev: Option<&Old>,
    c: &StoredCall,
    deltas: &mut Deltas,
) -> Result<Applied, ClusterError> {
    let account = call_account(c);
    let (reserved, charged) = account.as_ref().map_or((0, 0), |(_, r, ch)| (*r, *ch));
    let version = i32::try_from(c.version).unwrap_or(i32::MAX);
    let final_now = c.state != CallState::Reserved;
    match prev {
        Some(p) if p.state != CallState::Reserved => {
            if final_now {
                return Ok(Applied::Nothing);
            }
            // A reserved row of a call already ended elsewhere: its node is behind.
            return Ok(Applied::AlreadyFinal(Box::new(read_row(
                &c.call_id, &p.row,
            )?)));
        }
        Some(p) if !final_now && version <= p.version => return Ok(Applied::Nothing),
        _ => {}
    }
    // The call's admitting node: its share pays for reservations.
    let owner = prev.map_or(node, |p| p.node.as_str());
    if let Some((name, _, _)) = &account {
        let before = prev.map_or(0, |p| p.reserved);
        deltas.reserve(name, owner, reserved - before);
        if final_now {
            deltas.end(name, reserved.max(before), charged);
        }
    }
    Ok(Applied::Changed(Box::new(Upsert {
        call_id: c.call_id.clone(),
        owner: owner.to_string(),
        account: account.map(|(n, _, _)| n),
        state: c.state.as_str(),
        version,
        reserved,
        charged,
        month: c.month().to_string(),
        seq: rows::saturate(c.seq),
        ended_by: final_now.then(|| node.to_string()),
        row: rows::to_json(c),
    })))
}

/// Applies a batch's account changes in account order; returns what was reserved beyond the
/// shares (the unbacked case of the model).
async fn settle_deltas(tx: &Transaction<'_>, d: Deltas) -> Result<i64, ClusterError> {
    let mut from_share: Vec<((String, String), i64)> = d.from_share.into_iter().collect();
    from_share.sort();
    // Accounts before shares, in account order, as every statement here takes them (a draw
    // locks its account, then credits the share): no deadlock between nodes.
    let mut locked: Vec<&str> = d.account.keys().map(String::as_str).collect();
    locked.extend(from_share.iter().map(|((a, _), _)| a.as_str()));
    locked.sort_unstable();
    locked.dedup();
    tx.execute(
        "SELECT 1 FROM (SELECT account FROM tg_accounts WHERE account = ANY($1) \
         ORDER BY account FOR UPDATE) l",
        &[&locked],
    )
    .await?;
    // What each share gives up, in one statement.
    let share_accounts: Vec<&str> = from_share.iter().map(|((a, _), _)| a.as_str()).collect();
    let share_nodes: Vec<&str> = from_share.iter().map(|((_, n), _)| n.as_str()).collect();
    let amounts: Vec<i64> = from_share.iter().map(|(_, n)| *n).collect();
    let took = tx
        .query(
            "WITH req AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
               AS t(account, node_id, n)), \
             old AS (SELECT s.account, s.node_id, s.held, req.n FROM tg_shares s \
               JOIN req USING (account, node_id) ORDER BY s.account, s.node_id FOR UPDATE OF s) \
             UPDATE tg_shares s SET held = s.held - LEAST(old.held, old.n) FROM old \
             WHERE s.account = old.account AND s.node_id = old.node_id \
             RETURNING s.account, LEAST(old.held, old.n)",
            &[&share_accounts, &share_nodes, &amounts],
        )
        .await?;
    let mut held_down: HashMap<String, i64> = HashMap::new();
    let mut took_total = 0;
    for r in &took {
        let n: i64 = r.get(1);
        *held_down.entry(r.get::<_, String>(0)).or_default() += n;
        took_total += n;
    }
    let unbacked = amounts.iter().sum::<i64>() - took_total;
    // Every account's change, in one statement.
    let mut changes = d.account;
    for account in held_down.keys() {
        changes.entry(account.clone()).or_default();
    }
    let mut accounts: Vec<(String, (i64, i64))> = changes.into_iter().collect();
    accounts.sort();
    let names: Vec<&str> = accounts.iter().map(|(a, _)| a.as_str()).collect();
    let reserved: Vec<i64> = accounts.iter().map(|(_, (r, _))| *r).collect();
    let used: Vec<i64> = accounts.iter().map(|(_, (_, u))| *u).collect();
    let held: Vec<i64> = accounts
        .iter()
        .map(|(a, _)| held_down.get(a).copied().unwrap_or(0))
        .collect();
    tx.execute(
        "INSERT INTO tg_accounts (account, reserved, used, held) \
         SELECT a, r, u, 0 - h FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
         AS t(a, r, u, h) \
         ON CONFLICT (account) DO UPDATE SET reserved = tg_accounts.reserved + excluded.reserved, \
         used = tg_accounts.used + excluded.used, held = tg_accounts.held + excluded.held",
        &[&names, &reserved, &used, &held],
    )
    .await?;
    Ok(unbacked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_round_trip() {
        let key = PoolKey {
            tenant: "con/to%so".into(),
            region: tollgate_engine::numbering::Region::new("US").unwrap(),
            sku: "MCOPSTN1".into(),
            kind: tollgate_engine::pools::PoolKind::Domestic,
        };
        let m = MonthKey(2026 * 12 + 11);
        let name = pool_account(m, &key);
        assert_eq!(name, "pool/2026-12/con%2Fto%25so/US/MCOPSTN1/domestic");
        assert_eq!(parse_pool_account(&name), Some((m, key)));
        assert_eq!(parse_pool_account("credits/x"), None);
        assert_eq!(credits_account("a/b"), "credits/a%2Fb");
    }
}
