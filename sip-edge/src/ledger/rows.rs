//! A call ([`StoredCall`]) as a row of `calls`, and back.

use std::sync::Arc;

use rusqlite::{Row, Statement};
use tollgate_engine::credits::Money;
use tollgate_engine::numbering::{Destination, NumberType, Region};
use tollgate_engine::pools::{MonthKey, PoolKey, PoolKind};
use tollgate_engine::routing::PolicyRoute;
use tollgate_engine::{Basis, CallState, Route, StoredCall, StoredFunding};

use super::LedgerError;

/// The columns of `calls`, in the order [`bind`] and [`read`] use.
pub const COLUMNS: &str = "call_id, version, state, month, tenant, user, dialed, e164, region, \
    number_type, calling_code, basis, route, funding, pool_region, pool_sku, pool_kind, \
    per_minute_micros, spend_user, spend_month, reserved_seconds, reserved_micros, \
    billable_seconds, charged_seconds, charged_micros, started_at, expires_at, ended_at, seq";

/// The whole row, keyed by the call's `seq` (appended: see [`super::schema`]), applied only
/// when newer than what is stored (a call's `version` grows with every change; see
/// [`tollgate_engine::CallRecord::version`]).
pub const UPSERT: &str = "INSERT INTO calls (call_id, version, state, month, tenant, user, \
    dialed, e164, region, number_type, calling_code, basis, route, funding, pool_region, \
    pool_sku, pool_kind, per_minute_micros, spend_user, spend_month, reserved_seconds, \
    reserved_micros, billable_seconds, charged_seconds, charged_micros, started_at, expires_at, \
    ended_at, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
    ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29) \
    ON CONFLICT (seq) DO UPDATE SET version = excluded.version, state = excluded.state, \
    reserved_seconds = excluded.reserved_seconds, reserved_micros = excluded.reserved_micros, \
    billable_seconds = excluded.billable_seconds, charged_seconds = excluded.charged_seconds, \
    charged_micros = excluded.charged_micros, expires_at = excluded.expires_at, \
    ended_at = excluded.ended_at WHERE excluded.version > calls.version";

/// Text columns of a row written into reused buffers, so a batch's rows allocate nothing.
/// The months are written again only when they change (nearly every row has the month
/// before's): formatting one cost ~300 instructions a row.
#[derive(Default)]
pub struct Scratch {
    month: Month,
    route: String,
    spend_month: Month,
}

/// A month as `YYYY-MM`, and which month that is.
#[derive(Default)]
struct Month {
    key: Option<MonthKey>,
    text: String,
}

impl Month {
    fn set(&mut self, m: MonthKey) {
        use std::fmt::Write as _;
        if self.key != Some(m) {
            self.key = Some(m);
            self.text.clear();
            // Writing to a String cannot fail.
            let _ = write!(self.text, "{m}");
        }
    }
}

impl Scratch {
    /// Writes the text columns of `c` that are not stored as text in the call.
    pub fn fill(&mut self, c: &StoredCall) {
        self.month.set(c.month());
        self.route.clear();
        if let Some(r) = &c.route {
            push_route_name(r, &mut self.route);
        }
        if let StoredFunding::Credits {
            spend: Some((_, m)),
            ..
        } = &c.funding
        {
            self.spend_month.set(*m);
        }
    }
}

/// One column's value, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(t: Option<&'a str>) -> Self {
        t.map_or(Value::Null, Value::Text)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(n: Option<i64>) -> Self {
        n.map_or(Value::Null, Value::Int)
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(n) => ValueRef::Integer(n),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

/// The parameters of [`UPSERT`] for `c` (in [`COLUMNS`] order), texts from `c` and from `s`
/// (filled for `c`).
pub fn values<'a>(c: &'a StoredCall, s: &'a Scratch) -> [Value<'a>; 29] {
    // Every admitted call has one (the engine numbers it as it records the reservation); a
    // 0 would make calls share a row.
    debug_assert_ne!(c.seq, 0, "call {} has no sequence number", c.call_id);
    let d = c.destination.as_ref();
    let (funding, pool, per_minute, spend) = match &c.funding {
        StoredFunding::None => ("none", None, None, None),
        StoredFunding::Pool { key, .. } => ("pool", Some(key), None, None),
        StoredFunding::Credits { per_minute, spend } => {
            ("credits", None, Some(per_minute.0), spend.as_ref())
        }
    };
    // Saturates rather than fails: a row that cannot be bound can never commit, and the
    // engine's memory would hold a change the ledger never gets. The API and the config
    // bound every duration far below (`tollgate_engine::config::MAX_SECONDS`); this is the
    // last line should another path ever feed a larger one.
    let int = |n: u64| Value::Int(saturate(n));
    [
        Value::Text(&c.call_id),
        Value::Int(i64::from(c.version)),
        Value::Text(c.state.as_str()),
        Value::Text(&s.month.text),
        Value::Text(&c.tenant),
        Value::Text(&c.user),
        Value::Text(&c.dialed),
        d.map(|d| d.e164()).into(),
        d.map(|d| d.region.as_str()).into(),
        d.map(|d| d.number_type.as_str()).into(),
        d.map(|d| i64::from(d.calling_code)).into(),
        Value::Text(c.basis.as_str()),
        c.route.as_ref().map(|_| &*s.route).into(),
        Value::Text(funding),
        pool.map(|k| k.region.as_str()).into(),
        pool.map(|k| &*k.sku).into(),
        pool.map(|k| k.kind.as_str()).into(),
        per_minute.into(),
        spend.map(|(u, _)| &**u).into(),
        spend.map(|_| &*s.spend_month.text).into(),
        int(c.reserved_seconds),
        Value::Int(c.reserved_money.0),
        int(c.billable_seconds),
        int(c.charged_seconds),
        Value::Int(c.charged_money.0),
        int(c.started_at),
        int(c.expires_at),
        match c.ended_at {
            Some(t) => int(t),
            None => Value::Null,
        },
        int(c.seq),
    ]
}

/// `n` as a SQLite integer, `i64::MAX` if larger.
pub fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes `c` with a rusqlite statement of [`UPSERT`] (tests and benches; the writer uses
/// [`super::upsert`]).
pub fn bind(stmt: &mut Statement<'_>, c: &StoredCall, s: &mut Scratch) -> rusqlite::Result<usize> {
    s.fill(c);
    let v = values(c, s);
    stmt.execute(rusqlite::params_from_iter(v.iter()))
}

/// `emergency`, `internal`, `calling_plan:US`, `direct:sbc.example.com`, or the Contacts of a voice
/// routing policy, `voice:1.0 sbc1.example.com,0.9 sbc2.example.com`
/// (`tollgate_engine::routing::PolicyRoute::push_text`), appended to `out`.
fn push_route_name(r: &Route, out: &mut String) {
    match r {
        Route::Emergency => out.push_str("emergency"),
        Route::Internal => out.push_str("internal"),
        Route::CallingPlan(region) => {
            out.push_str("calling_plan:");
            out.push_str(region.as_str());
        }
        Route::Direct(host) => {
            out.push_str("direct:");
            out.push_str(host);
        }
        Route::Policy(p) => {
            out.push_str("voice:");
            p.push_text(out);
        }
    }
}

fn parse_route(s: &str) -> Option<Route> {
    match s {
        "emergency" => return Some(Route::Emergency),
        "internal" => return Some(Route::Internal),
        _ => {}
    }
    if let Some(r) = s.strip_prefix("calling_plan:") {
        return Region::new(r).map(Route::CallingPlan);
    }
    if let Some(text) = s.strip_prefix("voice:") {
        return PolicyRoute::from_text(text).map(Route::Policy);
    }
    s.strip_prefix("direct:").map(|h| Route::Direct(h.into()))
}

/// `YYYY-MM` → month.
pub fn parse_month(s: &str) -> Option<MonthKey> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: u32 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (1..=12).contains(&m).then(|| MonthKey(y * 12 + m - 1))
}

pub fn parse_state(s: &str) -> Option<CallState> {
    [
        CallState::Reserved,
        CallState::Settled,
        CallState::Expired,
        CallState::Released,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
}

pub fn parse_kind(s: &str) -> Option<PoolKind> {
    PoolKind::ALL.into_iter().find(|k| k.as_str() == s)
}

/// The cells of a row in [`COLUMNS`] order, wherever it was stored: a SQLite row of the
/// ledger, or the same values as a JSON array in the cluster store ([`to_json`]).
pub trait Cells {
    /// A text cell (`None` for NULL).
    fn text(&self, i: usize) -> Result<Option<String>, LedgerError>;
    /// An integer cell (`None` for NULL).
    fn int(&self, i: usize) -> Result<Option<i64>, LedgerError>;
}

impl Cells for Row<'_> {
    fn text(&self, i: usize) -> Result<Option<String>, LedgerError> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<Option<i64>, LedgerError> {
        Ok(self.get(i)?)
    }
}

/// A call's row as a JSON array of its cells in [`COLUMNS`] order: the cluster store keeps a
/// node's rows this way, read back with [`read`] like the ledger's. Written straight from the
/// cells, with no JSON tree in between (once per call delivered to the store).
pub fn to_json(c: &StoredCall) -> String {
    let mut s = Scratch::default();
    s.fill(c);
    serde_json::to_string(&values(c, &s)).unwrap_or_default()
}

impl serde::Serialize for Value<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Value::Null => s.serialize_none(),
            Value::Int(n) => s.serialize_i64(n),
            Value::Text(t) => s.serialize_str(t),
        }
    }
}

/// A JSON array of [`to_json`]; `call` names the row in errors.
pub struct JsonCells<'a> {
    pub cells: &'a [serde_json::Value],
    pub call: &'a str,
}

impl Cells for JsonCells<'_> {
    fn text(&self, i: usize) -> Result<Option<String>, LedgerError> {
        match self.cells.get(i) {
            Some(serde_json::Value::String(t)) => Ok(Some(t.clone())),
            Some(serde_json::Value::Null) => Ok(None),
            _ => Err(self.bad(i)),
        }
    }
    fn int(&self, i: usize) -> Result<Option<i64>, LedgerError> {
        match self.cells.get(i) {
            Some(serde_json::Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| self.bad(i)),
            Some(serde_json::Value::Null) => Ok(None),
            _ => Err(self.bad(i)),
        }
    }
}

impl JsonCells<'_> {
    fn bad(&self, i: usize) -> LedgerError {
        LedgerError::BadRow {
            call_id: self.call.to_string(),
            column: COLUMN_NAMES.get(i).copied().unwrap_or("?"),
        }
    }
}

/// [`COLUMNS`], one name each.
const COLUMN_NAMES: [&str; 29] = [
    "call_id",
    "version",
    "state",
    "month",
    "tenant",
    "user",
    "dialed",
    "e164",
    "region",
    "number_type",
    "calling_code",
    "basis",
    "route",
    "funding",
    "pool_region",
    "pool_sku",
    "pool_kind",
    "per_minute_micros",
    "spend_user",
    "spend_month",
    "reserved_seconds",
    "reserved_micros",
    "billable_seconds",
    "charged_seconds",
    "charged_micros",
    "started_at",
    "expires_at",
    "ended_at",
    "seq",
];

/// A row selected with [`COLUMNS`] back into a call; a value this build cannot read names the
/// call and the column.
pub fn read(row: &impl Cells) -> Result<StoredCall, LedgerError> {
    let call_id: String = row.text(0)?.unwrap_or_default();
    let bad = |column: &'static str| LedgerError::BadRow {
        call_id: call_id.clone(),
        column,
    };
    let text = |i: usize| row.text(i);
    let need_text = |i: usize, column| -> Result<String, LedgerError> {
        row.text(i)?.ok_or_else(|| bad(column))
    };
    let num =
        |i: usize, column| -> Result<i64, LedgerError> { row.int(i)?.ok_or_else(|| bad(column)) };
    let month = |i: usize, column| -> Result<Option<MonthKey>, LedgerError> {
        match text(i)? {
            None => Ok(None),
            Some(s) => parse_month(&s).map(Some).ok_or_else(|| bad(column)),
        }
    };
    let tenant: Arc<str> = need_text(4, "tenant")?.into();
    let basis_name = need_text(11, "basis")?;
    let basis = Basis::ALL
        .into_iter()
        .find(|b| b.as_str() == basis_name)
        .ok_or_else(|| bad("basis"))?;
    let calling_code = match row.int(10)? {
        None => None,
        Some(n) => Some(u16::try_from(n).map_err(|_| bad("calling_code"))?),
    };
    let destination = match (text(7)?, text(8)?, text(9)?, calling_code) {
        (Some(e164), Some(region), Some(t), Some(cc)) => Some(Destination::new(
            &e164,
            cc,
            Region::new(&region).ok_or_else(|| bad("region"))?,
            NumberType::from_name(&t).ok_or_else(|| bad("number_type"))?,
        )),
        _ => None,
    };
    let route = match text(12)? {
        None => None,
        Some(s) => Some(parse_route(&s).ok_or_else(|| bad("route"))?),
    };
    let charged_month = month(3, "month")?.ok_or_else(|| bad("month"))?;
    let funding = match need_text(13, "funding")?.as_str() {
        "none" => StoredFunding::None,
        "pool" => StoredFunding::Pool {
            key: PoolKey {
                tenant: Arc::clone(&tenant),
                region: text(14)?
                    .and_then(|r| Region::new(&r))
                    .ok_or_else(|| bad("pool_region"))?,
                sku: text(15)?.ok_or_else(|| bad("pool_sku"))?.into(),
                kind: text(16)?
                    .and_then(|k| parse_kind(&k))
                    .ok_or_else(|| bad("pool_kind"))?,
            },
            month: charged_month,
        },
        "credits" => StoredFunding::Credits {
            per_minute: Money(num(17, "per_minute_micros")?),
            spend: match (text(18)?, month(19, "spend_month")?) {
                (Some(u), Some(m)) => Some((u.into(), m)),
                _ => None,
            },
        },
        _ => return Err(bad("funding")),
    };
    let secs = |i: usize, column| -> Result<u64, LedgerError> {
        u64::try_from(num(i, column)?).map_err(|_| bad(column))
    };
    Ok(StoredCall {
        seq: secs(28, "seq")?,
        version: u32::try_from(num(1, "version")?).map_err(|_| bad("version"))?,
        state: parse_state(&need_text(2, "state")?).ok_or_else(|| bad("state"))?,
        tenant,
        user: need_text(5, "user")?.into(),
        dialed: need_text(6, "dialed")?.into(),
        destination,
        basis,
        route,
        funding,
        reserved_seconds: secs(20, "reserved_seconds")?,
        reserved_money: Money(num(21, "reserved_micros")?),
        billable_seconds: secs(22, "billable_seconds")?,
        charged_seconds: secs(23, "charged_seconds")?,
        charged_money: Money(num(24, "charged_micros")?),
        started_at: secs(25, "started_at")?,
        expires_at: secs(26, "expires_at")?,
        ended_at: match row.int(27)? {
            None => None,
            Some(t) => Some(u64::try_from(t).map_err(|_| bad("ended_at"))?),
        },
        call_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_routes_round_trip() {
        for m in ["2026-11", "2026-12", "2027-01", "1999-02"] {
            assert_eq!(parse_month(m).map(|k| k.to_string()).as_deref(), Some(m));
        }
        for bad in ["2026-13", "2026-00", "26-11", "2026-1", "x"] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
        for r in [
            Route::Emergency,
            Route::Internal,
            Route::CallingPlan(Region::new("PR").unwrap()),
            Route::Direct("sbc.example.com".into()),
            Route::Policy(
                PolicyRoute::from_text("1.0 sbc1.example.com:5061;transport=tls,1.0 sbc2.example.com,0.9 [2001:db8::1]:5060")
                    .unwrap(),
            ),
        ] {
            let mut name = String::new();
            push_route_name(&r, &mut name);
            assert_eq!(parse_route(&name), Some(r));
        }
        // A voice route's Contacts with their q, in order, as written.
        let mut name = String::new();
        let r = parse_route("voice:1.0 a.example,1.0 b.example,0.9 c.example").unwrap();
        push_route_name(&r, &mut name);
        assert_eq!(name, "voice:1.0 a.example,1.0 b.example,0.9 c.example");
        for bad in ["voice:", "voice:a.example", "voice:2.0 a.example"] {
            assert_eq!(parse_route(bad), None, "{bad}");
        }
    }
}
