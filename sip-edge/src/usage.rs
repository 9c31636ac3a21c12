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
//! each month (its key carries the month).

use std::collections::HashMap;

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

/// The highest mark each pool and tenant stands past.
#[derive(Debug, Default)]
pub struct Watch {
    pools: HashMap<(PoolKey, MonthKey), u8>,
    credits: HashMap<String, u8>,
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
    /// The crossings since the last look: the pools of `month`, and each tenant's credits as
    /// (id, balance, configured). Pools of other months and tenants gone are forgotten.
    pub fn look(
        &mut self,
        month: MonthKey,
        pools: &[PoolStatus],
        credits: &[(String, Money, Money)],
    ) -> Vec<Crossing> {
        let mut out = Vec::new();
        self.pools.retain(|(_, m), _| *m == month);
        for p in pools.iter().filter(|p| p.capacity_seconds > 0) {
            let used = u128::from(p.used_seconds) + u128::from(p.reserved_seconds);
            let used_percent = percent(used, u128::from(p.capacity_seconds));
            let was = self.pools.entry((p.key.clone(), month)).or_insert(0);
            for t in rising(*was, level(used_percent)) {
                out.push(Crossing::Pool {
                    key: p.key.clone(),
                    threshold: t,
                    used_percent,
                });
            }
            *was = level(used_percent);
        }
        self.credits
            .retain(|t, _| credits.iter().any(|(id, _, _)| id == t));
        for (tenant, balance, configured) in credits.iter().filter(|c| c.2 .0 > 0) {
            let spent = u128::try_from(configured.0 - balance.0.max(0)).unwrap_or(0);
            let used_percent = percent(spent, u128::try_from(configured.0).unwrap_or(1));
            let was = self.credits.entry(tenant.clone()).or_insert(0);
            for t in rising(*was, level(used_percent)) {
                out.push(Crossing::Credits {
                    tenant: tenant.clone(),
                    threshold: t,
                    used_percent,
                    balance: *balance,
                    configured: *configured,
                });
            }
            *was = level(used_percent);
        }
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

    fn pool(used: u64, reserved: u64, capacity: u64) -> PoolStatus {
        PoolStatus {
            key: PoolKey {
                tenant: "contoso".into(),
                region: Region::new("US").unwrap(),
                sku: "MCOPSTN1".into(),
                kind: PoolKind::Domestic,
            },
            month: MonthKey::of(1_795_000_000),
            capacity_seconds: capacity,
            used_seconds: used,
            reserved_seconds: reserved,
            remaining_seconds: capacity.saturating_sub(used + reserved),
        }
    }

    fn marks(c: &[Crossing]) -> Vec<(&'static str, u8)> {
        c.iter().map(|x| (x.kind(), x.threshold())).collect()
    }

    #[test]
    fn a_pool_crosses_each_mark_once_and_rearms_below_it() {
        let month = MonthKey::of(1_795_000_000);
        let mut w = Watch::default();
        let mut at = |used, reserved| marks(&w.look(month, &[pool(used, reserved, 1000)], &[]));
        assert!(at(0, 0).is_empty());
        assert!(at(700, 90).is_empty(), "79 %");
        assert_eq!(at(700, 100), [("pool", 80)], "reserved counts: 80 %");
        assert!(at(850, 0).is_empty(), "still past 80: logged once");
        assert_eq!(at(1000, 0), [("pool", 100)]);
        assert!(at(1000, 0).is_empty());
        // Licences added: back below both marks, then past 80 again.
        assert!(at(500, 0).is_empty());
        assert_eq!(at(800, 0), [("pool", 80)]);
        // Straight from under 80 to 100: both marks, in order.
        assert!(at(100, 0).is_empty());
        assert_eq!(at(1000, 0), [("pool", 80), ("pool", 100)]);
    }

    #[test]
    fn a_new_month_starts_afresh_and_empty_pools_are_ignored() {
        let (nov, dec) = (MonthKey::of(1_795_000_000), MonthKey::of(1_797_000_000));
        let mut w = Watch::default();
        assert_eq!(
            marks(&w.look(nov, &[pool(900, 0, 1000)], &[])),
            [("pool", 80)]
        );
        assert_eq!(
            marks(&w.look(dec, &[pool(900, 0, 1000)], &[])),
            [("pool", 80)]
        );
        assert!(w.look(dec, &[pool(0, 0, 0)], &[]).is_empty());
    }

    #[test]
    fn credits_cross_on_what_is_spent_of_the_configured_balance() {
        let month = MonthKey::of(1_795_000_000);
        let mut w = Watch::default();
        let m = |s: &str| Money::parse(s).unwrap();
        let mut at =
            |balance: &str| marks(&w.look(month, &[], &[("t".into(), m(balance), m("10.00"))]));
        assert!(at("2.01").is_empty(), "79.9 % spent");
        assert_eq!(at("2.00"), [("credits", 80)]);
        assert!(at("1.00").is_empty());
        assert_eq!(at("0.00"), [("credits", 100)]);
        // A top-up re-arms.
        assert!(at("9.00").is_empty());
        assert_eq!(at("1.50"), [("credits", 80)]);
        // A tenant with no configured credits is never looked at.
        assert!(w
            .look(month, &[], &[("z".into(), Money::ZERO, Money::ZERO)])
            .is_empty());
    }
}
