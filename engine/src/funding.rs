//! Rules 9 and 10 of DESIGN §4: how an admission that needs paying for is paid — the
//! calling plan's pool, else Communications Credits (within the tenant's balance and the
//! user's monthly spend limit), else the reason neither could. The reservation is taken here,
//! under the Call-ID's slot, so that a retransmission racing the first INVITE reserves nothing.

use std::sync::Arc;

use dashmap::mapref::entry::Entry;

use super::{Engine, Live, Mode};
use crate::credits::{CreditAccount, Money, SpendLack};
use crate::directory::User;
use crate::numbering::Destination;
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
        user: &User,
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
        let config = self.config.load();
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
        let tenant_id = live.snap.tenant(user.tenant).map(|t| &t.id);
        // The decision, with its grant when reserving (built in place: no separate grant to
        // move around, and none at all for a dry run).
        let admit = |basis, rule, seconds, funding, money| Decision {
            outcome: Outcome::Admit(basis),
            rule,
            destination: Some(d),
            route: Some(route.clone()),
            max_duration: Some(seconds),
            lacking: None,
            dial_plan: None,
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
            }),
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
                    return Decision::short(short, Rule::Pool, d);
                }
                if let Ok(s) = granted {
                    let dec = admit(
                        basis,
                        Rule::Pool,
                        s,
                        Funding::Pool(Arc::clone(counter)),
                        Money::ZERO,
                    );
                    return match slot {
                        Some(v) => reserved(v, dec, self.seq.next()),
                        None => dec,
                    };
                }
            }
        }
        // Rule 10: Communications Credits.
        if !credits {
            return Decision::reject(
                otherwise,
                if pool.is_some() {
                    Rule::Pool
                } else {
                    Rule::Credits
                },
                Some(d),
            );
        }
        let reject = |r| Decision::reject(r, Rule::Credits, Some(d));
        let Some(price) = live.snap.rates.price(d.region, d.number_type) else {
            return reject(Reason::DestinationNotSupported);
        };
        let Some(account) = live.accounts.get(user.tenant as usize) else {
            return reject(Reason::CreditsExhausted);
        };
        let secs = account.affordable_seconds(price, g.grant_seconds, inc);
        if secs < inc.min(g.grant_seconds) {
            return reject(Reason::CreditsExhausted);
        }
        let month = live.pools.month;
        let limit = live
            .snap
            .tenant(user.tenant)
            .and_then(|t| t.user_spend_limit);
        let mut secs = secs;
        if let Some(left) =
            limit.and_then(|l| self.spend.left(&account.tenant, &user.upn, month, l))
        {
            secs = left.seconds_at(price, secs, inc);
            if secs < inc.min(g.grant_seconds) {
                return reject(Reason::SpendLimitReached);
            }
        }
        let cost = Money::for_seconds(price, secs);
        let spend = limit.map(|_| (Arc::clone(&user.upn), month));
        let funding = Funding::Credits {
            account: Arc::clone(account),
            per_minute: price,
            spend: spend.clone(),
        };
        let dec = admit(Basis::Credits, Rule::Credits, secs, funding, cost);
        let Some(v) = slot else { return dec };
        match self.take_credits(account, &spend, limit, cost) {
            Ok(()) => reserved(v, dec, self.seq.next()),
            Err(Ok(r)) => reject(r),
            Err(Err(of)) => {
                let needed = u64::try_from(cost.0).unwrap_or(0);
                Decision::short(Short { of, needed }, Rule::Credits, d)
            }
        }
    }

    /// Takes `cost` from the balance and, under a spend limit, from the user's monthly
    /// allowance: both or neither (CAS on the balance; never below zero). Fails with the
    /// reason, or (several nodes) with the account whose share was short.
    pub(super) fn take_credits(
        &self,
        account: &Arc<CreditAccount>,
        spend: &Option<(Arc<str>, MonthKey)>,
        limit: Option<Money>,
        cost: Money,
    ) -> Result<(), Result<Reason, ShareOf>> {
        let counted = match (limit, spend) {
            (Some(limit), Some((u, m))) => {
                match self.spend.reserve(&account.tenant, u, *m, cost, limit) {
                    Ok(()) => {}
                    Err(SpendLack::Limit) => return Err(Ok(Reason::SpendLimitReached)),
                    Err(SpendLack::Short(a)) => return Err(Err(ShareOf::Spend(a))),
                }
                Some((u, *m))
            }
            _ => None,
        };
        if let Err(lack) = account.reserve(cost) {
            if let Some((u, m)) = counted {
                self.spend.unreserve(u, m, cost);
            }
            return Err(match lack {
                Lack::Exhausted => Ok(Reason::CreditsExhausted),
                Lack::Short => Err(ShareOf::Credits(Arc::clone(account))),
            });
        }
        Ok(())
    }
}
