//! In-flight calls, keyed by Call-ID (DESIGN §4 "Reservations", the RFC 4006 model: reserve,
//! extend, settle).
//!
//! A record moves `reserved` → `settled` | `expired` | `released`, exactly once, under the
//! `dashmap` entry lock of its Call-ID: settling twice returns the same answer and changes
//! nothing; the pool or balance is touched only on the one transition.

use std::sync::Arc;

use dashmap::mapref::entry::VacantEntry;
use dashmap::DashMap;

use crate::credits::{CreditAccount, Money, SpendLedger};
use crate::limits::{day_of, Hold};
use crate::numbering::Destination;
use crate::policy::{Basis, Decision, Outcome, Route, Rule};
use crate::pools::{MonthKey, PoolCounter};

/// What pays for a call.
#[derive(Clone, Debug)]
pub enum Funding {
    /// Emergency, Direct Routing, free: nothing is reserved.
    None,
    /// Rule 9: seconds reserved on this month's counter of the caller's pool; settling returns
    /// the unused part to the same counter, even after a reload or rollover.
    Pool(Arc<PoolCounter>),
    /// Rule 10: money reserved from the tenant's Communications Credits balance.
    Credits {
        /// The tenant's live balance, which settlement refunds.
        account: Arc<CreditAccount>,
        /// The `rates.csv` price the call was admitted at (kept: a reload may change rates).
        per_minute: Money,
        /// The user and month whose spend limit this counts against.
        spend: Option<(Arc<str>, MonthKey)>,
    },
}

/// What an admission reserved: returned in the [`crate::policy::Decision`] so the daemon can
/// persist it before the 302 leaves.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The call's place in admission order, unique for the life of the ledger: the ledger's
    /// key for the call's row, so rows are appended in the order calls arrive rather than
    /// scattered by their random Call-IDs (see `sip-edge/src/ledger/schema.rs`). Set when the
    /// reservation is recorded ([`crate::Engine::seq_floor`] keeps it above what is stored).
    pub seq: u64,
    /// Why the call was admitted (`X-Tollgate-Basis`).
    pub basis: Basis,
    /// The caller's tenant id (empty for an unknown caller's emergency call).
    pub tenant: Arc<str>,
    /// The caller's UPN (empty for an unknown caller's emergency call): for the call record.
    pub user: Arc<str>,
    /// The Request-URI user part as dialed: for the call record. Shared: the decision and the
    /// in-flight record each hold the grant, and a refcount is cheaper than a second copy.
    pub dialed: Arc<str>,
    /// The classified number.
    pub destination: Option<Destination>,
    /// Where the call was sent (replayed to a retransmitted INVITE).
    pub route: Option<Route>,
    /// What the reservation was taken from, and what settlement gives back to.
    pub funding: Funding,
    /// Seconds reserved so far (the call's maximum duration).
    pub reserved_seconds: u64,
    /// Money reserved so far (credits only).
    pub reserved_money: Money,
    /// Unix seconds of the admission.
    pub started_at: u64,
    /// After this the reservation settles as fully used (grant + `settle_grace_seconds`).
    pub expires_at: u64,
    /// The call's place in its user's and tenant's live counts ([`crate::limits`]); `None`
    /// for calls no limit counts (emergency, internal).
    pub hold: Option<Hold>,
}

/// The state of a call's reservation (`GET /v1/calls/{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// Admitted; its grant is held until the call ends.
    Reserved,
    /// The proxy reported the end (`/end`): usage charged, the rest given back.
    Settled,
    /// Never reported: settled as fully used after grant + `settle_grace_seconds`.
    Expired,
    /// Never connected (CANCEL, `/release`): the whole reservation given back.
    Released,
}

impl CallState {
    /// The pinned name (`"reserved"`, ...) of `GET /v1/calls/{id}` and the ledger.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallState::Reserved => "reserved",
            CallState::Settled => "settled",
            CallState::Expired => "expired",
            CallState::Released => "released",
        }
    }
}

/// One call.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// What the admission reserved, grown by each extension.
    pub grant: Grant,
    /// Where the call is in `reserved` → `settled` | `expired` | `released`.
    pub state: CallState,
    /// As reported by the proxy (or the reservation, on expiry).
    pub billable_seconds: u64,
    /// What was taken from the pool or paid with credits: billable rounded up to the billing
    /// increment, at most what was reserved (the proxy caps the call at the grant).
    pub charged_seconds: u64,
    /// What the call cost in credits (credits calls only).
    pub charged_money: Money,
    /// Unix seconds of the transition out of `reserved`.
    pub ended_at: Option<u64>,
    /// Bumped by every change (admit 1, each extension, the end): the ledger keeps the
    /// highest version it was given, so records written out of order cannot go back in time.
    pub version: u32,
}

/// The answer of settle / release / expire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The call.
    pub call_id: String,
    /// The state it ended in (or already had, when `changed` is false).
    pub state: CallState,
    /// The caller's tenant.
    pub tenant: Arc<str>,
    /// The basis it was admitted on.
    pub basis: Basis,
    /// Seconds reserved over all grants.
    pub reserved_seconds: u64,
    /// Seconds as reported (all reserved seconds on expiry, 0 on release).
    pub billable_seconds: u64,
    /// Seconds taken from the pool or paid with credits: billable rounded up to the billing
    /// increment, capped at what was reserved.
    pub charged_seconds: u64,
    /// Credits paid (credits calls only).
    pub charged_money: Money,
    /// `false` when the call had already ended: nothing changed this time.
    pub changed: bool,
}

/// Why settle / extend / release could not act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No call holds this Call-ID (never admitted, or forgotten after it ended): HTTP 404.
    #[error("unknown call")]
    UnknownCall,
    /// An extension for a call that has already ended, in this state.
    #[error("call already {}", .0.as_str())]
    NotActive(CallState),
    /// An extension the pool or balance cannot pay for ([`crate::Reason::PoolExhausted`],
    /// [`crate::Reason::CreditsExhausted`], [`crate::Reason::SpendLimitReached`]); the call
    /// keeps what it holds.
    #[error("no further grant: {0}")]
    Exhausted(crate::policy::Reason),
    /// Several nodes: this node's share cannot pay for the extension and the store may have
    /// more ([`crate::Engine::extension_short`] says what to draw); tried again after the draw.
    #[error("this node's share is short")]
    ShareShort,
}

/// The in-flight map, keyed by Call-ID.
///
/// Hashed with `foldhash` (randomly seeded, so a peer cannot aim Call-IDs at one bucket) rather
/// than std's SipHash: the map is hashed on every admission and every key again whenever a
/// shard grows, and SipHash was 1–2% of the daemon's CPU at 60k calls/s.
#[derive(Debug, Default)]
pub struct Reservations {
    pub(crate) map: DashMap<String, CallRecord, foldhash::quality::RandomState>,
}

impl CallRecord {
    /// A call just admitted with `grant` (version 1).
    pub(crate) fn reserved(grant: Grant) -> CallRecord {
        CallRecord {
            grant,
            state: CallState::Reserved,
            billable_seconds: 0,
            charged_seconds: 0,
            charged_money: Money::ZERO,
            ended_at: None,
            version: 1,
        }
    }

    fn settlement(&self, call_id: &str, changed: bool) -> Settlement {
        Settlement {
            call_id: call_id.to_string(),
            state: self.state,
            tenant: Arc::clone(&self.grant.tenant),
            basis: self.grant.basis,
            reserved_seconds: self.grant.reserved_seconds,
            billable_seconds: self.billable_seconds,
            charged_seconds: self.charged_seconds,
            charged_money: self.charged_money,
            changed,
        }
    }

    /// The one transition out of `reserved`: charges `charged` seconds (≤ reserved) and returns
    /// the rest of the reservation.
    fn finish(
        &mut self,
        state: CallState,
        billable: u64,
        charged: u64,
        now: u64,
        spend: &SpendLedger,
    ) {
        let g = &self.grant;
        let charged = charged.min(g.reserved_seconds);
        if let Some(h) = &g.hold {
            h.release();
        }
        match &g.funding {
            Funding::None => {
                self.charged_seconds = 0;
            }
            Funding::Pool(c) => {
                c.settle(g.reserved_seconds, charged);
                self.charged_seconds = charged;
            }
            Funding::Credits {
                account,
                per_minute,
                spend: limit,
            } => {
                let cost = Money::for_seconds(*per_minute, charged).min(g.reserved_money);
                let back = Money(g.reserved_money.0 - cost.0);
                account.refund(back);
                if let Some(h) = &g.hold {
                    h.tenant().unspend(day_of(g.started_at), back);
                }
                if let Some((user, month)) = limit {
                    spend.refund(user, *month, back);
                }
                self.charged_seconds = charged;
                self.charged_money = cost;
            }
        }
        self.state = state;
        self.billable_seconds = billable;
        self.ended_at = Some(now);
        self.version += 1;
    }

    /// The month the call is charged to: the month of its pool, else the month it started in.
    pub fn month(&self) -> MonthKey {
        match &self.grant.funding {
            Funding::Pool(c) => c.month,
            _ => MonthKey::of(self.grant.started_at),
        }
    }
}

impl Reservations {
    /// At most this many calls are made room for up front (see [`Reservations::sized_for`]).
    pub(crate) const PRESIZE_MAX: usize = 1 << 18;

    /// A map with room for one live call per user of a `users`-user directory (at most
    /// [`Reservations::PRESIZE_MAX`]), so that it does not grow on the call path as traffic
    /// builds up. Growing a shard rehashes and moves every record it holds (~250 bytes each)
    /// while holding its write lock: measured with `tollgate-load` at 200 calls outstanding,
    /// that was 3–4% of the daemon's CPU and a stall of milliseconds for the decisions waiting
    /// on that shard. Only the table's control bytes are written now; the pages of the records
    /// are touched as calls arrive.
    pub(crate) fn sized_for(users: usize) -> Reservations {
        Reservations {
            map: DashMap::with_capacity_and_hasher(
                users.min(Self::PRESIZE_MAX),
                foldhash::quality::RandomState::default(),
            ),
        }
    }

    /// Calls held, in any state (ended ones until the daemon forgets them).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Calls still holding a reservation.
    pub fn active(&self) -> usize {
        self.map
            .iter()
            .filter(|r| r.state == CallState::Reserved)
            .count()
    }

    /// Whether the Call-ID holds a call (in any state).
    pub fn contains(&self, call_id: &str) -> bool {
        self.map.contains_key(call_id)
    }

    /// A copy of the call's record (`GET /v1/calls/{id}`).
    pub fn get(&self, call_id: &str) -> Option<CallRecord> {
        self.map.get(call_id).map(|r| r.clone())
    }

    /// Settles with `billable` seconds rounded up by `round`. Idempotent.
    pub(crate) fn settle(
        &self,
        call_id: &str,
        billable: u64,
        now: u64,
        round: impl Fn(u64) -> u64,
        spend: &SpendLedger,
    ) -> Result<Settlement, CallError> {
        let mut r = self.map.get_mut(call_id).ok_or(CallError::UnknownCall)?;
        if r.state != CallState::Reserved {
            return Ok(r.settlement(call_id, false));
        }
        r.finish(CallState::Settled, billable, round(billable), now, spend);
        Ok(r.settlement(call_id, true))
    }

    /// CANCEL: gives the whole reservation back. Idempotent.
    pub(crate) fn release(
        &self,
        call_id: &str,
        now: u64,
        spend: &SpendLedger,
    ) -> Result<Settlement, CallError> {
        let mut r = self.map.get_mut(call_id).ok_or(CallError::UnknownCall)?;
        if r.state != CallState::Reserved {
            return Ok(r.settlement(call_id, false));
        }
        r.finish(CallState::Released, 0, 0, now, spend);
        Ok(r.settlement(call_id, true))
    }

    /// Settles as fully used every reservation whose `expires_at` has passed. Scans under
    /// shared (read) shard locks and takes an entry's write lock only for a call that expires,
    /// so the once-a-second sweep does not stall admissions.
    pub(crate) fn expire(&self, now: u64, spend: &SpendLedger) -> Vec<Settlement> {
        let due: Vec<String> = self
            .map
            .iter()
            .filter(|r| r.state == CallState::Reserved && r.grant.expires_at <= now)
            .map(|r| r.key().clone())
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            if let Some(mut r) = self.map.get_mut(&id) {
                // Settled or extended since the scan: not ours to expire.
                if r.state == CallState::Reserved && r.grant.expires_at <= now {
                    let all = r.grant.reserved_seconds;
                    r.finish(CallState::Expired, all, all, now, spend);
                    out.push(r.settlement(&id, true));
                }
            }
        }
        out
    }

    /// Visits every call (a consistent view per record, not across records).
    pub fn for_each(&self, mut f: impl FnMut(&str, &CallRecord)) {
        for r in self.map.iter() {
            f(r.key(), r.value());
        }
    }

    /// Undoes an admission that could not be persisted (the ledger failed): the reservation goes
    /// back and the call is forgotten, as if it had never been admitted. Returns whether it
    /// was there and still reserved.
    pub(crate) fn abort(&self, call_id: &str, spend: &SpendLedger) -> bool {
        let Some((_, mut r)) = self
            .map
            .remove_if(call_id, |_, r| r.state == CallState::Reserved)
        else {
            return false;
        };
        // Several nodes: the reservation never reached the store, so it goes back into the
        // shares it came from (a settlement gives back through the store instead).
        let g = &r.grant;
        match &g.funding {
            Funding::None => {}
            Funding::Pool(c) => {
                if let Some(s) = c.share() {
                    s.add(g.reserved_seconds);
                }
            }
            Funding::Credits {
                account,
                spend: limit,
                ..
            } => {
                if let Some(s) = account.share() {
                    s.add(u64::try_from(g.reserved_money.0).unwrap_or(0));
                }
                if let Some((user, month)) = limit {
                    spend.return_to_share(user, *month, g.reserved_money);
                }
            }
        }
        if let Some(h) = &r.grant.hold {
            h.unadmit(r.grant.started_at);
        }
        r.finish(CallState::Released, 0, 0, 0, spend);
        true
    }

    /// Drops one ended call (the daemon has persisted it). A call still reserved stays.
    pub fn forget(&self, call_id: &str) -> Option<CallRecord> {
        self.map
            .remove_if(call_id, |_, r| r.state != CallState::Reserved)
            .map(|(_, r)| r)
    }

    /// Drops ended calls that ended before `before` (the daemon has persisted them).
    pub fn purge_ended(&self, before: u64) -> usize {
        let n = self.map.len();
        self.map.retain(|_, r| {
            r.state == CallState::Reserved || r.ended_at.is_none_or(|t| t >= before)
        });
        n - self.map.len()
    }
}
/// Stores the decision's reservation, numbered `seq` ([`Grant::seq`]), in the slot its
/// Call-ID's check took (see `Engine::fund`).
pub(crate) fn reserved(
    slot: VacantEntry<'_, String, CallRecord>,
    mut decision: Decision,
    seq: u64,
) -> Decision {
    if let Some(grant) = &mut decision.grant {
        grant.seq = seq;
        slot.insert(CallRecord::reserved(grant.clone()));
    }
    decision
}

/// The answer for a Call-ID already admitted: its basis and reservation, nothing new.
pub(crate) fn replay(r: &CallRecord, destination: Option<Destination>) -> Decision {
    Decision {
        outcome: Outcome::Admit(r.grant.basis),
        rule: Rule::Replay,
        destination,
        route: r.grant.route.clone(),
        max_duration: Some(r.grant.reserved_seconds),
        grant: Some(r.grant.clone()),
        lacking: None,
        dial_plan: None,
        shadow: None,
        limit: None,
        warning: None,
    }
}
