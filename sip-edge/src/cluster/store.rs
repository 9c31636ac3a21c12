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
//! - **Calls** (`tg_calls`, [`super::calls`]): every node's calls, one row per (Call-ID,
//!   admitting node), delivered from its ledger after the local commit
//!   ([`ClusterStore::deliver`], idempotent). A call's reservation moves from its node's share
//!   to `reserved` when it arrives; its end moves it to `used` (its charge) and gives the rest
//!   back to `available`. A call ends **once**: whichever end reaches the store first (the
//!   admitting node's, or another node's [`ClusterStore::finish`]) wins; later ones change
//!   nothing. Another node's extension ([`ClusterStore::extend`]) takes from `available` under
//!   the same check as a draw. The one case that can take from `available` without a check: a
//!   call whose node's share expired before the call arrived (the node was silent longer than
//!   the lease, then delivered); it is admitted already, so it is counted
//!   (`Delivered::unbacked`).
//! - Tables are created by the first node under an advisory lock ([`ClusterStore::migrate`]),
//!   so several nodes starting at once are safe.
//!
//! Times are unix seconds passed in by the caller (the driver, or a test), never the database
//! clock: the lease logic is testable and the nodes' clocks are the ones that matter.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};
use tollgate_engine::pools::{MonthKey, PoolKey};

use crate::ledger::rows::{self, parse_kind, parse_month};

/// The schema version this build writes.
pub const VERSION: i32 = 2;

/// From version 1 (calls keyed by Call-ID alone, no `written_by`) to 2: a Call-ID two nodes
/// admitted (a proxy's failover) is two rows, and a row another node changed is found by its
/// writer.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE tg_calls DROP CONSTRAINT tg_calls_pkey;
ALTER TABLE tg_calls ADD PRIMARY KEY (call_id, node_id);
ALTER TABLE tg_calls ADD COLUMN written_by text;
UPDATE tg_calls SET written_by = COALESCE(ended_by, node_id);
ALTER TABLE tg_calls ALTER COLUMN written_by SET NOT NULL;
UPDATE tg_meta SET version = 2;
";

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
    call_id text NOT NULL,
    node_id text NOT NULL,
    account text,
    state text NOT NULL,
    version integer NOT NULL,
    reserved bigint NOT NULL,
    charged bigint NOT NULL,
    month text NOT NULL,
    seq bigint NOT NULL,
    ended_by text,
    written_by text NOT NULL,
    changed bigint NOT NULL,
    row jsonb NOT NULL,
    PRIMARY KEY (call_id, node_id)
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
fn part(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['%', '/']) {
        s.replace('%', "%25").replace('/', "%2F").into()
    } else {
        s.into()
    }
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

/// The account of one user's spending in one month under the tenant's spend limit.
pub fn spend_account(month: MonthKey, tenant: &str, user: &str) -> String {
    format!("spend/{month}/{}/{}", part(tenant), part(user))
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

/// A connection to the cluster store.
pub struct ClusterStore {
    pub(super) client: Client,
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
            Some(1) => tx.batch_execute(MIGRATE_1_TO_2).await?,
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
    pub async fn set_capacities(&self, accounts: &[(&str, u64)]) -> Result<(), ClusterError> {
        let names: Vec<&str> = accounts.iter().map(|(n, _)| *n).collect();
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

    /// The figures of `names`, with what `node` holds of each, in the order of `names`
    /// (`None`: not in the store yet): the driver's tick, which names every account it holds a
    /// share of, matches them by position rather than by name.
    pub async fn accounts_in_order(
        &self,
        names: &[&str],
        node: &str,
    ) -> Result<Vec<Option<AccountRow>>, ClusterError> {
        let rows = self
            .client
            .query(
                "SELECT n.i, a.capacity, a.used, a.reserved, a.held, COALESCE(s.held, 0) \
                 FROM UNNEST($1::text[]) WITH ORDINALITY AS n(account, i) \
                 JOIN tg_accounts a ON a.account = n.account \
                 LEFT JOIN tg_shares s ON s.account = a.account AND s.node_id = $2",
                &[&names, &node],
            )
            .await?;
        let mut out = vec![None; names.len()];
        for r in &rows {
            let i = usize::try_from(r.get::<_, i64>(0) - 1).unwrap_or(usize::MAX);
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(AccountRow {
                    capacity: r.get(1),
                    used: r.get(2),
                    reserved: r.get(3),
                    held: r.get(4),
                    mine: r.get(5),
                });
            }
        }
        Ok(out)
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
