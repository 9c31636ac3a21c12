//! Several nodes (DESIGN §6 "Several nodes"): the calls of other nodes, and what other nodes do
//! to this node's calls. An end, extend or release may reach any node; the node that receives
//! it works from the call's row in the cluster store, with the same arithmetic as for its own
//! calls, and the store applies the result once. The admitting node then adopts what was done.

use super::Ending;
use super::{Engine, Extension};
use crate::credits::Money;
use crate::policy::Reason;
use crate::reservations::{CallError, CallState, Funding, Settlement};
use crate::restore::{StoredCall, StoredFunding};
use crate::shares::{ShareOf, Short};

impl Engine {
    /// Several nodes (DESIGN §6): ends a call another node admitted (and may have died with),
    /// from the row the store holds, with the arithmetic of [`Engine::settle`] and
    /// [`Engine::release`]: the ended row for the store to apply if the call is still reserved
    /// there (exactly once), and the answer. A row already ended answers its figures again
    /// with `changed: false`.
    pub fn end_stored(
        &self,
        mut stored: StoredCall,
        ending: Ending,
        now: u64,
    ) -> (StoredCall, Settlement) {
        if stored.state != CallState::Reserved {
            let s = stored.settlement(false);
            return (stored, s);
        }
        let (state, billable, charged) = match ending {
            Ending::Settled { billable_seconds } => (
                CallState::Settled,
                billable_seconds,
                self.config().round_up(billable_seconds),
            ),
            Ending::Released => (CallState::Released, 0, 0),
        };
        let charged = charged.min(stored.reserved_seconds);
        let (seconds, money) = match &stored.funding {
            StoredFunding::None => (0, Money::ZERO),
            StoredFunding::Pool { .. } => (charged, Money::ZERO),
            StoredFunding::Credits { per_minute, .. } => (
                charged,
                Money::for_seconds(*per_minute, charged).min(stored.reserved_money),
            ),
        };
        stored.state = state;
        stored.billable_seconds = billable;
        stored.charged_seconds = seconds;
        stored.charged_money = money;
        stored.ended_at = Some(now);
        stored.version += 1;
        let s = stored.settlement(true);
        (stored, s)
    }

    /// Several nodes: extends a call another node admitted, from the row the store holds
    /// (locked), with the arithmetic of [`Engine::extend`], paid from what the account has
    /// `available` in the store (not this node's share: the call is not this node's). Returns
    /// the row to write, the answer, and what to take from the account (seconds of a pool,
    /// micro-units of credits). Under a user spend limit, `available` is already the smaller
    /// of the balance and the user's allowance, and the store takes `amount` from both.
    pub fn extend_stored(
        &self,
        mut stored: StoredCall,
        available: u64,
        now: u64,
    ) -> Result<(StoredCall, Extension, u64), CallError> {
        if stored.state != CallState::Reserved {
            return Err(CallError::NotActive(stored.state));
        }
        let config = self.config();
        let g = &config.grants;
        let inc = g.billing_increment_seconds.max(1);
        let want = g.extension(stored.reserved_seconds);
        let (granted, amount) = match &stored.funding {
            _ if want == 0 => (0, 0),
            StoredFunding::None => (0, 0),
            StoredFunding::Pool { .. } => {
                let granted = want.min(available / inc * inc);
                if granted < inc.min(want) {
                    return Err(CallError::Exhausted(Reason::PoolExhausted));
                }
                (granted, granted)
            }
            StoredFunding::Credits { per_minute, .. } => {
                let budget = Money(i64::try_from(available).unwrap_or(i64::MAX));
                let secs = budget.seconds_at(*per_minute, want, inc);
                if secs < inc.min(want) {
                    return Err(CallError::Exhausted(Reason::CreditsExhausted));
                }
                let cost = Money::for_seconds(*per_minute, secs);
                stored.reserved_money.0 += cost.0;
                (secs, u64::try_from(cost.0).unwrap_or(0))
            }
        };
        stored.reserved_seconds += granted;
        stored.expires_at = stored.expires_at.max(now) + granted;
        stored.version += 1;
        let x = Extension {
            granted_seconds: granted,
            max_duration: stored.reserved_seconds,
            expires_at: stored.expires_at,
        };
        Ok((stored, x, amount))
    }

    /// Several nodes: another node extended a call this node admitted (the row, as the store
    /// now holds it): this node's record takes the larger reservation and the later expiry,
    /// so it neither expires the call early nor refunds more than it reserved. Returns whether
    /// the record changed (then it is written to the ledger again).
    pub fn adopt_extension(&self, stored: &StoredCall) -> bool {
        let Some(mut r) = self.reservations.map.get_mut(&stored.call_id) else {
            return false;
        };
        if r.state != CallState::Reserved || r.version >= stored.version {
            return false;
        }
        let seconds = stored
            .reserved_seconds
            .saturating_sub(r.grant.reserved_seconds);
        let money = Money((stored.reserved_money.0 - r.grant.reserved_money.0).max(0));
        match &r.grant.funding {
            Funding::None => {}
            // The store took the extension from the pool of record; this node's counter
            // counts it as reserved, so settling gives back no more than was reserved.
            Funding::Pool(c) => c.restore(0, seconds),
            Funding::Credits { spend, .. } => {
                if let Some((u, m)) = spend {
                    self.spend.restore(u, *m, money);
                }
            }
        }
        r.grant.reserved_seconds += seconds;
        r.grant.reserved_money.0 += money.0;
        r.grant.expires_at = r.grant.expires_at.max(stored.expires_at);
        r.version = stored.version;
        true
    }

    /// Several nodes: what an extension of `call_id` needs from this node's share, when
    /// [`Engine::extend`] found the share short ([`CallError::ShareShort`]): the driver draws
    /// it, then the extension is tried again.
    pub fn extension_short(&self, call_id: &str) -> Option<Short> {
        let r = self.reservations.map.get(call_id)?;
        let want = self.config().grants.extension(r.grant.reserved_seconds);
        match &r.grant.funding {
            Funding::None => None,
            Funding::Pool(c) => Some(Short {
                of: ShareOf::Pool(std::sync::Arc::clone(c)),
                needed: want,
            }),
            Funding::Credits {
                account,
                per_minute,
                spend,
            } => {
                let needed = u64::try_from(Money::for_seconds(*per_minute, want).0).unwrap_or(0);
                // The user's allowance is taken first: if its share is the short one, it is
                // the one to draw.
                let allowance = spend
                    .as_ref()
                    .and_then(|(u, m)| self.spend.get(u, *m))
                    .filter(|a| a.share().free() < needed);
                Some(Short {
                    of: match allowance {
                        Some(a) => ShareOf::Spend(a),
                        None => ShareOf::Credits(std::sync::Arc::clone(account)),
                    },
                    needed,
                })
            }
        }
    }
}
