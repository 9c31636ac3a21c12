//! The ledger's SQLite schema and its migrations (DESIGN §6).
//!
//! One row per admitted call in `calls`: its reservation while it runs, then its settlement
//! (state `settled`, `expired` or `released`, billable and charged figures, `ended_at`). Every
//! write is an upsert of the whole row that only applies if its `version` is newer (see
//! [`super::rows`]), so the writer never needs to read before it writes and rows written out of
//! order cannot go back in time. The other record kinds are views over it:
//! - `reservations`: the calls still holding a reservation;
//! - `settlements` and `cdrs`: one per ended call (the call detail record of the issue);
//! - `credit_movements`: what each credits call took from its tenant's balance (`reserve`) and
//!   gave back when it ended (`refund`);
//!
//! and `pools` keeps each month's capacity (minutes × licensed users change with the
//! directory), so past months stay queryable after rollover.
//!
//! `calls` has no secondary index on purpose: each one is another B-tree page written per
//! commit on the call path, and what would use one (start-up recovery, `tollgate cdrs`, past
//! months' pools) reads the table once, off the call path.
//!
//! The schema version is SQLite's `user_version`; [`migrate`] brings any older file up to
//! [`VERSION`] in one transaction and refuses a newer one.

use rusqlite::{Connection, OpenFlags};

use super::{LedgerError, Synchronous};

/// The schema version this build writes.
pub const VERSION: i64 = 1;

/// Migration `n` brings a file from version `n` to `n + 1`.
const MIGRATIONS: [&str; 1] = [r#"
CREATE TABLE calls (
    call_id           TEXT PRIMARY KEY,
    version           INTEGER NOT NULL,
    state             TEXT NOT NULL,     -- reserved | settled | expired | released
    month             TEXT NOT NULL,     -- YYYY-MM the call is charged to
    tenant            TEXT NOT NULL,
    user              TEXT NOT NULL,     -- UPN ('' for an unknown caller's emergency call)
    dialed            TEXT NOT NULL,
    e164              TEXT,
    region            TEXT,
    number_type       TEXT,
    calling_code      INTEGER,
    basis             TEXT NOT NULL,
    route             TEXT,              -- emergency | calling_plan:CC | direct:HOST
    funding           TEXT NOT NULL,     -- none | pool | credits
    pool_region       TEXT,
    pool_sku          TEXT,
    pool_kind         TEXT,
    per_minute_micros INTEGER,
    spend_user        TEXT,
    spend_month       TEXT,
    reserved_seconds  INTEGER NOT NULL,
    reserved_micros   INTEGER NOT NULL,
    billable_seconds  INTEGER NOT NULL,
    charged_seconds   INTEGER NOT NULL,
    charged_micros    INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    ended_at          INTEGER
) WITHOUT ROWID;

CREATE TABLE pools (
    month            TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    region           TEXT NOT NULL,
    sku              TEXT NOT NULL,
    kind             TEXT NOT NULL,
    capacity_seconds INTEGER NOT NULL,
    PRIMARY KEY (month, tenant, region, sku, kind)
) WITHOUT ROWID;

CREATE VIEW reservations AS
    SELECT * FROM calls WHERE state = 'reserved';
CREATE VIEW settlements AS
    SELECT call_id, state, tenant, month, basis, reserved_seconds, billable_seconds,
           charged_seconds, charged_micros, ended_at
    FROM calls WHERE state <> 'reserved';
CREATE VIEW cdrs AS
    SELECT call_id, tenant, user, dialed, e164, region, number_type, basis, state, month,
           pool_region, pool_sku, pool_kind, reserved_seconds, billable_seconds,
           charged_seconds, charged_micros, started_at, ended_at
    FROM calls WHERE state <> 'reserved';
CREATE VIEW credit_movements AS
    SELECT call_id, tenant, 'reserve' AS kind, reserved_micros AS micros, started_at AS at
        FROM calls WHERE funding = 'credits'
    UNION ALL
    SELECT call_id, tenant, 'refund', reserved_micros - charged_micros, ended_at
        FROM calls WHERE funding = 'credits' AND state <> 'reserved';
"#];

/// Opens (creating if needed) the ledger for writing: WAL, the given `synchronous`, schema
/// migrated.
pub fn open_writer(path: &std::path::Path, sync: Synchronous) -> Result<Connection, LedgerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LedgerError::Io(dir.display().to_string(), e))?;
    }
    let conn = Connection::open(path)?;
    // WAL: readers (HTTP, `tollgate cdrs`) never block the writer (DESIGN §6).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    // After a checkpoint the WAL is cut back, so it does not keep a disk's worth of old frames.
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens the ledger read-only (HTTP queries, `tollgate cdrs` and `pools`). The file must exist.
pub fn open_reader(path: &std::path::Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if v != VERSION {
        return Err(LedgerError::Schema(v));
    }
    Ok(conn)
}

/// Brings the schema to [`VERSION`].
pub fn migrate(conn: &Connection) -> Result<(), LedgerError> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if !(0..=VERSION).contains(&v) {
        return Err(LedgerError::Schema(v));
    }
    if v == VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let run = || -> Result<(), rusqlite::Error> {
        for m in MIGRATIONS.iter().skip(v as usize) {
            conn.execute_batch(m)?;
        }
        conn.pragma_update(None, "user_version", VERSION)?;
        Ok(())
    };
    match run() {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let c = open_writer(&path, Synchronous::Normal).unwrap();
        migrate(&c).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        for view in ["reservations", "settlements", "cdrs", "credit_movements"] {
            let n: i64 = c
                .query_row(&format!("SELECT count(*) FROM {view}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0);
        }
        c.pragma_update(None, "user_version", VERSION + 1).unwrap();
        drop(c);
        assert!(matches!(
            open_writer(&path, Synchronous::Normal),
            Err(LedgerError::Schema(2))
        ));
        assert!(matches!(open_reader(&path), Err(LedgerError::Schema(2))));
    }
}
