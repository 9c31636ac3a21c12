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

/// One call, whatever its state: the newest with this Call-ID. There is no index on Call-IDs
/// (see [`super::schema`]): SQLite walks the table from its newest row back and stops at the
/// first match, so a recent call is found at once and an unknown one costs a scan.
pub fn call(conn: &Connection, call_id: &str) -> Result<Option<StoredCall>, LedgerError> {
    Ok(calls(
        conn,
        "call_id = ?1 ORDER BY seq DESC LIMIT 1",
        params![call_id],
    )?
    .pop())
}

/// One past the highest `seq` stored (1 for an empty ledger): the floor for the engine's next
/// sequence number ([`tollgate_engine::Engine::seq_floor`]).
pub fn next_seq(conn: &Connection) -> Result<u64, LedgerError> {
    let max: Option<i64> = conn.query_row("SELECT max(seq) FROM calls", [], |r| r.get(0))?;
    Ok(max.and_then(|m| u64::try_from(m).ok()).unwrap_or(0) + 1)
}

/// The call records (ended calls) charged to `month`, by start time.
pub fn cdrs(conn: &Connection, month: MonthKey) -> Result<Vec<StoredCall>, LedgerError> {
    calls(
        conn,
        "month = ?1 AND state <> 'reserved' ORDER BY started_at, seq",
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

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use tollgate_engine::numbering::NumberingPlan;
    use tollgate_engine::{Engine, EngineConfig, Request, StoredCall};

    use super::*;
    use crate::ledger::{schema, Synchronous};

    /// 2026-11-18 and 2026-12-01T00:00:10Z.
    pub(crate) const NOV: u64 = 1_795_000_000;
    const DEC: u64 = 1_796_083_210;

    pub(crate) fn engine(now: u64) -> Engine {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let snap = crate::directory::load(&dir).unwrap();
        let plan = Arc::new(NumberingPlan::builtin().unwrap());
        Engine::new(plan, EngineConfig::default(), snap, now)
    }

    fn write(conn: &Connection, e: &Engine) {
        let mut stmt = conn.prepare(rows::UPSERT).unwrap();
        e.reservations().for_each(|id, r| {
            rows::bind(
                &mut stmt,
                &StoredCall::from_record(id, r),
                &mut Default::default(),
            )
            .unwrap();
        });
    }

    /// Month rollover through the ledger (the clock injected: the engine takes `now`): a call
    /// open across midnight on the 1st stays charged to November, December starts full, and
    /// November stays queryable.
    #[test]
    fn rollover_charges_the_start_month_and_old_months_stay_queryable() {
        let dir = tempfile::tempdir().unwrap();
        let conn = schema::open_writer(&dir.path().join("l.db"), Synchronous::Normal).unwrap();
        let nov = engine(NOV);
        let call = |id| {
            let r = Request {
                call_id: id,
                caller: "alice@contoso.com",
                dialed: "+12065550100",
            };
            assert!(nov.authorize(&r, NOV).is_admit());
        };
        call("open-across-midnight");
        call("ended-in-november");
        nov.settle("ended-in-november", 61, NOV + 61).unwrap();
        write(&conn, &nov);
        let mut nov_pools = nov.pools(NOV);
        nov_pools.retain(|p| p.used_seconds + p.reserved_seconds > 0);
        {
            let mut stmt = conn
                .prepare("INSERT INTO pools VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .unwrap();
            for p in &nov_pools {
                stmt.execute(rusqlite::params![
                    p.month.to_string(),
                    &*p.key.tenant,
                    p.key.region.as_str(),
                    &*p.key.sku,
                    p.key.kind.as_str(),
                    p.capacity_seconds as i64
                ])
                .unwrap();
            }
        }

        // A restart in December.
        let calls = recovery(&conn, MonthKey::of(DEC)).unwrap();
        assert_eq!(calls.len(), 1, "only the open call matters to December");
        let dec = engine(DEC);
        dec.restore(calls, DEC);
        let p = dec
            .pools(DEC)
            .into_iter()
            .find(|p| p.key == nov_pools[0].key)
            .unwrap();
        assert_eq!(p.month.to_string(), "2026-12");
        assert_eq!((p.used_seconds, p.reserved_seconds), (0, 0));
        // The November call ends in December, charged to November.
        dec.settle("open-across-midnight", 30, DEC + 30).unwrap();
        write(&conn, &dec);
        let row = call_row(&conn, "open-across-midnight");
        assert_eq!(
            (row.state, row.month().to_string()),
            (tollgate_engine::CallState::Settled, "2026-11".into())
        );
        let old = pools(&conn, MonthKey::of(NOV)).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(
            (old[0].used_seconds, old[0].reserved_seconds),
            (120 + 60, 0)
        );
        assert_eq!(old[0].capacity_seconds, nov_pools[0].capacity_seconds);
        assert_eq!(cdrs(&conn, MonthKey::of(NOV)).unwrap().len(), 2);
        assert!(cdrs(&conn, MonthKey::of(DEC)).unwrap().is_empty());
    }

    fn call_row(conn: &Connection, id: &str) -> StoredCall {
        call(conn, id).unwrap().unwrap()
    }
}
