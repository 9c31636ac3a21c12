//! The live counts limits are judged against: per user, per tenant, and what each admitted call
//! holds of them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::window::{Minute, Window, VELOCITY_SLOTS};
use super::Velocity;
use crate::credits::Money;
use crate::numbering::Destination;

/// One user's live counts, shared (`Arc`) across reloads by UPN and held by each of their
/// admitted calls, so a call ending after a reload takes itself off the right count. It holds
/// its tenant's counts: a call holds one `Arc`, not two (each is an atomic on a line every
/// worker deciding for the tenant touches).
#[derive(Debug)]
pub struct UserUsage {
    /// The counts of the user's tenant.
    pub tenant: Arc<TenantUsage>,
    pub(super) live: AtomicU32,
    /// Admissions in the rolling minute.
    pub(super) rate: Minute,
}

/// One tenant's live counts, shared like [`UserUsage`].
#[derive(Debug)]
pub struct TenantUsage {
    /// The tenant id.
    pub tenant: Arc<str>,
    pub(super) live: AtomicU32,
    pub(super) rate: Minute,
    /// Credits spent today: the UTC day number in the top 20 bits, micro-units below.
    day: AtomicU64,
    /// The velocity rules of the tenant's limits as last applied, with a window each: read
    /// without a lock, swapped whole by a reload.
    pub(super) velocity: arc_swap::ArcSwap<Velocities>,
}

/// Velocity rules and their windows, index for index.
#[derive(Debug, Default)]
pub(super) struct Velocities {
    pub(super) rules: Vec<Velocity>,
    pub(super) windows: Vec<Window<VELOCITY_SLOTS>>,
}

/// The bits of [`TenantUsage::day`] that hold money: 2⁴⁴ micro-units, 17.5 million units of
/// the currency a day.
const DAY_MONEY_BITS: u32 = 44;
const DAY_MONEY_MASK: u64 = (1 << DAY_MONEY_BITS) - 1;

/// The UTC day number of `now` (days since 1970-01-01).
pub fn day_of(now: u64) -> u64 {
    now / 86_400
}

impl UserUsage {
    /// Fresh counts for a user of `tenant`.
    pub(crate) fn new(tenant: Arc<TenantUsage>) -> UserUsage {
        UserUsage {
            tenant,
            live: AtomicU32::new(0),
            rate: Minute::minute(),
        }
    }

    /// Live admitted calls.
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Acquire)
    }
}

impl TenantUsage {
    /// Fresh counts for `tenant`, with windows for `velocity`.
    pub(crate) fn new(tenant: Arc<str>, velocity: &[Velocity]) -> TenantUsage {
        let t = TenantUsage {
            tenant,
            live: AtomicU32::new(0),
            rate: Minute::minute(),
            day: AtomicU64::new(0),
            velocity: arc_swap::ArcSwap::from_pointee(Velocities::default()),
        };
        t.set_velocity(velocity);
        t
    }

    /// A reload: rules that are the same keep their windows; changed or new rules start empty.
    /// (Reloads are serialized by the engine.)
    pub(crate) fn set_velocity(&self, rules: &[Velocity]) {
        let old = self.velocity.load();
        if old.rules == rules {
            return;
        }
        let windows = rules
            .iter()
            .map(|r| {
                let w = Window::new(u64::from(r.window_seconds) / VELOCITY_SLOTS as u64);
                if let Some(o) = old.rules.iter().position(|o| o == r) {
                    if let Some(prev) = old.windows.get(o) {
                        for (n, p) in w.slots.iter().zip(prev.slots.iter()) {
                            n.store(p.load(Ordering::Acquire), Ordering::Release);
                        }
                    }
                }
                w
            })
            .collect();
        self.velocity.store(Arc::new(Velocities {
            rules: rules.to_vec(),
            windows,
        }));
    }

    /// Live admitted calls.
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Acquire)
    }

    /// Credits spent on UTC day `day` (reserved by calls in progress included).
    pub fn spent_on(&self, day: u64) -> Money {
        let v = self.day.load(Ordering::Acquire);
        if v >> DAY_MONEY_BITS == day {
            Money((v & DAY_MONEY_MASK) as i64)
        } else {
            Money::ZERO
        }
    }

    /// Counts `cost` against day `day`, within `cap` if given: false (nothing counted) when it
    /// would take the day past the cap.
    pub(crate) fn spend(&self, day: u64, cost: Money, cap: Option<Money>) -> bool {
        let cost = u64::try_from(cost.0).unwrap_or(0);
        self.day
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let spent = if v >> DAY_MONEY_BITS == day {
                    v & DAY_MONEY_MASK
                } else {
                    0
                };
                let new = spent.saturating_add(cost).min(DAY_MONEY_MASK);
                if cap.is_some_and(|c| new > u64::try_from(c.0).unwrap_or(0)) {
                    return None;
                }
                Some((day << DAY_MONEY_BITS) | new)
            })
            .is_ok()
    }

    /// Gives back `amount` counted on day `day` (a call that used less than it reserved); a
    /// day that is over is left alone.
    pub(crate) fn unspend(&self, day: u64, amount: Money) {
        let amount = u64::try_from(amount.0).unwrap_or(0);
        let _ = self
            .day
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v >> DAY_MONEY_BITS == day)
                    .then(|| (day << DAY_MONEY_BITS) | (v & DAY_MONEY_MASK).saturating_sub(amount))
            });
    }
}

/// A live call's place in its user's and tenant's counts, held by its grant: the call's end
/// (settle, release, expiry, abort) takes it off, once.
#[derive(Clone, Debug)]
pub struct Hold {
    /// The caller's counts (and through them, the tenant's).
    pub user: Arc<UserUsage>,
    /// Whether the tenant's live calls count this call (the tenant had `concurrent_calls`).
    pub tenant_live: bool,
    /// Whether the tenant's rolling minute counts it (the tenant had `calls_per_minute`).
    pub tenant_rate: bool,
    /// The tenant's velocity rules that count it, one bit each (by index).
    pub velocity: u32,
}

impl Hold {
    /// The tenant's counts.
    pub fn tenant(&self) -> &TenantUsage {
        &self.user.tenant
    }

    /// The call is over: one live call fewer for the user and, if it counted there, the
    /// tenant.
    pub(crate) fn release(&self) {
        self.forget(true, false, 0);
    }

    /// An admission that was never made after all (the ledger could not record it): out of
    /// the per-minute windows again (its live count goes with the call's end).
    pub(crate) fn unadmit(&self, at: u64) {
        self.user.rate.remove(at);
        if self.tenant_rate {
            self.user.tenant.rate.remove(at);
        }
        if self.velocity != 0 {
            let v = self.user.tenant.velocity.load();
            for (i, w) in v.windows.iter().enumerate().take(32) {
                if self.velocity & (1 << i) != 0 {
                    w.remove(at);
                }
            }
        }
    }

    /// Takes the call off the live counts (`live`) and the rolling minutes of `at` (`rate`),
    /// where it was counted.
    pub(crate) fn forget(&self, live: bool, rate: bool, at: u64) {
        let dec = |a: &AtomicU32| {
            let _ = a.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        };
        if live {
            dec(&self.user.live);
            if self.tenant_live {
                dec(&self.user.tenant.live);
            }
        }
        if rate {
            self.unadmit(at);
        }
    }

    /// Counts the call in its tenant's live calls (`live`) and rolling minute of `at`
    /// (`rate`), where it was not counted yet (a tenant-wide limit set by a reload).
    pub(crate) fn count_in_tenant(&mut self, live: bool, rate: bool, at: u64) {
        if live && !self.tenant_live {
            self.tenant_live = true;
            self.user.tenant.live.fetch_add(1, Ordering::AcqRel);
        }
        if rate && !self.tenant_rate {
            self.tenant_rate = true;
            self.user.tenant.rate.add_n(at, 1);
        }
    }

    /// A restored open call: counted live again.
    pub(crate) fn restore_live(&self) {
        self.user.live.fetch_add(1, Ordering::AcqRel);
        if self.tenant_live {
            self.user.tenant.live.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A restored call admitted at `at`: counted in the windows it still falls in.
    pub(crate) fn restore_admission(&self, at: u64, now: u64, dest: Option<&Destination>) {
        if now.saturating_sub(at) < 60 {
            self.user.rate.add_n(at, 1);
            if self.tenant_rate {
                self.user.tenant.rate.add_n(at, 1);
            }
        }
        let Some(d) = dest else { return };
        let v = self.user.tenant.velocity.load();
        for (rule, w) in v.rules.iter().zip(v.windows.iter()) {
            if now.saturating_sub(at) < u64::from(rule.window_seconds) && rule.target.matches(d) {
                w.add_n(at, 1);
            }
        }
    }
}
