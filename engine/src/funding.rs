//! Rules 9 and 10 of DESIGN §4: how an admission that needs paying for is paid — the
//! calling plan's pool, else Communications Credits (within the tenant's balance and the
//! user's monthly spend limit), else the reason neither could. The reservation is taken here,
//! under the Call-ID's slot, so that a retransmission racing the first INVITE reserves nothing.

use std::sync::Arc;

use dashmap::mapref::entry::Entry;

use super::{Engine, Live, Mode};
use crate::config::EngineConfig;
use crate::credits::{CreditAccount, Money, SpendLack};
use crate::directory::User;
use crate::limits::{day_of, Figure, Gate, LimitHit, Passed, TenantUsage};
use crate::numbering::Destination;
use crate::policy::refuses;
use crate::policy::{Basis, Decision, Outcome, Reason, Rule, Verdict};
use crate::pools::MonthKey;
use crate::reservations::{replay, reserved, Funding, Grant};
use crate::shares::{Lack, ShareOf, Short};

impl Engine {
    /// Rules 9 and 10: the pool, else Communications Credits, else the reason.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fund(
        &self,
        live: &Live,
        config: &EngineConfig,
        user: &User,
        gate: Option<Gate<'_>>,
        policy_shadow: Option<Reason>,
        dialed: &str,
        d: Destination,
        verdict: Verdict,
        now: u64,
        mode: Mode<'_>,
    ) -> Decision {
        let Verdict::Fund {
            pool,
            credits,
            otherwise,
            route,
        } = verdict
        else {
            return Decision::reject(Reason::BadRequest, Rule::Request, Some(d));
        };
        let g = &config.grants;
        let inc = g.billing_increment_seconds;
        // A Call-ID already known: same answer, nothing new reserved. Otherwise its slot is
        // held (the shard locked) until the funding is decided: one hash and one lock for the
        // check and the insert, and no other thread can take the Call-ID in between.
        let slot = match mode {
            Mode::Reserve(c) => match self.reservations.map.entry(c.to_string()) {
                Entry::Occupied(e) => return replay(e.get(), Some(d)),
                Entry::Vacant(v) => Some(v),
            },
            Mode::DryRun => None,
        };
        let reserving = slot.is_some();
        let tenant = live.snap.tenant(user.tenant);
        let tenant_id = tenant.map(|t| &t.id);
        // The limits, before anything is reserved: a call they refuse takes nothing.
        let Passed {
            hold,
            taken,
            shadow: gate_shadow,
            warning,
        } = match &gate {
            Some(g) => match g.pass(&d, now, reserving) {
                Ok(p) => p,
                Err(hit) => return Decision::limited(hit, Rule::Limits, Some(d)),
            },
            None => Passed::default(),
        };
        // Whatever refuses the call from here on gives back what the gate counted.
        let undo = |decision: Decision| {
            if let Some(g) = &gate {
                g.undo(&taken, now);
            }
            decision
        };
        let shadow = config.enforcement.shadow;
        // A refusal of rule 10's limits (price, daily cap) that shadow mode let through.
        let mut shadowed: Option<Box<LimitHit>> = None;
        // The decision, with its grant when reserving (built in place: no separate grant to
        // move around, and none at all for a dry run). Called once: it takes the call's hold.
        let admit = move |basis, rule, seconds, funding, money, shadowed| {
            let mut dec = Decision {
                outcome: Outcome::Admit(basis),
                rule,
                destination: Some(d),
                route: Some(route.clone()),
                max_duration: Some(seconds),
                lacking: None,
                dial_plan: None,
                // A policy rule's shadowed refusal comes first (rule order): `note` keeps it.
                shadow: policy_shadow,
                limit: None,
                warning: None,
                grant: reserving.then(|| Grant {
                    seq: 0, // numbered as it is recorded (`reserved`)
                    basis,
                    tenant: tenant_id.map_or_else(|| Arc::from(""), Arc::clone),
                    user: Arc::clone(&user.upn),
                    dialed: dialed.into(),
                    destination: Some(d),
                    route: Some(route.clone()),
                    funding,
                    reserved_seconds: seconds,
                    reserved_money: money,
                    started_at: now,
                    expires_at: now + seconds + g.settle_grace_seconds,
                    hold,
                }),
            };
            dec.note(gate_shadow, warning);
            dec.note(shadowed, None);
            dec
        };
        // Rule 9: the pool.
        if let Some((pid, basis)) = pool {
            if let Some(counter) = live.pools.get(pid) {
                let granted = match slot {
                    Some(_) => counter.reserve(g.grant_seconds, inc),
                    None => counter
                        .would_grant(g.grant_seconds, inc)
                        .ok_or(Lack::Exhausted),
                };
                if granted == Err(Lack::Short) {
                    // Several nodes: this node's share is short, the pool may not be.
                    let short = Short {
                        of: ShareOf::Pool(Arc::clone(counter)),
                        needed: g.grant_seconds,
                    };
                    return undo(Decision::short(short, Rule::Pool, d));
                }
                if let Ok(s) = granted {
                    let funding = Funding::Pool(Arc::clone(counter));
                    let dec = admit(basis, Rule::Pool, s, funding, Money::ZERO, None);
                    return match slot {
                        Some(v) => reserved(v, dec, self.seq.next()),
                        None => dec,
                    };
                }
            }
        }
        // Rule 10: Communications Credits.
        if !credits {
            let rule = if pool.is_some() {
                Rule::Pool
            } else {
                Rule::Credits
            };
            return undo(Decision::reject(otherwise, rule, Some(d)));
        }
        let reject = |r| undo(Decision::reject(r, Rule::Credits, Some(d)));
        let Some(price) = live.snap.rates.price(d.region, d.number_type) else {
            return reject(Reason::DestinationNotSupported);
        };
        let limits = tenant.map(|t| &t.limits);
        // The tenant's dearest rate (Telnyx `max_destination_rate`).
        if let Some(max) = limits.and_then(|l| l.max_price_per_minute) {
            if price > max {
                let hit = LimitHit {
                    reason: Reason::DestinationRateTooHigh,
                    name: "max_price_per_minute",
                    limit: Figure::Money(max),
                    current: Figure::Money(price),
                    retry_after: None,
                    destination: None,
                };
                if !refuses(hit.reason, shadow, &mut None) {
                    shadowed.get_or_insert(Box::new(hit));
                } else {
                    return undo(Decision::limited(Box::new(hit), Rule::Credits, Some(d)));
                }
            }
        }
        let Some(account) = live.accounts.get(user.tenant as usize) else {
            return reject(Reason::CreditsExhausted);
        };
        let secs = account.affordable_seconds(price, g.grant_seconds, inc);
        if secs < inc.min(g.grant_seconds) {
            return reject(Reason::CreditsExhausted);
        }
        let month = live.pools.month;
        let limit = tenant.and_then(|t| t.user_spend_limit);
        let mut secs = secs;
        if let Some(left) =
            limit.and_then(|l| self.spend.left(&account.tenant, &user.upn, month, l))
        {
            secs = left.seconds_at(price, secs, inc);
            if secs < inc.min(g.grant_seconds) {
                return reject(Reason::SpendLimitReached);
            }
        }
        // The tenant's daily cap: the grant shrinks to what is left of today, and a call it
        // cannot pay a billing increment of is refused (or, shadowed, admitted in full).
        let day = day_of(now);
        let usage = live.tenants.get(user.tenant as usize);
        let mut cap = limits.and_then(|l| l.daily_spend);
        if let (Some(c), Some(u)) = (cap, usage) {
            let spent = u.spent_on(day);
            let left = Money((c.0 - spent.0).max(0));
            let fits = left.seconds_at(price, secs, inc);
            if fits < inc.min(g.grant_seconds) {
                let hit = daily_hit(c, Money(spent.0 + Money::for_seconds(price, inc).0));
                if refuses(hit.reason, shadow, &mut None) {
                    return undo(Decision::limited(Box::new(hit), Rule::Credits, Some(d)));
                }
                shadowed.get_or_insert(Box::new(hit));
                cap = None;
            } else {
                secs = fits;
            }
        }
        let cost = Money::for_seconds(price, secs);
        let spend = limit.map(|_| (Arc::clone(&user.upn), month));
        let funding = Funding::Credits {
            account: Arc::clone(account),
            per_minute: price,
            spend: spend.clone(),
        };
        let dec = admit(Basis::Credits, Rule::Credits, secs, funding, cost, shadowed);
        let Some(v) = slot else { return dec };
        let daily = usage.map(|u| Daily { usage: u, day, cap });
        match self.take_credits(account, &spend, limit, daily, cost) {
            Ok(()) => reserved(v, dec, self.seq.next()),
            Err(Ok(Reason::DailySpendLimitReached)) => {
                let c = cap.unwrap_or(Money::ZERO);
                let now_spent = usage.map_or(Money::ZERO, |u| u.spent_on(day));
                let hit = daily_hit(c, Money(now_spent.0 + cost.0));
                undo(Decision::limited(Box::new(hit), Rule::Credits, Some(d)))
            }
            Err(Ok(r)) => reject(r),
            Err(Err(of)) => {
                let needed = u64::try_from(cost.0).unwrap_or(0);
                undo(Decision::short(Short { of, needed }, Rule::Credits, d))
            }
        }
    }

    /// Takes `cost` from the balance, from the tenant's day under `daily` (within its cap,
    /// if any) and, under a spend limit, from the user's monthly allowance: all or none (CAS
    /// on each; never below zero). Fails with the reason, or (several nodes) with the account
    /// whose share was short.
    pub(super) fn take_credits(
        &self,
        account: &Arc<CreditAccount>,
        spend: &Option<(Arc<str>, MonthKey)>,
        limit: Option<Money>,
        daily: Option<Daily<'_>>,
        cost: Money,
    ) -> Result<(), Result<Reason, ShareOf>> {
        if let Some(x) = &daily {
            if !x.usage.spend(x.day, cost, x.cap) {
                return Err(Ok(Reason::DailySpendLimitReached));
            }
        }
        let undo_daily = || {
            if let Some(x) = &daily {
                x.usage.unspend(x.day, cost);
            }
        };
        let counted = match (limit, spend) {
            (Some(limit), Some((u, m))) => {
                match self.spend.reserve(&account.tenant, u, *m, cost, limit) {
                    Ok(()) => {}
                    Err(SpendLack::Limit) => {
                        undo_daily();
                        return Err(Ok(Reason::SpendLimitReached));
                    }
                    Err(SpendLack::Short(a)) => {
                        undo_daily();
                        return Err(Err(ShareOf::Spend(a)));
                    }
                }
                Some((u, *m))
            }
            _ => None,
        };
        if let Err(lack) = account.reserve(cost) {
            if let Some((u, m)) = counted {
                self.spend.unreserve(u, m, cost);
            }
            undo_daily();
            return Err(match lack {
                Lack::Exhausted => Ok(Reason::CreditsExhausted),
                Lack::Short => Err(ShareOf::Credits(Arc::clone(account))),
            });
        }
        Ok(())
    }
}

/// A credits reservation's place in its tenant's spending of the day ([`crate::limits`]).
pub(super) struct Daily<'a> {
    pub usage: &'a TenantUsage,
    /// The UTC day number the call started on.
    pub day: u64,
    /// `daily_spend`, unless shadowed.
    pub cap: Option<Money>,
}

/// The figures of a `daily_spend_limit_reached`: the cap, and today's spending with the call.
fn daily_hit(cap: Money, with_call: Money) -> LimitHit {
    LimitHit {
        reason: Reason::DailySpendLimitReached,
        name: "daily_spend",
        limit: Figure::Money(cap),
        current: Figure::Money(with_call),
        retry_after: None,
        destination: None,
    }
}
