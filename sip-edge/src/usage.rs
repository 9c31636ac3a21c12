//! Usage thresholds (issue 20 item 5): a log line the moment a pool or a tenant's
//! Communications Credits cross 80 % and 100 % used, once each, and a counter of the crossings.
//!
//! Teams warns at the same two marks ("when 80 % and 100 % of the minutes are used",
//! teams-pstn-features §2.2; CGRateS ThresholdS, peers §3.11). The gauges an alert reads
//! (`tollgate_pool_*_seconds`, `tollgate_credits_*`) are exported at each scrape; this is what a
//! log-based pipeline sees, and it says *when* a pool crossed, not only that it stands past a mark.
//!
//! Checked on the daemon's once-a-second tick, never on the call path. A mark re-arms when usage
//! falls back below it (a reload added licences or credits), and a pool's marks start afresh
//! each month (its key carries the month). The marks are held in memory only: after a restart a
//! pool or balance still past a mark is logged once more, which says where things stand to
//! whoever reads the new process's log.

use std::collections::HashMap;
use std::sync::Arc;

use tollgate_engine::credits::Money;
use tollgate_engine::pools::{MonthKey, PoolKey, PoolStatus};

/// The marks, in percent used.
pub const THRESHOLDS: [u8; 2] = [80, 100];

/// A crossing to log and count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crossing {
    /// A pool: used + reserved over capacity.
    Pool {
        key: PoolKey,
        threshold: u8,
        used_percent: u64,
    },
    /// A tenant's credits: spent (configured − balance) over configured.
    Credits {
        tenant: String,
        threshold: u8,
        used_percent: u64,
        balance: Money,
        configured: Money,
    },
}

impl Crossing {
    /// `pool` or `credits`: the counter's `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Crossing::Pool { .. } => "pool",
            Crossing::Credits { .. } => "credits",
        }
    }

    /// The mark crossed.
    pub fn threshold(&self) -> u8 {
        match self {
            Crossing::Pool { threshold, .. } | Crossing::Credits { threshold, .. } => *threshold,
        }
    }

    /// Logs it at `warn`, with what an operator needs to act.
    pub fn log(&self) {
        match self {
            Crossing::Pool {
                key,
                threshold,
                used_percent,
            } => tracing::warn!(
                tenant = &*key.tenant,
                region = key.region.as_str(),
                sku = &*key.sku,
                kind = key.kind.as_str(),
                threshold,
                used_percent,
                "pool usage threshold crossed"
            ),
            Crossing::Credits {
                tenant,
                threshold,
                used_percent,
                balance,
                configured,
            } => tracing::warn!(
                tenant = tenant.as_str(),
                threshold,
                used_percent,
                balance = %balance,
                configured = %configured,
                "credits usage threshold crossed"
            ),
        }
    }
}

/// The highest mark each pool and tenant stands past: one small entry per pool of the month
/// and per tenant with credits, rebuilt on each look so pools of a past month and tenants
/// a reload removed drop out.
#[derive(Debug, Default)]
pub struct Watch {
    pools: HashMap<(PoolKey, MonthKey), u8>,
    credits: HashMap<Arc<str>, u8>,
}

/// The percent `used` is of `of` (0 when `of` is 0), rounded down.
fn percent(used: u128, of: u128) -> u64 {
    (used * 100)
        .checked_div(of)
        .map_or(0, |p| u64::try_from(p).unwrap_or(u64::MAX))
}

/// The highest mark `p` percent stands past, 0 for none.
fn level(p: u64) -> u8 {
    THRESHOLDS
        .iter()
        .rev()
        .copied()
        .find(|t| p >= u64::from(*t))
        .unwrap_or(0)
}

impl Watch {
    /// The crossings since the last look: each pool (keyed with its own month, so a new month
    /// starts from no mark), and each tenant's credits as (id, balance, configured). Pools
    /// and tenants not in this look are forgotten; pools of capacity 0 and tenants with no
    /// configured credits have no share to cross and are skipped.
    pub fn look(
        &mut self,
        pools: &[PoolStatus],
        credits: &[(Arc<str>, Money, Money)],
    ) -> Vec<Crossing> {
        let mut out = Vec::new();
        let mut seen = HashMap::with_capacity(pools.len());
        for p in pools.iter().filter(|p| p.capacity_seconds > 0) {
            let used = u128::from(p.used_seconds) + u128::from(p.reserved_seconds);
            let used_percent = percent(used, u128::from(p.capacity_seconds));
            let key = (p.key.clone(), p.month);
            let was = self.pools.remove(&key).unwrap_or(0);
            let now = level(used_percent);
            out.extend(rising(was, now).map(|threshold| Crossing::Pool {
                key: p.key.clone(),
                threshold,
                used_percent,
            }));
            seen.insert(key, now);
        }
        self.pools = seen;
        let mut seen = HashMap::with_capacity(credits.len());
        for (tenant, balance, configured) in credits.iter().filter(|c| c.2 .0 > 0) {
            // A balance above the configured figure (a reload lowered it) is nothing spent;
            // below zero (calls settled past it) is all of it.
            let spent =
                u128::try_from(configured.0 - balance.0.clamp(0, configured.0)).unwrap_or(0);
            let used_percent = percent(spent, u128::try_from(configured.0).unwrap_or(1));
            let was = self.credits.remove(tenant).unwrap_or(0);
            let now = level(used_percent);
            out.extend(rising(was, now).map(|threshold| Crossing::Credits {
                tenant: tenant.to_string(),
                threshold,
                used_percent,
                balance: *balance,
                configured: *configured,
            }));
            seen.insert(Arc::clone(tenant), now);
        }
        self.credits = seen;
        out
    }
}

/// The marks above `was` up to `now` (none when usage fell or stayed).
fn rising(was: u8, now: u8) -> impl Iterator<Item = u8> {
    THRESHOLDS
        .into_iter()
        .filter(move |t| *t > was && *t <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_engine::numbering::Region;
    use tollgate_engine::pools::PoolKind;

    const NOV: u64 = 1_795_000_000;
    const DEC: u64 = 1_797_000_000;

    fn pool_of(sku: &str, at: u64, used: u64, reserved: u64, capacity: u64) -> PoolStatus {
        PoolStatus {
            key: PoolKey {
                tenant: "contoso".into(),
                region: Region::new("US").unwrap(),
                sku: sku.into(),
                kind: PoolKind::Domestic,
            },
            month: MonthKey::of(at),
            capacity_seconds: capacity,
            used_seconds: used,
            reserved_seconds: reserved,
            remaining_seconds: capacity.saturating_sub(used + reserved),
        }
    }

    fn pool(used: u64, reserved: u64, capacity: u64) -> PoolStatus {
        pool_of("MCOPSTN1", NOV, used, reserved, capacity)
    }

    /// A figure in the tenant's currency; a leading '-' for an overspent balance.
    fn money(s: &str) -> Money {
        match s.strip_prefix('-') {
            Some(s) => Money(-Money::parse(s).unwrap().0),
            None => Money::parse(s).unwrap(),
        }
    }

    fn marks(c: &[Crossing]) -> Vec<(&'static str, u8)> {
        c.iter().map(|x| (x.kind(), x.threshold())).collect()
    }

    #[test]
    fn a_pool_crosses_each_mark_once_and_rearms_below_it() {
        let mut w = Watch::default();
        let mut at = |used, reserved| marks(&w.look(&[pool(used, reserved, 1000)], &[]));
        assert!(at(0, 0).is_empty());
        assert!(at(700, 90).is_empty(), "79 %");
        assert_eq!(at(700, 100), [("pool", 80)], "reserved counts: 80 %");
        assert!(at(850, 0).is_empty(), "still past 80: logged once");
        assert_eq!(at(1000, 0), [("pool", 100)]);
        assert!(at(1000, 0).is_empty());
        assert!(
            at(1200, 0).is_empty(),
            "past capacity is still the one 100 % crossing"
        );
        // Licences added: back below both marks, then past 80 again.
        assert!(at(500, 0).is_empty());
        assert_eq!(at(800, 0), [("pool", 80)]);
        // Back between the marks re-arms 100 only.
        assert_eq!(at(1000, 0), [("pool", 100)]);
        assert!(at(900, 0).is_empty());
        assert_eq!(at(1000, 0), [("pool", 100)]);
        // Straight from under 80 to 100: both marks, in order.
        assert!(at(100, 0).is_empty());
        assert_eq!(at(1000, 0), [("pool", 80), ("pool", 100)]);
    }

    #[test]
    fn the_crossing_carries_what_the_log_line_needs() {
        let mut w = Watch::default();
        let c = w.look(&[pool(850, 0, 1000)], &[]);
        let [Crossing::Pool {
            key,
            threshold,
            used_percent,
        }] = c.as_slice()
        else {
            panic!("{c:?}")
        };
        assert_eq!((&*key.tenant, &*key.sku), ("contoso", "MCOPSTN1"));
        assert_eq!((*threshold, *used_percent), (80, 85));
    }

    #[test]
    fn pools_are_watched_apart() {
        let mut w = Watch::default();
        let a = |used| pool_of("MCOPSTN1", NOV, used, 0, 1000);
        let b = |used| pool_of("MCOPSTN5", NOV, used, 0, 1000);
        assert_eq!(marks(&w.look(&[a(800), b(0)], &[])), [("pool", 80)]);
        assert_eq!(marks(&w.look(&[a(800), b(800)], &[])), [("pool", 80)]);
        assert!(w.look(&[a(800), b(800)], &[]).is_empty());
    }

    #[test]
    fn a_new_month_starts_afresh_and_empty_pools_are_ignored() {
        let mut w = Watch::default();
        let nov = pool_of("MCOPSTN1", NOV, 900, 0, 1000);
        let dec = pool_of("MCOPSTN1", DEC, 900, 0, 1000);
        assert_eq!(
            marks(&w.look(std::slice::from_ref(&nov), &[])),
            [("pool", 80)]
        );
        assert_eq!(
            marks(&w.look(std::slice::from_ref(&dec), &[])),
            [("pool", 80)]
        );
        assert!(w.look(&[dec], &[]).is_empty());
        assert!(w.look(&[pool(0, 0, 0)], &[]).is_empty());
        assert!(w.look(&[pool(10, 5, 0)], &[]).is_empty(), "capacity 0");
        assert!(w.pools.is_empty(), "pools of capacity 0 are not kept");
    }

    #[test]
    fn a_pool_a_reload_removed_is_forgotten() {
        let mut w = Watch::default();
        assert_eq!(marks(&w.look(&[pool(900, 0, 1000)], &[])), [("pool", 80)]);
        assert!(w.look(&[], &[]).is_empty());
        assert!(w.pools.is_empty());
        // Back (licences assigned again) and still past 80: a new crossing.
        assert_eq!(marks(&w.look(&[pool(900, 0, 1000)], &[])), [("pool", 80)]);
    }

    #[test]
    fn credits_cross_on_what_is_spent_of_the_configured_balance() {
        let mut w = Watch::default();
        let m = money;
        let mut at = |balance: &str| marks(&w.look(&[], &[("t".into(), m(balance), m("10.00"))]));
        assert!(at("10.00").is_empty());
        assert!(at("2.01").is_empty(), "79.9 % spent");
        assert_eq!(at("2.00"), [("credits", 80)]);
        assert!(at("1.00").is_empty());
        assert_eq!(at("0.00"), [("credits", 100)]);
        assert!(
            at("-0.50").is_empty(),
            "overspent: still the one 100 % crossing"
        );
        // A top-up re-arms.
        assert!(at("9.00").is_empty());
        assert_eq!(at("1.50"), [("credits", 80)]);
        assert!(
            at("12.00").is_empty(),
            "above the configured figure: nothing spent"
        );
        assert_eq!(at("-1.00"), [("credits", 80), ("credits", 100)]);
    }

    #[test]
    fn the_credits_crossing_names_the_figures() {
        let mut w = Watch::default();
        let m = money;
        let c = w.look(&[], &[("fabrikam".into(), m("1.50"), m("10.00"))]);
        assert_eq!(
            c,
            [Crossing::Credits {
                tenant: "fabrikam".into(),
                threshold: 80,
                used_percent: 85,
                balance: m("1.50"),
                configured: m("10.00"),
            }]
        );
    }

    #[test]
    fn tenants_without_credits_are_skipped_and_removed_ones_forgotten() {
        let mut w = Watch::default();
        let m = money;
        assert!(w
            .look(&[], &[("z".into(), Money::ZERO, Money::ZERO)])
            .is_empty());
        assert!(w
            .look(&[], &[("z".into(), m("-1.00"), Money::ZERO)])
            .is_empty());
        assert!(w.credits.is_empty());
        assert_eq!(
            marks(&w.look(&[], &[("t".into(), m("0.00"), m("1.00"))])),
            [("credits", 80), ("credits", 100)]
        );
        assert!(w.look(&[], &[]).is_empty());
        assert!(w.credits.is_empty());
    }
}
