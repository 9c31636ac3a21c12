//! The gate an admission passes: its live, per-minute and velocity limits, counted without a
//! lock (add, then check, then take back if over), and shadow mode.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::usage::{Hold, UserUsage};
use super::Limits;
use crate::credits::Money;
use crate::numbering::Destination;
use crate::policy::Reason;

/// Which limit fired, and its figures (`tollgate decide`, the decision log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitHit {
    /// The reason it gives.
    pub reason: Reason,
    /// The setting, as `tenants.toml` names it (`user_calls_per_minute`, `velocity`, ...).
    pub name: &'static str,
    /// The limit.
    pub limit: Figure,
    /// What the call would have made of it (or the price, for `max_price_per_minute`).
    pub current: Figure,
    /// Seconds until one more call fits (rates and velocity).
    pub retry_after: Option<u64>,
    /// The velocity rule's destination (`+882`).
    pub destination: Option<Arc<str>>,
}

/// A figure of a [`LimitHit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// Calls.
    Count(u64),
    /// Money.
    Money(Money),
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Figure::Count(n) => write!(f, "{n}"),
            Figure::Money(m) => write!(f, "{m}"),
        }
    }
}

impl LimitHit {
    /// A high-risk refusal: the catalog entry that matched.
    pub fn high_risk(prefix: &str) -> LimitHit {
        LimitHit {
            reason: Reason::HighRiskDestination,
            name: "high_risk_prefixes",
            limit: Figure::Count(0),
            current: Figure::Count(1),
            retry_after: None,
            destination: Some(prefix.into()),
        }
    }

    /// In words: `user_calls_per_minute 60 reached (61 in the last minute)`.
    pub fn describe(&self) -> String {
        if self.reason == Reason::HighRiskDestination {
            let prefix = self.destination.as_deref().unwrap_or("");
            return format!("high_risk_prefixes {prefix} (the tenant's high_risk is block)");
        }
        let what = match self.name {
            "concurrent_calls" | "user_concurrent_calls" => "live calls",
            "calls_per_minute" | "user_calls_per_minute" => "calls in the last minute",
            "velocity" => "calls to it in the window",
            "daily_spend" => "spent today with this call",
            "max_price_per_minute" => "the destination's price",
            _ => "",
        };
        let name = match &self.destination {
            Some(d) => format!("velocity {d}"),
            None => self.name.to_string(),
        };
        format!("{name} {} reached ({} {what})", self.limit, self.current)
    }
}

/// The set of reasons `[enforcement] shadow` makes report-only (DESIGN §2 "Shadow mode").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonSet(u64);

impl ReasonSet {
    /// The reasons that may be shadowed: the abuse controls and the policy rules, which an
    /// operator turns on for users already calling. A call refused for what it lacks (a
    /// licence, a pool, credits, a number) cannot be admitted "as if the rule had not fired";
    /// emergency is never refused and `untrusted_peer` never shadowed (DESIGN §2).
    pub const SHADOWABLE: [Reason; 9] = [
        Reason::CallLimitReached,
        Reason::RateLimitReached,
        Reason::HighRiskDestination,
        Reason::DestinationRateTooHigh,
        Reason::DailySpendLimitReached,
        Reason::PstnDisabledByPolicy,
        Reason::InternationalDisabledByPolicy,
        Reason::ConferenceDialoutDisabledByPolicy,
        Reason::DestinationNotSupported,
    ];

    /// No reason.
    pub const EMPTY: ReasonSet = ReasonSet(0);

    fn bit(r: Reason) -> u64 {
        1 << (r as u64)
    }

    /// Adds `r`.
    pub fn insert(&mut self, r: Reason) {
        self.0 |= Self::bit(r);
    }

    /// Whether `r` is in.
    pub fn contains(self, r: Reason) -> bool {
        self.0 & Self::bit(r) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What a passed gate took, to be taken back if the admission fails after it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Taken {
    user_live: bool,
    tenant_live: bool,
    user_rate: bool,
    tenant_rate: bool,
    velocity: u32,
}

/// A call that passed the gate: its hold, what to undo, and what it would have been refused
/// for under shadow mode, or warned of.
#[derive(Debug, Default)]
pub(crate) struct Passed {
    pub hold: Option<Hold>,
    pub taken: Taken,
    /// Boxed, like the error of [`Gate::pass`]: a limit that fires is rare, and a
    /// [`LimitHit`] inline would make every decision move ~200 bytes more.
    pub shadow: Option<Box<LimitHit>>,
    pub warning: Option<Box<LimitHit>>,
}

/// The counts and limits one admission is judged against.
pub(crate) struct Gate<'a> {
    /// The caller's counts, and through them their tenant's.
    pub user: &'a Arc<UserUsage>,
    pub limits: &'a Limits,
    /// The user's own `concurrent_calls` (users.csv), else the tenant's `user_concurrent_calls`.
    pub user_concurrent: Option<u32>,
    pub shadow: ReasonSet,
}

impl Gate<'_> {
    /// Judges one admission at `now` to `d`: counts it if `reserve` (a dry run only looks),
    /// or refuses it with the limit that fired, having counted nothing.
    pub(crate) fn pass(
        &self,
        d: &Destination,
        now: u64,
        reserve: bool,
    ) -> Result<Passed, Box<LimitHit>> {
        let mut p = Passed::default();
        let r = self.check_live(reserve, &mut p);
        let r = r.and_then(|()| self.check_rates(now, reserve, &mut p));
        let r = r.and_then(|()| self.check_velocity(d, now, reserve, &mut p));
        match r {
            Ok(()) => {
                if reserve {
                    p.hold = Some(Hold {
                        user: Arc::clone(self.user),
                        tenant_live: p.taken.tenant_live,
                        tenant_rate: p.taken.tenant_rate,
                        velocity: p.taken.velocity,
                    });
                }
                Ok(p)
            }
            Err(hit) => {
                self.undo(&p.taken, now);
                Err(hit)
            }
        }
    }

    /// A limit fired: refused, or under shadow mode noted (the first one) and passed.
    fn fired(&self, hit: LimitHit, p: &mut Passed) -> Result<(), Box<LimitHit>> {
        if self.shadow.contains(hit.reason) {
            if p.shadow.is_none() {
                p.shadow = Some(Box::new(hit));
            }
            Ok(())
        } else {
            Err(Box::new(hit))
        }
    }

    /// The user's live calls are always counted; the tenant's only when it has a tenant-wide
    /// limit (`concurrent_calls`): a count every call of a big tenant would touch is a cache
    /// line all workers contend for, paid only by who asks for it. The call's hold records
    /// what was counted, so its end takes off exactly that, whatever a reload does since.
    fn check_live(&self, reserve: bool, p: &mut Passed) -> Result<(), Box<LimitHit>> {
        let tenant_limit = self.limits.concurrent_calls;
        let (u, t) = (&self.user.live, &self.user.tenant.live);
        let nu = if reserve {
            p.taken.user_live = true;
            u.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            u.load(Ordering::Acquire) + 1
        };
        let nt = match (tenant_limit, reserve) {
            (None, _) => 0,
            (Some(_), true) => {
                p.taken.tenant_live = true;
                t.fetch_add(1, Ordering::AcqRel) + 1
            }
            (Some(_), false) => t.load(Ordering::Acquire) + 1,
        };
        let hit = |name, limit: u32, n: u32| LimitHit {
            reason: Reason::CallLimitReached,
            name,
            limit: Figure::Count(limit.into()),
            current: Figure::Count(n.into()),
            retry_after: None,
            destination: None,
        };
        if let Some(max) = self.user_concurrent.filter(|m| nu > *m) {
            self.fired(hit("user_concurrent_calls", max, nu), p)?;
        }
        if let Some(max) = tenant_limit.filter(|m| nt > *m) {
            self.fired(hit("concurrent_calls", max, nt), p)?;
        }
        Ok(())
    }

    /// The user's admissions are always counted in their rolling minute (a limit set by a
    /// reload judges the minute before it); the tenant's only when it has `calls_per_minute`
    /// (see [`Gate::check_live`] for why).
    fn check_rates(&self, now: u64, reserve: bool, p: &mut Passed) -> Result<(), Box<LimitHit>> {
        let (user, tenant) = (&self.user.rate, &self.user.tenant.rate);
        let tenant_limit = self.limits.calls_per_minute;
        let extra = if reserve {
            p.taken.user_rate = true;
            user.add_n(now, 1);
            if tenant_limit.is_some() {
                p.taken.tenant_rate = true;
                tenant.add_n(now, 1);
            }
            0
        } else {
            1
        };
        let windows = [
            (
                self.limits.user_calls_per_minute,
                "user_calls_per_minute",
                user,
            ),
            (tenant_limit, "calls_per_minute", tenant),
        ];
        for (limit, name, w) in windows {
            let Some(limit) = limit else { continue };
            let n = w.count(now) + extra;
            if n > u64::from(limit) {
                let hit = LimitHit {
                    reason: Reason::RateLimitReached,
                    name,
                    limit: Figure::Count(limit.into()),
                    current: Figure::Count(n),
                    retry_after: Some(w.retry_after(now, u64::from(limit) + 1 - extra)),
                    destination: None,
                };
                self.fired(hit, p)?;
            }
        }
        Ok(())
    }

    fn check_velocity(
        &self,
        d: &Destination,
        now: u64,
        reserve: bool,
        p: &mut Passed,
    ) -> Result<(), Box<LimitHit>> {
        if self.limits.velocity.is_empty() {
            return Ok(());
        }
        let v = self.user.tenant.velocity.load();
        for (i, (rule, w)) in v.rules.iter().zip(v.windows.iter()).enumerate() {
            if !rule.target.matches(d) {
                continue;
            }
            let n = if reserve {
                p.taken.velocity |= 1 << i;
                w.add(now)
            } else {
                w.count(now) + 1
            };
            let hit = |reason, limit: u32, retry| LimitHit {
                reason,
                name: "velocity",
                limit: Figure::Count(limit.into()),
                current: Figure::Count(n),
                retry_after: retry,
                destination: Some(Arc::clone(&rule.name)),
            };
            if let Some(block) = rule.block.filter(|b| n > u64::from(*b)) {
                let retry = w.retry_after(now, u64::from(block) + u64::from(reserve));
                self.fired(hit(Reason::RateLimitReached, block, Some(retry)), p)?;
            } else if let Some(warn) = rule.warn.filter(|x| n > u64::from(*x)) {
                if p.warning.is_none() {
                    p.warning = Some(Box::new(hit(Reason::RateLimitReached, warn, None)));
                }
            }
        }
        Ok(())
    }

    /// Takes back what [`Gate::pass`] counted (the admission failed after it).
    pub(crate) fn undo(&self, taken: &Taken, now: u64) {
        Hold {
            user: Arc::clone(self.user),
            tenant_live: taken.tenant_live,
            tenant_rate: taken.tenant_rate,
            velocity: taken.velocity,
        }
        .forget(taken.user_live, taken.user_rate, now);
    }
}
