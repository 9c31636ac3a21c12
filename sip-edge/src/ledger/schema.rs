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
//! A row's key is the call's `seq` (its place in admission order, from the engine), not its
//! Call-ID: rows are appended at the end of the table's B-tree, so a commit writes the last page
//! or two whatever the table's size. Keyed by the random Call-ID (schema 1), or with any index
//! on it, every call landed on its own page somewhere in the tree, and the writer's CPU per
//! call grew with the table: measured with 200k calls stored, batches of 4, 26–36 µs per call
//! keyed by Call-ID or with an index on it (or on a 64-bit hash of it), against 6 µs appended
//! (`benches/examples/ledger_rows.rs`; figures in `docs/performance.md`, "The ledger's key").
//!
//! So `calls` has no secondary index, on purpose: each would be another B-tree written at a
//! random place per call on the call path, and what would use one reads off the call path:
//! start-up recovery and `tollgate cdrs` read the table once, and `GET /v1/calls/{id}` for a
//! call the daemon no longer holds in memory scans from the newest row back
//! ([`super::query::call`]): quick for recent calls, the whole table for an unknown one.
//!
//! The schema version is SQLite's `user_version`; [`migrate`] brings any older file up to
//! [`VERSION`] in one transaction and refuses a newer one.

use rusqlite::{Connection, OpenFlags};

use super::{LedgerError, Synchronous};

/// The schema version this build writes.
pub const VERSION: i64 = 2;

/// Migration `n` brings a file from version `n` to `n + 1`.
const MIGRATIONS: [&str; 2] = [MIGRATION_1, MIGRATION_2];

/// Schema 1: `calls` keyed by Call-ID.
const MIGRATION_1: &str = r#"
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
"#;

/// Schema 2: `calls` keyed by `seq`, appended in admission order (see the module docs). Rows
/// of schema 1 get sequence numbers in the order the calls started.
const MIGRATION_2: &str = r#"
DROP VIEW reservations;
DROP VIEW settlements;
DROP VIEW cdrs;
DROP VIEW credit_movements;

CREATE TABLE calls_2 (
    seq               INTEGER PRIMARY KEY,
    call_id           TEXT NOT NULL,     -- not unique: a Call-ID may come back after a restart
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
);
INSERT INTO calls_2 (seq,
        call_id, version, state, month, tenant, user, dialed, e164, region, number_type,
        calling_code, basis, route, funding, pool_region, pool_sku, pool_kind,
        per_minute_micros, spend_user, spend_month, reserved_seconds, reserved_micros,
        billable_seconds, charged_seconds, charged_micros, started_at, expires_at,
        ended_at)
    SELECT row_number() OVER (ORDER BY started_at, call_id),
        call_id, version, state, month, tenant, user, dialed, e164, region, number_type,
        calling_code, basis, route, funding, pool_region, pool_sku, pool_kind,
        per_minute_micros, spend_user, spend_month, reserved_seconds, reserved_micros,
        billable_seconds, charged_seconds, charged_micros, started_at, expires_at,
        ended_at
    FROM calls;
DROP TABLE calls;
ALTER TABLE calls_2 RENAME TO calls;

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
"#;

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
    // When the WAL starts over it is cut back to this, so it does not keep a disk's worth of old
    // frames; more than twice `checkpoint::RESTART_FRAMES` (64 MiB), so that in steady use it is
    // reused rather than cut and regrown.
    conn.pragma_update(None, "journal_size_limit", 160 * 1024 * 1024)?;
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
            Err(LedgerError::Schema(v)) if v == VERSION + 1
        ));
        assert!(matches!(open_reader(&path), Err(LedgerError::Schema(v)) if v == VERSION + 1));
    }

    #[test]
    fn schema_1_files_get_sequence_numbers_in_start_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(MIGRATION_1).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        for (id, started, state) in [
            ("b", 20, "settled"),
            ("a", 10, "reserved"),
            ("c", 30, "expired"),
        ] {
            c.execute(
                "INSERT INTO calls (call_id, version, state, month, tenant, user, dialed, basis, \
                 funding, reserved_seconds, reserved_micros, billable_seconds, charged_seconds, \
                 charged_micros, started_at, expires_at) VALUES (?1, 1, ?3, '2026-11', 't', 'u', \
                 '911', 'emergency', 'none', 60, 0, 0, 0, 0, ?2, 100)",
                rusqlite::params![id, started, state],
            )
            .unwrap();
        }
        drop(c);
        let c = open_writer(&path, Synchronous::Normal).unwrap();
        let rows: Vec<(i64, String)> = c
            .prepare("SELECT seq, call_id FROM calls ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want = [(1, "a"), (2, "b"), (3, "c")].map(|(s, i)| (s, i.to_string()));
        assert_eq!(rows, want);
        let open: i64 = c
            .query_row("SELECT count(*) FROM reservations", [], |r| r.get(0))
            .unwrap();
        let ended: i64 = c
            .query_row("SELECT count(*) FROM cdrs", [], |r| r.get(0))
            .unwrap();
        assert_eq!((open, ended), (1, 2));
        assert_eq!(super::super::query::next_seq(&c).unwrap(), 4);
    }
}
