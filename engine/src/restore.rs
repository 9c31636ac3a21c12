//! Start-up recovery (DESIGN §6): the daemon reads its ledger and hands every call that still
//! matters back to the engine, which rebuilds this month's pools, the credit balances, the
//! users' monthly spending and the open reservations from them.
//!
//! What "matters": every open reservation (whatever its month: it settles on the pool of the
//! month it started in), every ended call of the current month (its usage counts against this
//! month's pools), and every ended credits call (a balance is not monthly). The daemon then
//! calls [`Engine::expire`], so reservations that outlived grant + grace while the daemon was
//! down settle as fully used (`expired`).
//!
//! Restoring never checks capacity: what was admitted stays admitted, even if a reload since
//! shrank the pool.

use std::collections::HashMap;
use std::sync::Arc;

use crate::credits::{CreditAccount, Money};
use crate::engine::Engine;
use crate::limits::day_of;
use crate::numbering::Destination;
use crate::policy::{Basis, Route};
use crate::pools::{MonthKey, PoolCounter, PoolKey};
use crate::reservations::{CallRecord, CallState, Funding, Grant, Settlement};

/// What paid for a stored call, by name (the live counters are found again by key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredFunding {
    /// Nothing reserved ([`Funding::None`]).
    None,
    /// A pool's seconds ([`Funding::Pool`]).
    Pool {
        /// The pool, by name (stable across reloads).
        key: PoolKey,
        /// The month whose counter the call draws on.
        month: MonthKey,
    },
    /// Communications Credits of the call's tenant ([`Funding::Credits`]).
    Credits {
        /// The price the call was admitted at.
        per_minute: Money,
        /// The user and month whose spend limit the call counts against.
        spend: Option<(Arc<str>, MonthKey)>,
    },
}

impl StoredFunding {
    /// The name of a live funding.
    pub(crate) fn of(f: &Funding) -> StoredFunding {
        match f {
            Funding::None => StoredFunding::None,
            Funding::Pool(c) => StoredFunding::Pool {
                key: c.key.clone(),
                month: c.month,
            },
            Funding::Credits {
                per_minute, spend, ..
            } => StoredFunding::Credits {
                per_minute: *per_minute,
                spend: spend.clone(),
            },
        }
    }
}

/// One call as the ledger holds it.
#[derive(Clone, Debug)]
pub struct StoredCall {
    /// The call's [`Grant::seq`]: its row's key in the ledger.
    pub seq: u64,
    /// The SIP Call-ID the call is known by.
    pub call_id: String,
    /// [`Grant::basis`].
    pub basis: Basis,
    /// [`Grant::tenant`].
    pub tenant: Arc<str>,
    /// [`Grant::user`].
    pub user: Arc<str>,
    /// Shared with the in-flight record (see [`Grant::dialed`]): no copy per admission.
    pub dialed: Arc<str>,
    /// [`Grant::destination`].
    pub destination: Option<Destination>,
    /// [`Grant::route`].
    pub route: Option<Route>,
    /// [`Grant::funding`], by name.
    pub funding: StoredFunding,
    /// [`Grant::reserved_seconds`].
    pub reserved_seconds: u64,
    /// [`Grant::reserved_money`].
    pub reserved_money: Money,
    /// [`Grant::started_at`].
    pub started_at: u64,
    /// [`Grant::expires_at`]: a restored reservation past it expires at the next
    /// [`Engine::expire`].
    pub expires_at: u64,
    /// [`CallRecord::state`]: `reserved` rows come back as open reservations.
    pub state: CallState,
    /// [`CallRecord::billable_seconds`].
    pub billable_seconds: u64,
    /// [`CallRecord::charged_seconds`]: what an ended call counts against its pool.
    pub charged_seconds: u64,
    /// [`CallRecord::charged_money`]: what an ended credits call took from the balance.
    pub charged_money: Money,
    /// [`CallRecord::ended_at`].
    pub ended_at: Option<u64>,
    /// [`CallRecord::version`]: the ledger keeps the highest.
    pub version: u32,
}

impl StoredCall {
    /// The answer about this call as the row stands (`changed`: whether this request ended it).
    pub fn settlement(&self, changed: bool) -> Settlement {
        Settlement {
            call_id: self.call_id.clone(),
            state: self.state,
            tenant: Arc::clone(&self.tenant),
            basis: self.basis,
            reserved_seconds: self.reserved_seconds,
            billable_seconds: self.billable_seconds,
            charged_seconds: self.charged_seconds,
            charged_money: self.charged_money,
            changed,
        }
    }

    /// A live call as the ledger stores it.
    pub fn from_record(call_id: &str, r: &CallRecord) -> StoredCall {
        let g = &r.grant;
        StoredCall {
            seq: g.seq,
            call_id: call_id.to_string(),
            basis: g.basis,
            tenant: Arc::clone(&g.tenant),
            user: Arc::clone(&g.user),
            dialed: Arc::clone(&g.dialed),
            destination: g.destination,
            route: g.route.clone(),
            funding: StoredFunding::of(&g.funding),
            reserved_seconds: g.reserved_seconds,
            reserved_money: g.reserved_money,
            started_at: g.started_at,
            expires_at: g.expires_at,
            state: r.state,
            billable_seconds: r.billable_seconds,
            charged_seconds: r.charged_seconds,
            charged_money: r.charged_money,
            ended_at: r.ended_at,
            version: r.version,
        }
    }

    /// A call just admitted with `grant` (version 1, reserved), for the ledger; built from
    /// the decision's copy of the grant, so no lookup. If the Call-ID was a replay of a call
    /// that has changed since, the ledger keeps the newer row (versions only go up).
    pub fn admitted(call_id: &str, g: Grant) -> StoredCall {
        StoredCall {
            seq: g.seq,
            call_id: call_id.to_string(),
            basis: g.basis,
            funding: StoredFunding::of(&g.funding),
            tenant: g.tenant,
            user: g.user,
            dialed: g.dialed,
            destination: g.destination,
            route: g.route,
            reserved_seconds: g.reserved_seconds,
            reserved_money: g.reserved_money,
            started_at: g.started_at,
            expires_at: g.expires_at,
            state: CallState::Reserved,
            billable_seconds: 0,
            charged_seconds: 0,
            charged_money: Money::ZERO,
            ended_at: None,
            version: 1,
        }
    }

    /// The month the call is charged to: its pool's, else the month it started in.
    pub fn month(&self) -> MonthKey {
        match &self.funding {
            StoredFunding::Pool { month, .. } => *month,
            _ => MonthKey::of(self.started_at),
        }
    }
}

/// What a restore did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Open reservations now held again.
    pub open: usize,
    /// Ended calls counted into pools, balances or spending.
    pub ended: usize,
}

impl Engine {
    /// Rebuilds state from stored calls (see the module docs). Call it once, at start-up,
    /// before any traffic.
    pub fn restore(&self, calls: impl IntoIterator<Item = StoredCall>, now: u64) -> Restored {
        let (month, live_counters, live_accounts) = self.live_parts(now);
        let counters: HashMap<PoolKey, Arc<PoolCounter>> = live_counters
            .iter()
            .map(|c| (c.key.clone(), Arc::clone(c)))
            .collect();
        let accounts: HashMap<Arc<str>, Arc<CreditAccount>> = live_accounts
            .iter()
            .map(|a| (Arc::clone(&a.tenant), Arc::clone(a)))
            .collect();
        // Counters of other months (or of pools the directory no longer has), created once.
        let mut detached: HashMap<(PoolKey, MonthKey), Arc<PoolCounter>> = HashMap::new();
        let mut out = Restored::default();
        let shared = self.shared;
        for c in calls {
            self.seq_floor(c.seq.saturating_add(1));
            let open = c.state == CallState::Reserved;
            let funding = match &c.funding {
                StoredFunding::None => Funding::None,
                StoredFunding::Pool { key, month: m } => {
                    let counter = match counters.get(key) {
                        Some(x) if *m == month => Arc::clone(x),
                        _ => Arc::clone(detached.entry((key.clone(), *m)).or_insert_with(|| {
                            Arc::new(PoolCounter::new(key.clone(), *m, 0, shared))
                        })),
                    };
                    if open {
                        counter.restore(0, c.reserved_seconds);
                    } else {
                        counter.restore(c.charged_seconds, 0);
                    }
                    Funding::Pool(counter)
                }
                StoredFunding::Credits { per_minute, spend } => {
                    let account = accounts.get(&c.tenant).cloned().unwrap_or_else(|| {
                        Arc::new(CreditAccount::new(
                            Arc::clone(&c.tenant),
                            Money::ZERO,
                            shared,
                        ))
                    });
                    let taken = if open {
                        c.reserved_money
                    } else {
                        c.charged_money
                    };
                    account.restore_spent(taken);
                    if let Some((user, m)) = spend {
                        self.spend_ledger().restore(user, *m, taken);
                    }
                    Funding::Credits {
                        account,
                        per_minute: *per_minute,
                        spend: spend.clone(),
                    }
                }
            };
            // The limits' counts: live calls, the rolling minute, velocity, today's spend.
            let hold = self.hold_of(c.basis, &c.user, &c.tenant);
            if let Some(h) = &hold {
                h.restore_admission(c.started_at, now, c.destination.as_ref());
                if open {
                    h.restore_live();
                }
                if let StoredFunding::Credits { .. } = &c.funding {
                    let day = day_of(c.started_at);
                    if day == day_of(now) {
                        let taken = if open {
                            c.reserved_money
                        } else {
                            c.charged_money
                        };
                        h.tenant().spend(day, taken, None);
                    }
                }
            }
            if !open {
                out.ended += 1;
                continue;
            }
            let mut record = CallRecord::reserved(Grant {
                seq: c.seq,
                basis: c.basis,
                tenant: c.tenant,
                user: c.user,
                dialed: c.dialed,
                destination: c.destination,
                route: c.route,
                funding,
                reserved_seconds: c.reserved_seconds,
                reserved_money: c.reserved_money,
                started_at: c.started_at,
                expires_at: c.expires_at,
                hold,
            });
            record.version = c.version;
            self.reservations().map.insert(c.call_id, record);
            out.open += 1;
        }
        out
    }
}
