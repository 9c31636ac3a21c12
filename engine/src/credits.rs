//! Communications Credits (DESIGN §4 rule 10): a tenant balance, per-destination rates from
//! `rates.csv`, and an optional per-user monthly spend limit.
//!
//! Money is an integer count of micro-units of the tenant currency ([`Money`]); never floats.
//! Balances are reserved and settled like minutes: a CAS loop takes the cost of the grant from
//! the balance (which never goes below zero), settlement refunds what the call did not use.
//! "Dial international phone numbers … / Dial out and pay per minute once you have exhausted your
//! monthly minute allotment" (`what-are-communications-credits.md`).

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::fxhash::FxMap;
use crate::load::{LoadErrors, RateRecord, RATES_FILE};
use crate::numbering::{NumberType, Region};
use crate::pools::MonthKey;
use crate::shares::{Lack, Share};

/// An amount in micro-units (10⁻⁶) of the tenant currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

impl Money {
    /// No money: the reserved and charged amount of every call credits do not pay for.
    pub const ZERO: Money = Money(0);
    const SCALE: i64 = 1_000_000;

    /// Parses a non-negative decimal such as `"250.00"` or `"0.019"` (at most 6 decimals).
    pub fn parse(text: &str) -> Option<Money> {
        let t = text.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() && frac.is_empty()
            || frac.len() > 6
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut f: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        for _ in frac.len()..6 {
            f *= 10;
        }
        whole.checked_mul(Self::SCALE)?.checked_add(f).map(Money)
    }

    /// The cost of `seconds` at `per_minute`, rounded up to the micro-unit.
    pub fn for_seconds(per_minute: Money, seconds: u64) -> Money {
        let s = i128::from(seconds);
        let v = (i128::from(per_minute.0) * s + 59) / 60;
        Money(v.min(i128::from(i64::MAX)) as i64)
    }

    /// Seconds that this budget pays for at `per_minute`: at most `want`, in whole
    /// `increment`s, rounded down (a free destination: `want`). The inverse of
    /// [`Money::for_seconds`], and the one place seconds are bought with money.
    pub fn seconds_at(self, per_minute: Money, want: u64, increment: u64) -> u64 {
        let inc = increment.max(1);
        if per_minute.0 <= 0 {
            return want;
        }
        let secs = self.0.max(0) as u128 * 60 / per_minute.0 as u128;
        (secs.min(u128::from(want)) as u64) / inc * inc
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
    }
}

/// Per-minute prices by destination region and number type, from `rates.csv`. `*` in either
/// column is a wildcard; the most specific row wins: (region, type), (region, *), (*, type), (*, *).
#[derive(Clone, Debug, Default)]
pub struct Rates {
    map: FxMap<(Option<Region>, Option<NumberType>), Money>,
}

impl Rates {
    /// Checks the rows of `rates.csv`; every error is added to `errors`.
    pub(crate) fn build(rows: &[RateRecord], errors: &mut LoadErrors) -> Rates {
        let mut map = FxMap::default();
        for r in rows {
            let line = Some(r.line);
            let region = match r.destination.as_str() {
                "*" => Some(None),
                code => Region::new(code).map(Some),
            };
            if region.is_none() {
                errors.push(
                    RATES_FILE,
                    line,
                    "destination",
                    format!("{:?} is neither `*` nor a region", r.destination),
                );
            }
            let ty = match r.number_type.as_str() {
                "*" | "" => Some(None),
                name => NumberType::from_name(name).map(Some),
            };
            if ty.is_none() {
                errors.push(
                    RATES_FILE,
                    line,
                    "number_type",
                    format!("unknown number type {:?}", r.number_type),
                );
            }
            let price = Money::parse(&r.price_per_minute);
            if price.is_none() {
                errors.push(
                    RATES_FILE,
                    line,
                    "price_per_minute",
                    format!("{:?} is not a decimal amount", r.price_per_minute),
                );
            }
            if let (Some(region), Some(ty), Some(price)) = (region, ty, price) {
                if map.insert((region, ty), price).is_some() {
                    errors.push(
                        RATES_FILE,
                        line,
                        "destination",
                        "duplicate rate for this destination and type",
                    );
                }
            }
        }
        Rates { map }
    }

    /// The per-minute price of a call to `region` / `t`, if any row covers it.
    pub fn price(&self, region: Region, t: NumberType) -> Option<Money> {
        [
            (Some(region), Some(t)),
            (Some(region), None),
            (None, Some(t)),
            (None, None),
        ]
        .iter()
        .find_map(|k| self.map.get(k).copied())
    }
}

/// A tenant's live Communications Credits balance. Shared (`Arc`) across reloads.
#[derive(Debug)]
pub struct CreditAccount {
    /// The tenant id whose balance this is.
    pub tenant: Arc<str>,
    balance: AtomicI64,
    /// The balance figure of the configuration last applied: a reload applies the difference
    /// (a top-up) to the live balance.
    configured: AtomicI64,
    /// With several nodes (DESIGN §6), the balance of record is the store's and this node
    /// spends from its share of it: grants take from the share, settlements and top-ups go
    /// through the store, `balance` is unused.
    share: Option<Share>,
}

impl CreditAccount {
    /// An account holding the configured balance of `tenants.toml`.
    pub(crate) fn new(tenant: Arc<str>, configured: Money, shared: bool) -> CreditAccount {
        CreditAccount {
            tenant,
            balance: AtomicI64::new(configured.0),
            configured: AtomicI64::new(configured.0),
            share: shared.then(Share::default),
        }
    }

    /// The live balance: configured, minus what calls hold or were charged (with several
    /// nodes: this node's free share; the store has the balance of record).
    pub fn balance(&self) -> Money {
        match &self.share {
            Some(s) => Money(i64::try_from(s.free()).unwrap_or(i64::MAX)),
            None => Money(self.balance.load(Ordering::Acquire)),
        }
    }

    /// The balance `tenants.toml` gives (with several nodes, the capacity of the store's
    /// account).
    pub fn configured(&self) -> Money {
        Money(self.configured.load(Ordering::Acquire))
    }

    /// This node's share of the balance, with several nodes.
    pub fn share(&self) -> Option<&Share> {
        self.share.as_ref()
    }

    /// A reload with a new configured balance: the live balance moves by the difference (with
    /// several nodes the store's capacity does, written by the driver).
    pub(crate) fn reconfigure(&self, configured: Money) {
        let old = self.configured.swap(configured.0, Ordering::AcqRel);
        if self.share.is_none() {
            self.balance.fetch_add(configured.0 - old, Ordering::AcqRel);
        }
    }

    /// Takes `amount` from the balance if it covers it (CAS loop; never below zero), or says
    /// what is lacking.
    pub(crate) fn reserve(&self, amount: Money) -> Result<(), Lack> {
        if amount.0 < 0 {
            return Err(Lack::Exhausted);
        }
        if let Some(s) = &self.share {
            return s.take_exact(amount.0 as u64);
        }
        let mut cur = self.balance.load(Ordering::Acquire);
        loop {
            if cur < amount.0 {
                return Err(Lack::Exhausted);
            }
            match self.balance.compare_exchange_weak(
                cur,
                cur - amount.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Gives back the unused part of a reservation (with several nodes it goes back through
    /// the store, not into this node's share).
    pub(crate) fn refund(&self, amount: Money) {
        if amount.0 > 0 && self.share.is_none() {
            self.balance.fetch_add(amount.0, Ordering::AcqRel);
        }
    }

    /// Recovery: money a stored call took (charged, or still reserved) leaves the balance
    /// unconditionally; what was admitted stays admitted, even below zero. (With several
    /// nodes the store already counts it.)
    pub(crate) fn restore_spent(&self, amount: Money) {
        if self.share.is_none() {
            self.balance.fetch_sub(amount.0, Ordering::AcqRel);
        }
    }

    /// Whole increments of a call the balance can pay for at `per_minute`, up to `want` seconds
    /// (with several nodes and an undrained share: `want`, the share is topped up if short).
    pub fn affordable_seconds(&self, per_minute: Money, want: u64, increment: u64) -> u64 {
        match &self.share {
            Some(s) if !s.is_drained() => want / increment.max(1) * increment.max(1),
            _ => self.balance().seconds_at(per_minute, want, increment),
        }
    }
}

/// One user's spending in one month under a spend limit, with several nodes (DESIGN §6): the
/// limit is the capacity of an account of the cluster store, and this node spends from its
/// share of it like from a credit balance; a user's calls on every node together stay within
/// the limit. The share is drawn call by call (a limit is small against a grant's cost).
#[derive(Debug)]
pub struct SpendAccount {
    /// The user's tenant (the store names the account by tenant, user and month).
    pub tenant: Arc<str>,
    /// The user's UPN.
    pub user: Arc<str>,
    /// The calendar month the allowance is of.
    pub month: MonthKey,
    /// The tenant's `user_spend_limit` as last applied.
    limit: AtomicI64,
    share: Share,
}

impl SpendAccount {
    /// The limit, in micro-units: the capacity of the store's account.
    pub fn limit(&self) -> Money {
        Money(self.limit.load(Ordering::Acquire))
    }

    /// This node's share of what the user may still spend.
    pub fn share(&self) -> &Share {
        &self.share
    }
}

/// One user's credits spending this month ([`crate::Engine::user_spend`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpend {
    /// The user's tenant id.
    pub tenant: Arc<str>,
    /// The UPN.
    pub user: Arc<str>,
    /// What settled calls cost and what calls in progress hold.
    pub spent: Money,
}

/// The users' [`SpendAccount`]s by user and month.
type SpendAccounts = DashMap<(Arc<str>, MonthKey), Arc<SpendAccount>>;

/// Why the user's spend limit could not pay for an amount.
pub(crate) enum SpendLack {
    /// The limit is reached (`spend_limit_reached`).
    Limit,
    /// Several nodes: this node's share of the user's allowance is short; the store may have
    /// more.
    Short(Arc<SpendAccount>),
}

/// Per-user monthly credits spending against `user_spend_limit`
/// (`Set-CsTeamsCallingPolicy -CallingSpendUserLimit`). Only the credits path touches it. With
/// several nodes, the check is against the user's [`SpendAccount`] share (cluster-wide); the
/// figures here stay this node's own.
#[derive(Debug, Default)]
pub(crate) struct SpendLedger {
    spent: DashMap<(Arc<str>, MonthKey), i64>,
    /// With several nodes: the users' accounts of the cluster store.
    shared: Option<SpendAccounts>,
}

impl SpendLedger {
    /// With several nodes, limits are checked against the cluster store's accounts.
    pub fn new(shared: bool) -> SpendLedger {
        SpendLedger {
            spent: DashMap::default(),
            shared: shared.then(DashMap::default),
        }
    }

    /// Adds `amount` to the user's spending this month if it stays within `limit` (with
    /// several nodes: if this node's share of the user's allowance covers it).
    pub fn reserve(
        &self,
        tenant: &Arc<str>,
        user: &Arc<str>,
        month: MonthKey,
        amount: Money,
        limit: Money,
    ) -> Result<(), SpendLack> {
        if let Some(a) = self.account(tenant, user, month, limit) {
            match a
                .share
                .take_exact(u64::try_from(amount.0).unwrap_or(u64::MAX))
            {
                Ok(()) => {}
                Err(Lack::Exhausted) => return Err(SpendLack::Limit),
                Err(Lack::Short) => return Err(SpendLack::Short(a)),
            }
            *self.spent.entry((Arc::clone(user), month)).or_insert(0) += amount.0;
            return Ok(());
        }
        let mut e = self.spent.entry((Arc::clone(user), month)).or_insert(0);
        if *e + amount.0 > limit.0 {
            return Err(SpendLack::Limit);
        }
        *e += amount.0;
        Ok(())
    }

    /// Undoes a [`SpendLedger::reserve`] whose call was not admitted after all (its credits
    /// were short): with several nodes the amount goes back into the share it came from.
    pub fn unreserve(&self, user: &Arc<str>, month: MonthKey, amount: Money) {
        self.refund(user, month, amount);
        self.return_to_share(user, month, amount);
    }

    /// Several nodes: `amount` taken from the user's share goes back into it (an admission
    /// undone before it reached the store; a settlement gives back through the store).
    pub fn return_to_share(&self, user: &Arc<str>, month: MonthKey, amount: Money) {
        if let Some(a) = self.get(user, month) {
            a.share.add(u64::try_from(amount.0).unwrap_or(0));
        }
    }

    /// With several nodes, the user's account of `month`, if this node has one.
    pub fn get(&self, user: &Arc<str>, month: MonthKey) -> Option<Arc<SpendAccount>> {
        self.shared
            .as_ref()?
            .get(&(Arc::clone(user), month))
            .map(|a| Arc::clone(&a))
    }

    /// With several nodes, the user's account (created at its first credits call, its limit
    /// kept current); `None` with one node.
    fn account(
        &self,
        tenant: &Arc<str>,
        user: &Arc<str>,
        month: MonthKey,
        limit: Money,
    ) -> Option<Arc<SpendAccount>> {
        let map = self.shared.as_ref()?;
        let a = map
            .entry((Arc::clone(user), month))
            .or_insert_with(|| {
                Arc::new(SpendAccount {
                    tenant: Arc::clone(tenant),
                    user: Arc::clone(user),
                    month,
                    limit: AtomicI64::new(limit.0),
                    share: Share::default(),
                })
            })
            .clone();
        a.limit.store(limit.0, Ordering::Release);
        Some(a)
    }

    /// What the user may still spend this month, to size a grant: `limit` less this node's
    /// spending; with several nodes, what the share holds once the store said the allowance is
    /// drained, else `None` (the share is topped up for the call if short).
    pub fn left(
        &self,
        tenant: &Arc<str>,
        user: &Arc<str>,
        month: MonthKey,
        limit: Money,
    ) -> Option<Money> {
        match self.account(tenant, user, month, limit) {
            Some(a) if a.share.is_drained() => {
                Some(Money(i64::try_from(a.share.free()).unwrap_or(i64::MAX)))
            }
            Some(_) => None,
            None => Some(Money(limit.0 - self.spent(user, month).0)),
        }
    }

    /// With several nodes, the users' accounts of `month` (for the cluster driver).
    pub fn accounts(&self, month: MonthKey) -> Vec<Arc<SpendAccount>> {
        self.shared.as_ref().map_or_else(Vec::new, |m| {
            m.iter()
                .filter(|e| e.key().1 == month)
                .map(|e| Arc::clone(e.value()))
                .collect()
        })
    }

    /// Recovery: adds what a stored call took to the user's spending that month.
    pub fn restore(&self, user: &Arc<str>, month: MonthKey, amount: Money) {
        *self.spent.entry((Arc::clone(user), month)).or_insert(0) += amount.0;
    }

    pub fn refund(&self, user: &Arc<str>, month: MonthKey, amount: Money) {
        if let Some(mut e) = self.spent.get_mut(&(Arc::clone(user), month)) {
            *e -= amount.0;
        }
    }

    /// Every user's spending of `month` (read only, for reports).
    pub fn of_month(&self, month: MonthKey) -> Vec<(Arc<str>, Money)> {
        self.spent
            .iter()
            .filter(|e| e.key().1 == month)
            .map(|e| (Arc::clone(&e.key().0), Money(*e.value())))
            .collect()
    }

    pub fn spent(&self, user: &Arc<str>, month: MonthKey) -> Money {
        Money(
            self.spent
                .get(&(Arc::clone(user), month))
                .map(|v| *v)
                .unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_rates;

    #[test]
    fn money_parses_and_prints() {
        assert_eq!(Money::parse("250.00"), Some(Money(250_000_000)));
        assert_eq!(Money::parse("0.019"), Some(Money(19_000)));
        assert_eq!(Money::parse("7"), Some(Money(7_000_000)));
        assert_eq!(Money::parse(".5"), Some(Money(500_000)));
        for bad in [
            "",
            ".",
            "-1",
            "1.2345678",
            "1e3",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(Money::parse(bad), None, "{bad}");
        }
        assert_eq!(Money(19_000).to_string(), "0.019000");
        assert_eq!(Money::for_seconds(Money(19_000), 1800), Money(570_000));
        assert_eq!(Money::for_seconds(Money(1), 1), Money(1));
    }

    #[test]
    fn rates_most_specific_wins_and_errors_name_fields() {
        let mut errors = LoadErrors::default();
        let rows = parse_rates(
            "destination,number_type,price_per_minute\n*,*,0.25\nGB,*,0.02\nGB,mobile,0.09\n",
            &mut errors,
        );
        let rates = Rates::build(&rows, &mut errors);
        assert!(errors.is_empty());
        let gb = Region::new("GB").unwrap();
        assert_eq!(rates.price(gb, NumberType::Mobile), Some(Money(90_000)));
        assert_eq!(rates.price(gb, NumberType::FixedLine), Some(Money(20_000)));
        assert_eq!(
            rates.price(Region::new("JP").unwrap(), NumberType::Mobile),
            Some(Money(250_000))
        );
        let rows = parse_rates(
            "destination,number_type,price_per_minute\nXXX,bogus,free\n",
            &mut errors,
        );
        Rates::build(&rows, &mut errors);
        let f: Vec<_> = errors
            .0
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            f,
            [
                (Some(2), "destination"),
                (Some(2), "number_type"),
                (Some(2), "price_per_minute")
            ]
        );
    }

    #[test]
    fn account_never_goes_negative() {
        let a = CreditAccount::new("t".into(), Money(1_000), false);
        assert_eq!(a.reserve(Money(600)), Ok(()));
        assert_eq!(a.reserve(Money(600)), Err(Lack::Exhausted));
        a.refund(Money(200));
        assert_eq!(a.reserve(Money(600)), Ok(()));
        assert_eq!(a.balance(), Money(0));
        a.reconfigure(Money(3_000));
        assert_eq!(a.balance(), Money(2_000));
    }

    #[test]
    fn seconds_bought_with_money_round_down_to_whole_increments() {
        let per_minute = Money(120_000); // 0.12 a minute
        assert_eq!(Money(1_000_000).seconds_at(per_minute, 1800, 60), 480);
        assert_eq!(Money(1_000_000).seconds_at(per_minute, 300, 60), 300);
        assert_eq!(Money(119_999).seconds_at(per_minute, 1800, 60), 0);
        assert_eq!(Money(-5).seconds_at(per_minute, 1800, 60), 0);
        assert_eq!(Money(0).seconds_at(Money::ZERO, 1800, 60), 1800);
        assert_eq!(Money(i64::MAX).seconds_at(Money(1), 1800, 60), 1800);
        // The inverse of for_seconds: what a grant costs, it affords.
        let cost = Money::for_seconds(per_minute, 480);
        assert_eq!(cost.seconds_at(per_minute, 1800, 60), 480);
    }
}
