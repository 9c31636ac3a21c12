//! Minute pools (DESIGN §4 rule 9 and "Reservations").
//!
//! One pool per `(tenant, pool region, SKU, domestic | international)` per UTC calendar month
//! ("All users in the same country with the same Calling Plan share a pool of minutes",
//! calling-plans doc). Capacity = minutes(SKU, region) × users holding the SKU there.
//!
//! Counters live in a table per month: a `Vec` of counters indexed by the pool id that the
//! directory snapshot assigned and stored on each user, so the hot path does no map lookup. Each
//! counter keeps `committed` = settled + reserved in **one** atomic and reserves with a CAS loop,
//! so `settled + reserved ≤ capacity` holds at every instant under any concurrency.
//!
//! A table belongs to one month ([`MonthKey`]); at rollover (00:00 UTC on the 1st — the docs say
//! "the first day of the next calendar month" without a time zone) the engine swaps in a fresh
//! table. Counters are `Arc`s so that a reload keeps the live counts of pools that still exist,
//! and a reservation settles on the counter it was taken from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::numbering::Region;
use crate::shares::{Lack, Share};

/// Domestic or international pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoolKind {
    /// Domestic minutes, which every calling plan has.
    Domestic,
    /// The separate international minutes of an International plan (calling-plan-rules §1).
    International,
    /// A tenant's Audio Conferencing dial-out minutes, one pool for the whole tenant
    /// ([`crate::conference`]).
    Conference,
}

impl PoolKind {
    /// Every kind (parsing the ledger's and the store's names back).
    pub const ALL: [PoolKind; 3] = [
        PoolKind::Domestic,
        PoolKind::International,
        PoolKind::Conference,
    ];

    /// `"domestic"`, `"international"` or `"conference"` (the `kind` of `GET /v1/pools`).
    pub fn as_str(&self) -> &'static str {
        match self {
            PoolKind::Domestic => "domestic",
            PoolKind::International => "international",
            PoolKind::Conference => "conference",
        }
    }
}

/// The identity of a pool, stable across reloads (tenant and SKU by name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// The tenant id.
    pub tenant: Arc<str>,
    /// The pool region (the usage location, or the region it pools with).
    pub region: Region,
    /// The calling-plan SKU part number: "Pooling is only available on identical Calling
    /// Plans" (calling-plan-rules §2).
    pub sku: Arc<str>,
    /// Domestic or international.
    pub kind: PoolKind,
}

/// A UTC calendar month, as `year * 12 + (month - 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonthKey(pub u32);

impl MonthKey {
    /// The month containing `unix_seconds` (UTC).
    pub fn of(unix_seconds: u64) -> MonthKey {
        let (y, m, _) = civil_from_days((unix_seconds / 86_400) as i64);
        MonthKey((y.max(0) as u32) * 12 + (m - 1))
    }

    /// The year (`2026`).
    pub fn year(&self) -> u32 {
        self.0 / 12
    }

    /// 1..=12.
    pub fn month(&self) -> u32 {
        self.0 % 12 + 1
    }

    /// The first second (unix, UTC) after this month: until then [`MonthKey::of`] is at most
    /// this month, which the decision path checks with one comparison instead of a date
    /// conversion.
    pub fn end(&self) -> u64 {
        let next = self.0 as i64 + 1;
        let days = days_from_civil(next / 12, (next % 12 + 1) as u32, 1);
        (days.max(0) as u64) * 86_400
    }
}

impl std::fmt::Display for MonthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month 1..=12, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Howard Hinnant's `days_from_civil`: (year, month 1..=12, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = ((m + 9) % 12) as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The live counters of one pool for one month. All figures in seconds.
#[derive(Debug)]
pub struct PoolCounter {
    /// Which pool.
    pub key: PoolKey,
    /// Which month it counts.
    pub month: MonthKey,
    capacity: AtomicU64,
    /// settled + reserved; never above `capacity` by a reservation.
    committed: AtomicU64,
    /// settled (used) seconds.
    used: AtomicU64,
    /// With several nodes (DESIGN §6), what this node may grant: its share of the pool drawn
    /// from the store. Grants take from it instead of `capacity`; `capacity`, `committed` and
    /// `used` then count this node's calls only.
    share: Option<Share>,
}

/// A snapshot of one pool's figures, for `GET /v1/pools` and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Which pool.
    pub key: PoolKey,
    /// Which month.
    pub month: MonthKey,
    /// Minutes(SKU, region) × licensed users, in seconds.
    pub capacity_seconds: u64,
    /// Settled usage.
    pub used_seconds: u64,
    /// Held by calls still in progress.
    pub reserved_seconds: u64,
    /// Capacity − used − reserved: what new grants can take.
    pub remaining_seconds: u64,
}

impl PoolCounter {
    /// A counter with nothing used or reserved.
    pub(crate) fn new(
        key: PoolKey,
        month: MonthKey,
        capacity_seconds: u64,
        shared: bool,
    ) -> PoolCounter {
        PoolCounter {
            key,
            month,
            capacity: AtomicU64::new(capacity_seconds),
            committed: AtomicU64::new(0),
            used: AtomicU64::new(0),
            share: shared.then(Share::default),
        }
    }

    /// This node's share of the pool, with several nodes.
    pub fn share(&self) -> Option<&Share> {
        self.share.as_ref()
    }

    /// Capacity in seconds (changes when a reload changes the number of licenses).
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Acquire)
    }

    /// A reload changed the number of licenses. Reservations already made stay; if capacity
    /// drops below them, new reservations fail until they settle.
    pub(crate) fn set_capacity(&self, seconds: u64) {
        self.capacity.store(seconds, Ordering::Release);
    }

    /// Seconds neither settled nor reserved (with several nodes: this node's free share).
    pub fn remaining(&self) -> u64 {
        if let Some(s) = &self.share {
            return s.free();
        }
        self.capacity()
            .saturating_sub(self.committed.load(Ordering::Acquire))
    }

    /// What a dry run (`tollgate decide`) would grant now: `want`, or what is left in whole
    /// increments; `None` if not even one. With several nodes, an undrained share that does not
    /// cover it would be topped up: `want`.
    pub(crate) fn would_grant(&self, want: u64, increment: u64) -> Option<u64> {
        let inc = increment.max(1);
        match &self.share {
            Some(s) if !s.is_drained() => Some(want),
            _ => Some(want.min(self.remaining() / inc * inc)).filter(|&s| s >= inc.min(want)),
        }
    }

    /// Reserves `min(want, remaining rounded down to increments)` seconds, at least one
    /// `increment`, or says what is lacking. CAS loop: never check-then-add. With several
    /// nodes the grant comes out of this node's share ([`Share::take`]).
    pub(crate) fn reserve(&self, want: u64, increment: u64) -> Result<u64, Lack> {
        if let Some(s) = &self.share {
            let grant = s.take(want, increment)?;
            self.committed.fetch_add(grant, Ordering::AcqRel);
            return Ok(grant);
        }
        let inc = increment.max(1);
        let mut cur = self.committed.load(Ordering::Acquire);
        loop {
            let left = self.capacity().saturating_sub(cur);
            let grant = want.min(left / inc * inc);
            if grant == 0 || grant < inc.min(want) {
                return Err(Lack::Exhausted);
            }
            match self.committed.compare_exchange_weak(
                cur,
                cur + grant,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(grant),
                Err(now) => cur = now,
            }
        }
    }

    /// Settles a reservation of `reserved` seconds of which `used` (≤ `reserved`) were used:
    /// the rest goes back to the pool (with several nodes: to the pool of record, through the
    /// store, not to this node's share).
    pub(crate) fn settle(&self, reserved: u64, used: u64) {
        let used = used.min(reserved);
        self.used.fetch_add(used, Ordering::AcqRel);
        self.committed.fetch_sub(reserved - used, Ordering::AcqRel);
    }

    /// Rebuilds state from the ledger at start-up: adds settled usage and open reservations
    /// without checking capacity (what was admitted stays admitted).
    pub(crate) fn restore(&self, used: u64, reserved: u64) {
        self.used.fetch_add(used, Ordering::AcqRel);
        self.committed.fetch_add(used + reserved, Ordering::AcqRel);
    }

    /// The figures now (each read atomically, not all at one instant).
    pub fn status(&self) -> PoolStatus {
        let capacity = self.capacity();
        let used = self.used.load(Ordering::Acquire);
        let committed = self.committed.load(Ordering::Acquire);
        PoolStatus {
            key: self.key.clone(),
            month: self.month,
            capacity_seconds: capacity,
            used_seconds: used,
            reserved_seconds: committed.saturating_sub(used),
            remaining_seconds: capacity.saturating_sub(committed),
        }
    }
}

/// The counters of one month, indexed by the pool ids of the directory snapshot.
#[derive(Debug)]
pub(crate) struct PoolTable {
    pub month: MonthKey,
    pub counters: Vec<Arc<PoolCounter>>,
    /// `month.end()`, computed once.
    ends_at: u64,
}

impl PoolTable {
    /// A table for `month` for the pools `defs` (key, capacity). Counters of `previous` with the
    /// same key and month are kept (a reload), with their capacity updated; the rest start at 0.
    /// With `shared`, new counters admit against a share drawn from the cluster store.
    pub fn build(
        month: MonthKey,
        defs: &[(PoolKey, u64)],
        previous: Option<&PoolTable>,
        shared: bool,
    ) -> PoolTable {
        let old: std::collections::HashMap<&PoolKey, &Arc<PoolCounter>> = previous
            .filter(|p| p.month == month)
            .map(|p| p.counters.iter().map(|c| (&c.key, c)).collect())
            .unwrap_or_default();
        let counters = defs
            .iter()
            .map(|(key, cap)| match old.get(key) {
                Some(c) => {
                    c.set_capacity(*cap);
                    Arc::clone(c)
                }
                None => Arc::new(PoolCounter::new(key.clone(), month, *cap, shared)),
            })
            .collect();
        PoolTable {
            month,
            counters,
            ends_at: month.end(),
        }
    }

    /// The first second after this table's month ([`MonthKey::end`]).
    pub fn ends_at(&self) -> u64 {
        self.ends_at
    }

    pub fn get(&self, id: u32) -> Option<&Arc<PoolCounter>> {
        self.counters.get(id as usize)
    }

    pub fn statuses(&self) -> Vec<PoolStatus> {
        self.counters.iter().map(|c| c.status()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PoolKey {
        PoolKey {
            tenant: "t".into(),
            region: Region::new("US").unwrap(),
            sku: "MCOPSTN1".into(),
            kind: PoolKind::Domestic,
        }
    }

    #[test]
    fn month_keys() {
        assert_eq!(MonthKey::of(0).to_string(), "1970-01");
        // 2026-11-30T23:59:59Z and 2026-12-01T00:00:00Z
        assert_eq!(MonthKey::of(1_796_083_199).to_string(), "2026-11");
        assert_eq!(MonthKey::of(1_796_083_200).to_string(), "2026-12");
        assert_eq!(MonthKey::of(951_782_400).to_string(), "2000-02"); // 2000-02-29
        assert_eq!(MonthKey::of(951_868_800).to_string(), "2000-03");
    }

    #[test]
    fn month_ends() {
        assert_eq!(MonthKey::of(1_796_083_199).end(), 1_796_083_200);
        for month in 0..12 * 200 {
            let k = MonthKey(1970 * 12 + month);
            let end = k.end();
            assert_eq!(MonthKey::of(end - 1), k);
            assert_eq!(MonthKey::of(end), MonthKey(k.0 + 1));
        }
    }

    #[test]
    fn reserve_grants_at_most_what_is_left_in_whole_increments() {
        let c = PoolCounter::new(key(), MonthKey(0), 3000, false);
        assert_eq!(c.reserve(1800, 60), Ok(1800));
        assert_eq!(c.reserve(1800, 60), Ok(1200));
        assert_eq!(c.reserve(1800, 60), Err(Lack::Exhausted));
        c.settle(1800, 65);
        assert_eq!(c.status().used_seconds, 65);
        assert_eq!(c.status().reserved_seconds, 1200);
        assert_eq!(c.reserve(1800, 60), Ok(1680));
    }

    #[test]
    fn reload_keeps_counts() {
        let defs = vec![(key(), 6000)];
        let t1 = PoolTable::build(MonthKey(5), &defs, None, false);
        assert_eq!(t1.counters[0].reserve(1800, 60), Ok(1800));
        let defs2 = vec![(key(), 9000)];
        let t2 = PoolTable::build(MonthKey(5), &defs2, Some(&t1), false);
        assert_eq!(t2.counters[0].remaining(), 7200);
        let t3 = PoolTable::build(MonthKey(6), &defs2, Some(&t2), false);
        assert_eq!(t3.counters[0].remaining(), 9000);
    }

    #[test]
    fn a_shared_counter_grants_from_its_share_and_settles_to_the_store() {
        let c = PoolCounter::new(key(), MonthKey(0), 1_000_000, true);
        assert_eq!(c.reserve(1800, 60), Err(Lack::Short));
        assert_eq!(c.would_grant(1800, 60), Some(1800));
        let share = c.share().unwrap();
        share.add(2000);
        assert_eq!(c.reserve(1800, 60), Ok(1800));
        c.settle(1800, 60);
        // What the call did not use goes back through the store, not into the share.
        assert_eq!(c.remaining(), 200);
        share.set_drained(true);
        assert_eq!(c.reserve(1800, 60), Ok(180));
        assert_eq!(c.would_grant(1800, 60), None);
    }
}
