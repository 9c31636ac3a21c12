//! Shares (DESIGN §6 "Several nodes"): with several nodes, the pools and credit balances of
//! record live in a store shared by the nodes, and each node admits against a **share** it
//! drew from the store, so an INVITE touches no network while the share lasts (the quota
//! slices of Diameter credit control, RFC 4006 §5.1.2, and of Doorman's leases).
//!
//! A [`Share`] is what this node may still grant from one account: seconds of a pool, or
//! micro-units of a tenant's Communications Credits. Grants take from it with a CAS loop, like
//! the single-node counters; what a call does not use is **not** given back to the share when
//! it settles: the settlement reaches the store, which returns it to the pool for every node.
//!
//! When the share cannot cover a grant, the answer depends on the store: while the account has
//! more (cluster-wide) the call is [short](Lack::Short) and the driver fetches more before
//! deciding again (a grant is short only when the pool itself, cluster-wide, has less than a
//! grant left, not merely this node's share); once the store said the account is drained
//! ([`Share::set_drained`]) the node grants what is left of its share and then answers as a
//! single node would (`pool_exhausted`, credits, `credits_exhausted`).
//!
//! How big a share should be is [`plan`]: sized from the node's recent burn rate, and none at
//! all when the account runs low, so that its last minutes are reserved call by call and are
//! not stranded on an idle node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::credits::{CreditAccount, SpendAccount};
use crate::pools::PoolCounter;

/// The account a share belongs to (a live counter, shared with the engine): what the driver
/// tops up and trims ([`crate::Engine::shares`]), and what a [short](Lack::Short) decision
/// names ([`crate::Decision::lacking`]) so the driver draws more for it and has the call
/// decided again.
#[derive(Clone, Debug)]
pub enum ShareOf {
    /// A pool of minutes ([`PoolCounter::share`]).
    Pool(Arc<PoolCounter>),
    /// A tenant's Communications Credits ([`CreditAccount::share`]).
    Credits(Arc<CreditAccount>),
    /// A user's spending in one month under the tenant's spend limit ([`SpendAccount`]):
    /// drawn call by call, never held ahead.
    Spend(Arc<SpendAccount>),
}

/// What a call lacked: the account whose share was short, and how much the call needs from it
/// (a grant's seconds, or its cost in micro-units).
#[derive(Clone, Debug)]
pub struct Short {
    /// The account.
    pub of: ShareOf,
    /// What the call needs.
    pub needed: u64,
}

impl ShareOf {
    /// The share to top up.
    pub fn share(&self) -> Option<&Share> {
        match self {
            ShareOf::Pool(c) => c.share(),
            ShareOf::Credits(a) => a.share(),
            ShareOf::Spend(a) => Some(a.share()),
        }
    }

    /// The account's capacity of record as this node's directory says: a pool's seconds this
    /// month, or a tenant's configured credits in micro-units.
    pub fn capacity(&self) -> u64 {
        match self {
            ShareOf::Pool(c) => c.capacity(),
            ShareOf::Credits(a) => u64::try_from(a.configured().0).unwrap_or(0),
            ShareOf::Spend(a) => u64::try_from(a.limit().0).unwrap_or(0),
        }
    }
}

/// Why a share could not pay for a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lack {
    /// The account has nothing left (single node), or the store said it is drained.
    Exhausted,
    /// This node's share is too small, and the store may have more: fetch, then decide again.
    Short,
}

/// This node's share of one account of the cluster store. All amounts in the account's unit
/// (seconds of a pool, micro-units of credits).
#[derive(Debug, Default)]
pub struct Share {
    free: AtomicU64,
    /// The store has no more for this node than its share ([`Share::set_drained`]).
    drained: AtomicBool,
    /// Taken by grants since start: the driver's burn rate is its growth per second.
    taken: AtomicU64,
}

impl Share {
    /// What grants may still take.
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Acquire)
    }

    /// Taken by grants since this share was created (only grows).
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Acquire)
    }

    /// Whether the store said the account has nothing beyond the shares nodes hold.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// What the store said at its last answer: drained or not.
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Release);
    }

    /// The store granted `amount` more to this node.
    pub fn add(&self, amount: u64) {
        self.free.fetch_add(amount, Ordering::AcqRel);
    }

    /// Takes back up to `max` of the free share (to return it to the store); returns how much.
    pub fn reclaim(&self, max: u64) -> u64 {
        let mut cur = self.free.load(Ordering::Acquire);
        loop {
            let n = cur.min(max);
            if n == 0 {
                return 0;
            }
            match self
                .free
                .compare_exchange_weak(cur, cur - n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return n,
                Err(now) => cur = now,
            }
        }
    }

    /// A grant of `want` in whole `increment`s: all of it while the share covers it; once the
    /// account is drained, what is left of the share (at least one increment).
    pub fn take(&self, want: u64, increment: u64) -> Result<u64, Lack> {
        let inc = increment.max(1);
        let mut cur = self.free.load(Ordering::Acquire);
        loop {
            let grant = if cur >= want {
                want
            } else if self.is_drained() {
                cur / inc * inc
            } else {
                return Err(Lack::Short);
            };
            if grant == 0 || grant < inc.min(want) {
                return Err(Lack::Exhausted);
            }
            match self.free.compare_exchange_weak(
                cur,
                cur - grant,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.taken.fetch_add(grant, Ordering::AcqRel);
                    return Ok(grant);
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Takes exactly `amount` (money: a grant's cost), or says why not.
    pub fn take_exact(&self, amount: u64) -> Result<(), Lack> {
        let mut cur = self.free.load(Ordering::Acquire);
        loop {
            if cur < amount {
                return Err(if self.is_drained() {
                    Lack::Exhausted
                } else {
                    Lack::Short
                });
            }
            match self.free.compare_exchange_weak(
                cur,
                cur - amount,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.taken.fetch_add(amount, Ordering::AcqRel);
                    return Ok(());
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// What the driver should do about one share, from [`plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing: the share is within its bounds.
    Keep,
    /// Draw up to `want` from the store, at least `min` (else nothing).
    Draw {
        /// The top-up that brings the share to its target.
        want: u64,
        /// Less than this is not worth a draw (one grant).
        min: u64,
    },
    /// Return this much of the free share to the store.
    GiveBack(u64),
}

/// The figures [`plan`] sizes a share from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// The share's free amount now.
    pub free: u64,
    /// What grants took from it per second lately.
    pub burn_per_second: u64,
    /// One grant (`grant_seconds`, or its cost at the dearest rate seen for money).
    pub grant: u64,
    /// What the account has beyond every node's share, as the store last said.
    pub available: u64,
    /// The nodes alive (at least 1).
    pub nodes: u64,
}

/// How long the share should last at the recent burn rate, in seconds: long enough that the
/// store sees one draw per pool per minute and a half of a node's calls (the share is topped up
/// when it falls to a quarter of this), and a top-up in the background is never late (one
/// driver tick is a second; a quarter is half a minute). What a node may sit on is bounded
/// apart ([`plan`]'s fair part). Measured: a minute gave 0.035 store round trips per admitted
/// call at 2 calls/s per pool (`benches/README.md`, "Several nodes").
pub const HORIZON_SECONDS: u64 = 120;

/// The smallest share of an account that burns at all, in grants: a quiet pool's calls
/// arrive in bursts, and a share of two grants made the third call of a burst wait for a draw.
pub const MIN_GRANTS: u64 = 4;

/// Below this many grants per node left in the account (beyond the shares), nodes hold no
/// share and reserve call by call in the store: the last minutes are usable from any node.
pub const LOW_GRANTS_PER_NODE: u64 = 2;

/// The policy for one share: a target of [`HORIZON_SECONDS`] of recent burn (at least
/// [`MIN_GRANTS`] while anything burns), but never more than a fair part of what the account has left
/// (half of it split between the nodes, so a busy node cannot take a pool from the others),
/// topped up when the share falls to a quarter of it and trimmed when it holds more than twice;
/// an idle account holds nothing (its next call fetches one grant), and once the account is
/// low ([`LOW_GRANTS_PER_NODE`]) no node holds a share.
pub fn plan(s: Sizing) -> Plan {
    let grant = s.grant.max(1);
    let nodes = s.nodes.max(1);
    let low = s.available < LOW_GRANTS_PER_NODE * grant * nodes;
    let fair = (s.available + s.free) / (2 * nodes);
    let target = if low || s.burn_per_second == 0 {
        0
    } else {
        s.burn_per_second
            .saturating_mul(HORIZON_SECONDS)
            .min(fair)
            .max(MIN_GRANTS * grant)
    };
    if target > 0 && s.free <= target / 4 {
        Plan::Draw {
            want: target - s.free,
            min: grant,
        }
    } else if s.free > 2 * target {
        Plan::GiveBack(s.free - target)
    } else {
        Plan::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_grants_whole_while_it_covers_then_asks_for_more() {
        let s = Share::default();
        assert_eq!(s.take(1800, 60), Err(Lack::Short));
        s.add(3000);
        assert_eq!(s.take(1800, 60), Ok(1800));
        assert_eq!(
            s.take(1800, 60),
            Err(Lack::Short),
            "no short grant while undrained"
        );
        s.set_drained(true);
        assert_eq!(s.take(1800, 60), Ok(1200), "drained: what is left");
        assert_eq!(s.take(1800, 60), Err(Lack::Exhausted));
        assert_eq!(s.taken(), 3000);
    }

    #[test]
    fn money_is_taken_exactly_and_reclaimed() {
        let s = Share::default();
        s.add(1_000);
        assert_eq!(s.take_exact(600), Ok(()));
        assert_eq!(s.take_exact(600), Err(Lack::Short));
        s.set_drained(true);
        assert_eq!(s.take_exact(600), Err(Lack::Exhausted));
        assert_eq!(s.reclaim(10_000), 400);
        assert_eq!(s.reclaim(10_000), 0);
        assert_eq!(s.free(), 0);
    }

    #[test]
    fn concurrent_grants_never_take_more_than_the_share() {
        let s = std::sync::Arc::new(Share::default());
        s.add(60 * 1000);
        s.set_drained(true);
        let got: u64 = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let s = &s;
                    sc.spawn(move || {
                        let mut n = 0;
                        while let Ok(g) = s.take(120, 60) {
                            n += g;
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(got, 60 * 1000);
        assert_eq!(s.free(), 0);
    }

    fn sizing(free: u64, burn: u64, available: u64) -> Sizing {
        Sizing {
            free,
            burn_per_second: burn,
            grant: 1800,
            available,
            nodes: 3,
        }
    }

    #[test]
    fn shares_follow_the_burn_rate_and_vanish_when_the_pool_runs_low() {
        // Idle: nothing held; what an idle node held goes back.
        assert_eq!(plan(sizing(0, 0, 10_000_000)), Plan::Keep);
        assert_eq!(plan(sizing(1800, 0, 10_000_000)), Plan::GiveBack(1800));
        // A trickle: four grants.
        assert_eq!(
            plan(sizing(0, 1, 10_000_000)),
            Plan::Draw {
                want: 7200,
                min: 1800
            }
        );
        assert_eq!(plan(sizing(3600, 1, 10_000_000)), Plan::Keep);
        assert_eq!(
            plan(sizing(1800, 1, 10_000_000)),
            Plan::Draw {
                want: 5400,
                min: 1800
            }
        );
        // Busy: two minutes of burn, topped up once a quarter is left.
        assert_eq!(
            plan(sizing(3600, 3000, 10_000_000)),
            Plan::Draw {
                want: 356_400,
                min: 1800
            }
        );
        assert_eq!(plan(sizing(90_001, 3000, 10_000_000)), Plan::Keep);
        // Quieter again: the excess goes back.
        assert_eq!(
            plan(sizing(300_000, 100, 10_000_000)),
            Plan::GiveBack(288_000)
        );
        // Never more than a fair part: half of what is left, split between the three nodes.
        assert_eq!(
            plan(sizing(0, 3000, 600_000)),
            Plan::Draw {
                want: 100_000,
                min: 1800
            }
        );
        // Low: under two grants per node left beyond the shares: give everything back.
        assert_eq!(plan(sizing(5000, 3000, 10_000)), Plan::GiveBack(5000));
        assert_eq!(plan(sizing(0, 3000, 10_000)), Plan::Keep);
    }
}
