//! The call path's row write, through SQLite's C API.
//!
//! Every admitted call is one [`rows::UPSERT`] of 29 parameters. Through rusqlite each
//! parameter costs ~190 instructions (a `ToSql` conversion, a bounds check, an error decode)
//! and every text is copied by SQLite (`SQLITE_TRANSIENT`): ~5,400 instructions a row before
//! SQLite even runs the statement, measured with callgrind. Here the statement is prepared
//! once on the write connection and each row is bound with `sqlite3_bind_*` directly, texts
//! as `SQLITE_STATIC` (they outlive the step: they are borrowed from the call and from
//! [`Scratch`]), then stepped and reset. The bindings are cleared once per batch
//! ([`Upsert::clear`]): until then they may point into rows already written, which SQLite
//! never reads, since each row binds all 29 parameters again before it steps.
//!
//! [`WriteConn`] owns the connection and the statement together, so the statement is
//! finalized before the connection closes (rusqlite refuses to close a connection with a
//! statement outstanding) and can only be used while the connection is held.

use std::ffi::{c_int, CStr};
use std::path::Path;
use std::ptr::NonNull;

use rusqlite::{ffi, Connection};
use tollgate_engine::StoredCall;

use super::rows::{self, Scratch};
use super::{schema, LedgerError, Synchronous};

/// The write connection and its prepared [`rows::UPSERT`].
pub struct WriteConn {
    // Declared first: dropped (finalized) before the connection is closed.
    upsert: Upsert,
    conn: Connection,
}

// SAFETY: the statement belongs to `conn` and moves with it; SQLite (serialized or
// multi-thread mode, as rusqlite builds it) lets a connection and its statements be used from
// any thread, one at a time, which `&mut` access guarantees (rusqlite's `Connection` is
// `Send` on the same grounds).
unsafe impl Send for WriteConn {}

impl WriteConn {
    /// Opens (creating or migrating) the ledger at `path` for writing
    /// ([`schema::open_writer`]) and prepares the upsert on it.
    pub fn open(path: &Path, sync: Synchronous) -> Result<WriteConn, LedgerError> {
        let conn = schema::open_writer(path, sync)?;
        let upsert = Upsert::prepare(&conn)?;
        Ok(WriteConn { upsert, conn })
    }

    /// The connection (for a transaction) and the upsert to run inside it.
    pub fn parts(&mut self) -> (&mut Connection, &mut Upsert) {
        (&mut self.conn, &mut self.upsert)
    }
}

impl std::ops::Deref for WriteConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// [`rows::UPSERT`], prepared.
pub struct Upsert {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    scratch: Scratch,
}

impl Upsert {
    fn prepare(conn: &Connection) -> rusqlite::Result<Upsert> {
        // SAFETY: the handle is valid while `conn` lives; the `WriteConn` holding the result
        // drops it first.
        let db = NonNull::new(unsafe { conn.handle() })
            .ok_or_else(|| failure(ffi::SQLITE_MISUSE, "no connection handle".into()))?;
        let sql = rows::UPSERT.as_bytes();
        let len = c_int::try_from(sql.len()).map_err(|_| too_long())?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes; SQLite writes the statement into `stmt`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc));
        }
        let stmt = NonNull::new(stmt)
            .ok_or_else(|| failure(ffi::SQLITE_MISUSE, "empty statement".into()))?;
        Ok(Upsert {
            stmt,
            db,
            scratch: Scratch::default(),
        })
    }

    /// Writes `c`: binds its columns (in [`rows::COLUMNS`] order), steps, resets.
    pub fn write(&mut self, c: &StoredCall) -> rusqlite::Result<()> {
        self.scratch.fill(c);
        let bound = self.bind(c);
        // SAFETY: `stmt` is a live statement of this connection; the bound texts (borrowed
        // from `c` and `self.scratch`) live until the bindings are cleared below.
        let rc = match bound {
            Ok(()) => unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) },
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        let result = if rc == ffi::SQLITE_DONE {
            Ok(())
        } else {
            Err(error(self.db, rc))
        };
        self.reset();
        result
    }

    fn bind(&mut self, c: &StoredCall) -> rusqlite::Result<()> {
        let v = rows::values(c, &self.scratch);
        for (i, value) in v.iter().enumerate() {
            let index = c_int::try_from(i + 1).map_err(|_| too_long())?;
            let stmt = self.stmt.as_ptr();
            // SAFETY: `stmt` is live; `index` is within its 29 parameters; a text is valid for
            // `len` bytes and stays alive (see `write`) until the bindings are cleared.
            let rc = unsafe {
                match *value {
                    rows::Value::Null => ffi::sqlite3_bind_null(stmt, index),
                    rows::Value::Int(n) => ffi::sqlite3_bind_int64(stmt, index, n),
                    rows::Value::Text(t) => {
                        let len = c_int::try_from(t.len()).map_err(|_| too_long())?;
                        ffi::sqlite3_bind_text(
                            stmt,
                            index,
                            t.as_ptr().cast(),
                            len,
                            ffi::SQLITE_STATIC(),
                        )
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(error(self.db, rc));
            }
        }
        Ok(())
    }

    /// Ready for the next row. The bindings stay: the next row binds every parameter again
    /// before it steps, so none of this row's is read; [`Upsert::clear`] lets go of them once
    /// the batch is written (clearing 29 bindings per row was ~470 instructions a row).
    fn reset(&mut self) {
        // SAFETY: `stmt` is live. The result repeats the step's error, already reported.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
        }
    }

    /// Keeps no pointer into the rows written: call it before they are dropped.
    pub fn clear(&mut self) {
        // SAFETY: `stmt` is live and reset (not running).
        unsafe {
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
    }
}

impl Drop for Upsert {
    fn drop(&mut self) {
        // SAFETY: `stmt` is live and finalized once; the connection is still open (see
        // `WriteConn`).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// The connection's error for `rc`, with SQLite's message.
fn error(db: NonNull<ffi::sqlite3>, rc: c_int) -> rusqlite::Error {
    // SAFETY: `db` is live; `sqlite3_errmsg` returns a NUL-terminated string owned by SQLite,
    // copied before any other call on the connection.
    let message = unsafe {
        let m = ffi::sqlite3_errmsg(db.as_ptr());
        (!m.is_null()).then(|| CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}

fn failure(rc: c_int, message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some(message))
}

fn too_long() -> rusqlite::Error {
    failure(ffi::SQLITE_TOOBIG, "value too long to bind".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tollgate_engine::credits::Money;
    use tollgate_engine::numbering::{Destination, NumberType, Region};
    use tollgate_engine::pools::{MonthKey, PoolKey, PoolKind};
    use tollgate_engine::{Basis, CallState, Route, StoredFunding};

    use super::*;

    fn pool_call(seq: u64, version: u32) -> StoredCall {
        let gb = Region::new("GB").unwrap();
        StoredCall {
            seq,
            call_id: format!("call-{seq}@10.0.0.1"),
            basis: Basis::DomesticPool,
            tenant: "contoso".into(),
            user: "alice@contoso.com".into(),
            dialed: "02079460000".into(),
            destination: Some(Destination::new(
                "+442079460000",
                44,
                gb,
                NumberType::FixedLine,
            )),
            route: Some(Route::CallingPlan(gb)),
            funding: StoredFunding::Pool {
                key: PoolKey {
                    tenant: "contoso".into(),
                    region: gb,
                    sku: "MCOPSTN1".into(),
                    kind: PoolKind::Domestic,
                },
                month: MonthKey(2026 * 12 + 10),
            },
            reserved_seconds: 1800,
            reserved_money: Money::ZERO,
            started_at: 1_795_000_000,
            expires_at: 1_795_001_920,
            state: CallState::Reserved,
            billable_seconds: 0,
            charged_seconds: 0,
            charged_money: Money::ZERO,
            ended_at: None,
            version,
        }
    }

    fn credits_call(seq: u64) -> StoredCall {
        StoredCall {
            basis: Basis::Credits,
            route: Some(Route::Direct(Arc::from(
                "sbc1.contoso.com:5061;transport=tls",
            ))),
            funding: StoredFunding::Credits {
                per_minute: Money(12_000),
                spend: Some(("bob@contoso.com".into(), MonthKey(2026 * 12 + 10))),
            },
            reserved_money: Money(360_000),
            state: CallState::Settled,
            billable_seconds: 61,
            charged_seconds: 120,
            charged_money: Money(24_000),
            ended_at: Some(1_795_000_061),
            destination: None,
            ..pool_call(seq, 3)
        }
    }

    #[test]
    fn rows_written_through_the_c_api_read_back_whole_and_never_go_back_in_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WriteConn::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap();
        let calls = [pool_call(1, 2), credits_call(2)];
        {
            let (conn, upsert) = w.parts();
            let tx = conn.transaction().unwrap();
            for c in &calls {
                upsert.write(c).unwrap();
            }
            // An older version of call 1 arriving late changes nothing.
            upsert.write(&pool_call(1, 1)).unwrap();
            tx.commit().unwrap();
        }
        let mut stmt = w
            .prepare(&format!("SELECT {} FROM calls ORDER BY seq", rows::COLUMNS))
            .unwrap();
        let read: Vec<StoredCall> = stmt
            .query_map([], |r| Ok(rows::read(r).unwrap()))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(format!("{read:?}"), format!("{calls:?}"));
    }

    /// A figure past `i64::MAX` (no API or setting lets one through) is stored as `i64::MAX`
    /// rather than failing the row: a row that cannot be bound could never commit.
    #[test]
    fn figures_too_large_for_sqlite_are_stored_saturated() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WriteConn::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap();
        let huge = StoredCall {
            billable_seconds: u64::MAX,
            charged_seconds: 1 << 63,
            expires_at: u64::MAX,
            ended_at: Some(u64::MAX),
            ..credits_call(5)
        };
        w.parts().1.write(&huge).unwrap();
        let back = w
            .query_row(&format!("SELECT {} FROM calls", rows::COLUMNS), [], |r| {
                Ok(rows::read(r))
            })
            .unwrap()
            .unwrap();
        let max = i64::MAX as u64;
        assert_eq!(
            (
                back.billable_seconds,
                back.charged_seconds,
                back.expires_at,
                back.ended_at
            ),
            (max, max, max, Some(max))
        );
        assert_eq!(back.reserved_seconds, huge.reserved_seconds);
    }

    #[test]
    fn a_failed_step_is_an_error_and_the_statement_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WriteConn::open(&dir.path().join("l.db"), Synchronous::Normal).unwrap();
        w.execute_batch(
            "CREATE TRIGGER no_seven BEFORE INSERT ON calls WHEN NEW.seq = 7 \
             BEGIN SELECT RAISE(ABORT, 'seven refused'); END;",
        )
        .unwrap();
        let (_, upsert) = w.parts();
        let e = upsert.write(&pool_call(7, 1)).unwrap_err();
        assert!(e.to_string().contains("seven refused"), "{e}");
        upsert.write(&pool_call(8, 1)).unwrap();
        let n: i64 = w
            .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
