//! Every node's calls in the cluster store (`tg_calls`, see the model in [`super::store`]):
//! delivered from each node's ledger by its outbox, ended once whichever node receives the end,
//! and read back by any node (`GET /v1/calls/{id}`, `tollgate cdrs`).

use std::collections::{HashMap, HashSet};

use tokio_postgres::Transaction;
use tollgate_engine::pools::MonthKey;
use tollgate_engine::{CallState, StoredCall, StoredFunding};

use super::store::{credits_account, pool_account, spend_account, ClusterError, ClusterStore};
use crate::ledger::rows::{self, JsonCells};

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

/// The other account a call's figures move, beside [`call_account`]'s: a credits call under a
/// user spend limit moves the same money on the user's allowance of the month
/// ([`spend_account`]).
pub fn spend_account_of(c: &StoredCall) -> Option<String> {
    match &c.funding {
        StoredFunding::Credits {
            spend: Some((user, month)),
            ..
        } => Some(spend_account(*month, &c.tenant, user)),
        _ => None,
    }
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
    /// Calls still reserved here whose Call-ID another node admitted too and has seen ended
    /// by a report (settled or released): the same call, admitted twice after a proxy's
    /// failover; this node releases its admission.
    pub duplicates: Vec<String>,
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

fn call_state(s: &str) -> Result<CallState, ClusterError> {
    rows::parse_state(s).ok_or_else(|| ClusterError::BadRow(format!("state {s:?}")))
}

/// Of the rows of one Call-ID with their admitting nodes (several when two nodes admitted the
/// same INVITE, a proxy's failover), the one that stands for the call: an ended one with a
/// charge reported (settled: the call was ended), else the reserved one admitted last (the 302
/// the proxy most likely followed), else an expired one, else the latest.
pub fn primary(rows: &[(String, StoredCall)]) -> Option<&(String, StoredCall)> {
    let rank = |s: CallState| match s {
        CallState::Settled => 3,
        CallState::Reserved => 2,
        CallState::Expired => 1,
        CallState::Released => 0,
    };
    rows.iter()
        .max_by_key(|(_, c)| (rank(c.state), c.started_at, c.seq))
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
    /// Applies a batch of `node`'s call rows in one transaction, idempotently (see the model).
    ///
    /// A Call-ID other nodes admitted too (the same INVITE after a proxy's failover) names one
    /// call: when this batch ends it by a report (settled or released), their admissions still
    /// reserved are released here, by `release` (the engine's arithmetic,
    /// [`tollgate_engine::Engine::end_stored`]); when another node ended it first, this node's
    /// admission is listed in [`Delivered::duplicates`] for this node to release.
    pub async fn deliver(
        &mut self,
        node: &str,
        calls: &[StoredCall],
        release: impl Fn(StoredCall) -> StoredCall,
    ) -> Result<Delivered, ClusterError> {
        let tx = self.client.transaction().await?;
        let mut ids: Vec<&str> = calls.iter().map(|c| c.call_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        // Every row of these Call-IDs, this node's and (almost never) other nodes', locked in
        // one statement, in (Call-ID, node) order like every delivery.
        let mut old: HashMap<String, Old> = HashMap::with_capacity(ids.len());
        let mut ended_elsewhere: HashSet<String> = HashSet::new();
        let mut reserved_elsewhere: HashMap<String, Vec<String>> = HashMap::new();
        for r in tx
            .query(
                "SELECT call_id, node_id = $1, state, version, reserved, \
                 CASE WHEN node_id = $1 THEN row::text END, node_id FROM tg_calls \
                 WHERE call_id = ANY($2) ORDER BY call_id, node_id FOR UPDATE",
                &[&node, &ids],
            )
            .await?
        {
            let state = call_state(r.get(2))?;
            if r.get::<_, bool>(1) {
                let row: Option<String> = r.get(5);
                old.insert(
                    r.get(0),
                    Old {
                        state,
                        version: r.get(3),
                        reserved: r.get(4),
                        row: row.unwrap_or_default(),
                    },
                );
                continue;
            }
            match state {
                CallState::Settled | CallState::Released => {
                    ended_elsewhere.insert(r.get(0));
                }
                CallState::Reserved => reserved_elsewhere
                    .entry(r.get(6))
                    .or_default()
                    .push(r.get(0)),
                CallState::Expired => {}
            }
        }
        // A row needs to be seen by a later row of the same call only if the batch has one.
        let mut last_of: HashMap<&str, usize> = HashMap::with_capacity(calls.len());
        for (i, c) in calls.iter().enumerate() {
            last_of.insert(c.call_id.as_str(), i);
        }
        let mut deltas = Deltas::default();
        let mut out = Delivered::default();
        let mut upserts: Vec<Box<Upsert>> = Vec::with_capacity(calls.len());
        for (i, c) in calls.iter().enumerate() {
            let prev = old.get(&c.call_id);
            match apply(node, node, prev, c, &mut deltas)? {
                Applied::Changed(upsert) => {
                    out.applied += 1;
                    let later = last_of.get(c.call_id.as_str()).is_some_and(|&l| l > i);
                    if !later {
                        upserts.push(upsert);
                        continue;
                    }
                    // A later row of the same call in this batch sees this one.
                    let before = prev.map_or(0, |p| p.reserved);
                    old.insert(
                        c.call_id.clone(),
                        Old {
                            state: c.state,
                            version: upsert.version,
                            reserved: upsert.reserved.max(before),
                            row: upsert.row.clone(),
                        },
                    );
                    upserts.push(upsert);
                }
                Applied::AlreadyFinal(row) => out.already_final.push(*row),
                Applied::Nothing => {}
            }
        }
        // This batch's reports end the other admissions of their Call-IDs.
        let reported: HashSet<&str> = calls
            .iter()
            .filter(|c| matches!(c.state, CallState::Settled | CallState::Released))
            .map(|c| c.call_id.as_str())
            .collect();
        let mut owners: Vec<(&String, &Vec<String>)> = reserved_elsewhere.iter().collect();
        owners.sort();
        for (owner, their) in owners {
            let mut ending: Vec<&str> = their
                .iter()
                .map(String::as_str)
                .filter(|id| reported.contains(id))
                .collect();
            ending.sort_unstable();
            for (id, prev) in lock_calls(&tx, owner, &ending).await? {
                if prev.state != CallState::Reserved {
                    continue;
                }
                let released = release(read_row(&id, &prev.row)?);
                if let Applied::Changed(u) =
                    apply(owner, node, Some(&prev), &released, &mut deltas)?
                {
                    tracing::info!(call_id = %id, node = %owner, "the same Call-ID was admitted on another node too (a proxy's failover): released there");
                    upserts.push(u);
                }
            }
        }
        if !upserts.is_empty() {
            write_calls(&tx, &upserts).await?;
        }
        // Calls left reserved here by this batch whose Call-ID another node's report ended.
        out.duplicates = last_of
            .iter()
            .filter(|(id, &i)| {
                calls.get(i).is_some_and(|c| c.state == CallState::Reserved)
                    && ended_elsewhere.contains(**id)
                    && old.get(**id).is_none_or(|o| o.state == CallState::Reserved)
            })
            .map(|(id, _)| id.to_string())
            .collect();
        out.unbacked = settle_deltas(&tx, deltas).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Ends `owner`'s call, which `node` does not hold (its admitting node may be dead), with
    /// `ended`, the stored row ended by the engine: applied only while the store has it
    /// reserved.
    pub async fn finish(
        &mut self,
        node: &str,
        owner: &str,
        ended: &StoredCall,
    ) -> Result<Finish, ClusterError> {
        let tx = self.client.transaction().await?;
        let old = lock_calls(&tx, owner, &[ended.call_id.as_str()]).await?;
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
        if let Applied::Changed(upsert) = apply(owner, node, Some(prev), ended, &mut deltas)? {
            write_calls(&tx, &[upsert]).await?;
        }
        settle_deltas(&tx, deltas).await?;
        tx.commit().await?;
        Ok(Finish::Finished)
    }

    /// The rows of a Call-ID, with the node that admitted each: one, or several when the
    /// proxy sent the same INVITE to a second node (a failover on timeout) and both admitted
    /// it ([`primary`] picks the one that stands for the call).
    pub async fn calls(&self, call_id: &str) -> Result<Vec<(String, StoredCall)>, ClusterError> {
        let rows = self
            .client
            .query(
                "SELECT node_id, row::text FROM tg_calls WHERE call_id = $1 ORDER BY node_id",
                &[&call_id],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.get(0), read_row(call_id, r.get(1))?)))
            .collect()
    }

    /// Extends `owner`'s call `call_id`, which `node` does not hold, in one transaction: the
    /// row and its account are locked, `extend` (the engine's arithmetic,
    /// [`tollgate_engine::Engine::extend_stored`]) is given the row and what the account has
    /// available, and what it takes moves to the account's `reserved` with the row. The
    /// admitting node adopts the new row ([`ClusterStore::calls_changed_since`]).
    pub async fn extend<T, E>(
        &mut self,
        node: &str,
        owner: &str,
        call_id: &str,
        extend: impl FnOnce(StoredCall, u64) -> Result<(StoredCall, T, u64), E>,
    ) -> Result<Result<T, E>, ClusterError> {
        let tx = self.client.transaction().await?;
        let old = lock_calls(&tx, owner, &[call_id]).await?;
        let Some(prev) = old.get(call_id) else {
            return Err(ClusterError::UnknownCall);
        };
        let row = read_row(call_id, &prev.row)?;
        // The call's account, and the user's allowance beside it: the extension takes the same
        // amount from each, so it is bounded by the smaller.
        let mut accounts: Vec<String> = call_account(&row)
            .map(|(name, _, _)| name)
            .into_iter()
            .chain(spend_account_of(&row))
            .collect();
        accounts.sort();
        let mut available = if accounts.is_empty() { 0 } else { u64::MAX };
        for name in &accounts {
            let a = tx
                .query_opt(
                    "SELECT capacity - used - reserved - held FROM tg_accounts \
                     WHERE account = $1 FOR UPDATE",
                    &[name],
                )
                .await?
                .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0));
            available = available.min(a);
        }
        let (extended, answer, amount) = match extend(row, available) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        for name in &accounts {
            tx.execute(
                "UPDATE tg_accounts SET reserved = reserved + $2 WHERE account = $1",
                &[name, &rows::saturate(amount)],
            )
            .await?;
        }
        let reserved = call_account(&extended).map_or(0, |(_, r, _)| r);
        tx.execute(
            "UPDATE tg_calls SET version = $3, reserved = $4, written_by = $5, \
             changed = pg_current_xact_id()::text::bigint, row = $6::text::jsonb \
             WHERE call_id = $1 AND node_id = $2",
            &[
                &call_id,
                &owner,
                &i32::try_from(extended.version).unwrap_or(i32::MAX),
                &reserved,
                &node,
                &rows::to_json(&extended),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(answer))
    }

    /// Calls `node` admitted that another node ended or extended, written since `cursor`, and the cursor
    /// for the next poll (at most 10,000 at a time). `changed` is the id of the transaction
    /// that wrote a row, and the cursor the oldest transaction still running at the poll
    /// (`pg_snapshot_xmin`): a row committed after a poll by a transaction older than it is
    /// still seen by the next poll (a sequence number taken before commit would be skipped).
    /// A row may come twice; ending or adopting a call twice changes nothing.
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
                 AND written_by <> $1 ORDER BY changed LIMIT 10000",
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
}

/// Locks `node`'s rows of `ids` (sorted) and reads what the accounting needs.
async fn lock_calls(
    tx: &Transaction<'_>,
    node: &str,
    ids: &[&str],
) -> Result<HashMap<String, Old>, ClusterError> {
    let rows = tx
        .query(
            "SELECT call_id, state, version, reserved, row::text FROM tg_calls \
             WHERE node_id = $1 AND call_id = ANY($2) ORDER BY call_id FOR UPDATE",
            &[&node, &ids],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.get::<_, String>(0),
                Old {
                    state: call_state(r.get(1))?,
                    version: r.get(2),
                    reserved: r.get(3),
                    row: r.get(4),
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
    /// The node that wrote the row: the owner delivering it, or the node that ended it.
    written_by: String,
    row: String,
}

/// Writes a batch's call rows in one statement (`UNNEST` of one array per column); a call
/// written twice in the batch is written once, as its last row (its accounting already counted
/// both). `changed` is the writing transaction's id: see [`ClusterStore::calls_changed_since`].
async fn write_calls(tx: &Transaction<'_>, upserts: &[Box<Upsert>]) -> Result<(), ClusterError> {
    let mut last: HashMap<(&str, &str), &Upsert> = HashMap::with_capacity(upserts.len());
    for u in upserts {
        last.insert((u.call_id.as_str(), u.owner.as_str()), u);
    }
    let rows: Vec<&Upsert> = last.into_values().collect();
    let col = |f: fn(&Upsert) -> &str| rows.iter().map(|u| f(u)).collect::<Vec<&str>>();
    let ids = col(|u| &u.call_id);
    let owners = col(|u| &u.owner);
    let accounts: Vec<Option<&str>> = rows.iter().map(|u| u.account.as_deref()).collect();
    let states: Vec<&str> = rows.iter().map(|u| u.state).collect();
    let versions: Vec<i32> = rows.iter().map(|u| u.version).collect();
    let reserved: Vec<i64> = rows.iter().map(|u| u.reserved).collect();
    let charged: Vec<i64> = rows.iter().map(|u| u.charged).collect();
    let months = col(|u| &u.month);
    let seqs: Vec<i64> = rows.iter().map(|u| u.seq).collect();
    let ended_by: Vec<Option<&str>> = rows.iter().map(|u| u.ended_by.as_deref()).collect();
    let bodies = col(|u| &u.row);
    let writers = col(|u| &u.written_by);
    tx.execute(
        "INSERT INTO tg_calls (call_id, node_id, account, state, version, reserved, charged, \
         month, seq, ended_by, written_by, changed, row) \
         SELECT c, n, a, s, v, r, ch, m, sq, e, w, pg_current_xact_id()::text::bigint, rw::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], \
         $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[]) \
         AS t(c, n, a, s, v, r, ch, m, sq, e, rw, w) \
         ON CONFLICT (call_id, node_id) DO UPDATE SET state = excluded.state, \
         version = excluded.version, \
         reserved = GREATEST(tg_calls.reserved, excluded.reserved), \
         charged = excluded.charged, ended_by = excluded.ended_by, \
         written_by = excluded.written_by, changed = excluded.changed, row = excluded.row",
        &[
            &ids, &owners, &accounts, &states, &versions, &reserved, &charged, &months, &seqs,
            &ended_by, &bodies, &writers,
        ],
    )
    .await?;
    Ok(())
}

/// One row of `owner`'s call, written by `node` (the owner delivering it, or another node
/// ending it), against what the store holds (see the model); account changes go to `deltas`,
/// the row to write is returned.
fn apply(
    owner: &str,
    node: &str,
    prev: Option<&Old>,
    c: &StoredCall,
    deltas: &mut Deltas,
) -> Result<Applied, ClusterError> {
    let account = call_account(c);
    let spend = spend_account_of(c);
    let (reserved, charged) = account.as_ref().map_or((0, 0), |(_, r, ch)| (*r, *ch));
    let version = i32::try_from(c.version).unwrap_or(i32::MAX);
    let final_now = c.state != CallState::Reserved;
    match prev {
        Some(p) if p.state != CallState::Reserved => {
            if final_now {
                return Ok(Applied::Nothing);
            }
            // A reserved row of a call already ended elsewhere: its node is behind. What it
            // reserved beyond the stored row (an extension made before it learned of the end)
            // came out of its share: it goes back to the account.
            let extra = reserved - p.reserved;
            if extra > 0 {
                for name in account.iter().map(|(n, _, _)| n).chain(&spend) {
                    deltas.reserve(name, owner, extra);
                    deltas.end(name, extra, 0);
                }
            }
            return Ok(Applied::AlreadyFinal(Box::new(read_row(
                &c.call_id, &p.row,
            )?)));
        }
        Some(p) if !final_now && version <= p.version => return Ok(Applied::Nothing),
        _ => {}
    }
    // The call's admitting node's share pays for its reservations (of the user's allowance
    // too, under a spend limit: the same money).
    let before = prev.map_or(0, |p| p.reserved);
    for name in account.iter().map(|(n, _, _)| n).chain(&spend) {
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
        written_by: node.to_string(),
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
