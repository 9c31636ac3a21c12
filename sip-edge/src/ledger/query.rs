//! Reads of the ledger: start-up recovery, one call, a month's call records and pools.

use rusqlite::{params, Connection};
use tollgate_engine::numbering::Region;
use tollgate_engine::pools::{MonthKey, PoolKey, PoolStatus};
use tollgate_engine::StoredCall;

use super::rows::{self, parse_kind, COLUMNS};
use super::LedgerError;

fn calls(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<StoredCall>, LedgerError> {
    let sql = format!("SELECT {COLUMNS} FROM calls WHERE {filter}");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(rows::read(row)?);
    }
    Ok(out)
}

/// What [`tollgate_engine::Engine::restore`] needs for `month`: every open reservation, every
/// call charged to `month`, and every credits call (a balance spans months).
pub fn recovery(conn: &Connection, month: MonthKey) -> Result<Vec<StoredCall>, LedgerError> {
    calls(
        conn,
        "state = 'reserved' OR month = ?1 OR funding = 'credits'",
        params![month.to_string()],
    )
}

/// One call, whatever its state.
pub fn call(conn: &Connection, call_id: &str) -> Result<Option<StoredCall>, LedgerError> {
    Ok(calls(conn, "call_id = ?1", params![call_id])?.pop())
}

/// The call records (ended calls) charged to `month`, by start time.
pub fn cdrs(conn: &Connection, month: MonthKey) -> Result<Vec<StoredCall>, LedgerError> {
    calls(
        conn,
        "month = ?1 AND state <> 'reserved' ORDER BY started_at, call_id",
        params![month.to_string()],
    )
}

/// The pools of `month` as the ledger knows them: the capacity recorded for the month, usage
/// from the calls charged to it.
pub fn pools(conn: &Connection, month: MonthKey) -> Result<Vec<PoolStatus>, LedgerError> {
    let mut stmt = conn.prepare(
        "SELECT p.tenant, p.region, p.sku, p.kind, p.capacity_seconds,
                COALESCE(SUM(CASE WHEN c.state <> 'reserved' THEN c.charged_seconds END), 0),
                COALESCE(SUM(CASE WHEN c.state = 'reserved' THEN c.reserved_seconds END), 0)
         FROM pools p LEFT JOIN calls c
           ON c.month = p.month AND c.funding = 'pool' AND c.tenant = p.tenant
          AND c.pool_region = p.region AND c.pool_sku = p.sku AND c.pool_kind = p.kind
         WHERE p.month = ?1
         GROUP BY p.tenant, p.region, p.sku, p.kind
         ORDER BY p.tenant, p.region, p.sku, p.kind",
    )?;
    let mut rows = stmt.query(params![month.to_string()])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let tenant: String = r.get(0)?;
        let bad = |column| LedgerError::BadRow {
            call_id: format!("pool {tenant}"),
            column,
        };
        let region: String = r.get(1)?;
        let kind: String = r.get(3)?;
        let num = |i: usize| -> Result<u64, LedgerError> {
            u64::try_from(r.get::<_, i64>(i)?).map_err(|_| bad("capacity_seconds"))
        };
        let (capacity, used, reserved) = (num(4)?, num(5)?, num(6)?);
        out.push(PoolStatus {
            key: PoolKey {
                region: Region::new(&region).ok_or_else(|| bad("region"))?,
                sku: r.get::<_, String>(2)?.into(),
                kind: parse_kind(&kind).ok_or_else(|| bad("kind"))?,
                tenant: tenant.as_str().into(),
            },
            month,
            capacity_seconds: capacity,
            used_seconds: used,
            reserved_seconds: reserved,
            remaining_seconds: capacity.saturating_sub(used + reserved),
        });
    }
    Ok(out)
}
