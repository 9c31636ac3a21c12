//! The engine: the live directory snapshot and pool table behind `arc-swap`, the in-flight
//! reservations, and the entry points `authorize` / `decide` / `extend` / `settle` / `release` /
//! `expire` (DESIGN §4). Sans-IO: every call takes `now` (unix seconds, UTC).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dashmap::mapref::entry::Entry;

use crate::conference::Service;
use crate::config::EngineConfig;
use crate::credits::{CreditAccount, Money, SpendLedger};
use crate::dialplan::Normalized;
use crate::directory::{Snapshot, User};
use crate::limits::{Gate, Passed, TenantUsage, UserUsage};
use crate::numbering::{Destination, NumberError, NumberType, NumberingPlan, Region};
use crate::policy::{evaluate, Basis, Decision, Outcome, Reason, Route, Rule, Verdict};
use crate::pools::{MonthKey, PoolStatus, PoolTable};
use crate::reservations::{replay, CallError, CallState, Funding, Grant, Reservations, Settlement};
use crate::restore::StoredCall;
use crate::sequence::Sequence;
use crate::shares::{Lack, ShareOf};

/// One INVITE, as the daemon parsed it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The SIP Call-ID: the key of the call's reservation from now on (`settle`, `extend`,
    /// `release` name it).
    pub call_id: &'a str,
    /// `P-Asserted-Identity` or `From` URI (or its user part): a UPN or an E.164 line URI.
    pub caller: &'a str,
    /// The Request-URI user part.
    pub dialed: &'a str,
}

/// What is live: swapped as one, so a reader sees a snapshot and the pool table built for it.
struct Live {
    snap: Arc<Snapshot>,
    pools: Arc<PoolTable>,
    /// Credit accounts by tenant index of `snap`.
    accounts: Vec<Arc<CreditAccount>>,
    /// Live counts by user index of `snap` ([`crate::limits`]).
    users: Vec<Arc<UserUsage>>,
    /// Live counts by tenant index of `snap`.
    tenants: Vec<Arc<TenantUsage>>,
}

/// The decision core: one per daemon, shared by every thread (`&self` everywhere).
///
/// Holds the live [`Snapshot`] and this month's pools behind `arc-swap` (readers never wait on
/// a reload), the credit balances, and the in-flight reservations by Call-ID. It does no I/O:
/// every method that depends on time takes `now`, unix seconds UTC.
pub struct Engine {
    numbering: Arc<NumberingPlan>,
    /// `[grants]`, `[routes]` and `[emergency]`, swapped whole by [`Engine::reconfigure`]: a
    /// reader loads them once per use and never waits.
    config: ArcSwap<EngineConfig>,
    /// Whether pools and balances are shares of a store ([`EngineConfig::shares`]): fixed for
    /// the engine's life, whatever a reconfiguration says.
    pub(crate) shared: bool,
    live: ArcSwap<Live>,
    reservations: Reservations,
    spend: SpendLedger,
    /// Serializes writers of `live` (reload, month rollover). Readers never take it.
    writer: Mutex<()>,
    /// The [`Grant::seq`]s. They start at the wall clock in microseconds, so they keep
    /// growing across restarts (a call admitted every microsecond would be needed to catch up
    /// with the clock), and [`Engine::seq_floor`] lifts them above what the ledger holds
    /// should the clock have gone back.
    seq: Sequence,
}

/// The longest outside-line (access) prefix a dial plan may put before an emergency number:
/// "up to four characters" (Teams' former `ExternalAccessPrefix`, teams-pstn-features §2.3).
const ACCESS_PREFIX_MAX: usize = 4;

/// Whether `decide_classified` reserves.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'a> {
    /// `tollgate decide`: reserves nothing; `max_duration` is what would be granted now.
    DryRun,
    /// Reserve for this Call-ID.
    Reserve(&'a str),
}

/// How a call ends when this node ends it from its stored row ([`Engine::end_stored`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `POST /v1/calls/{id}/end` with the call's billable seconds.
    Settled {
        /// As reported by the proxy.
        billable_seconds: u64,
    },
    /// `POST /v1/calls/{id}/release`: never connected, nothing charged.
    Released,
}

/// A further grant for an admitted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Seconds added by this grant (0 when the call is already at `max_call_seconds`).
    pub granted_seconds: u64,
    /// The call's new maximum duration (all grants).
    pub max_duration: u64,
    /// When the reservation now settles as fully used if never reported.
    pub expires_at: u64,
}

impl Engine {
    /// An engine over `snap` for the month of `now`.
    pub fn new(
        numbering: Arc<NumberingPlan>,
        config: EngineConfig,
        snap: Snapshot,
        now: u64,
    ) -> Engine {
        let reservations = Reservations::sized_for(snap.users.len());
        let live = build_live(snap, MonthKey::of(now), None, config.shares);
        let spend = SpendLedger::new(config.shares);
        Engine {
            numbering,
            shared: config.shares,
            config: ArcSwap::from_pointee(config),
            live: ArcSwap::from_pointee(live),
            reservations,
            spend,
            writer: Mutex::new(()),
            seq: Sequence::new(now.saturating_mul(1_000_000)),
        }
    }

    /// Makes every [`Grant::seq`] handed out from now on at least `next` (start-up, before
    /// traffic: one past the highest sequence number the ledger holds).
    pub fn seq_floor(&self, next: u64) {
        self.seq.floor(next);
    }

    /// The settings in effect.
    pub fn config(&self) -> Arc<EngineConfig> {
        self.config.load_full()
    }

    /// Puts new `[grants]`, `[routes]` and `[emergency]` settings in effect (a reload). They
    /// apply to what happens from now on: admissions and extensions are sized by the new
    /// grants, 302s name the new routes, settlements round to the new billing increment. A
    /// reservation already made keeps what it holds and its expiry. `shares` cannot change
    /// (it is bound to the store the daemon started with) and is kept as it was.
    pub fn reconfigure(&self, config: EngineConfig) {
        self.config.store(Arc::new(EngineConfig {
            shares: self.shared,
            ..config
        }));
    }

    /// The numbering plan decisions classify with.
    pub fn numbering(&self) -> &NumberingPlan {
        &self.numbering
    }

    /// The live snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.live.load().snap)
    }

    /// Swaps in a new snapshot built off to the side. Pools that still exist keep their live
    /// counts (with the new capacity); credit balances move by the change of the configured
    /// figure. Readers never wait; in-flight reservations settle on the counters they took.
    pub fn reload(&self, snap: Snapshot) {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.live.load();
        let live = build_live(snap, cur.pools.month, Some(&cur), self.shared);
        let gained = tenant_wide_gained(&cur, &live);
        drop(cur);
        let old = self.live.swap(Arc::new(live));
        // Free the old snapshot here, not in whichever reader lets go of it last: wait (briefly)
        // for in-flight decisions to finish with it.
        for _ in 0..10_000 {
            if Arc::strong_count(&old) == 1 {
                break;
            }
            std::thread::yield_now();
        }
        drop(old);
        if !gained.is_empty() {
            self.count_tenant_wide(&gained);
        }
    }

    /// A reload that gives a tenant a tenant-wide limit (`concurrent_calls`,
    /// `calls_per_minute`) it did not have: its counts were not kept until now
    /// ([`crate::limits`] keeps them only while such a limit is set), so the calls still held
    /// in memory are counted in now (live ones; those admitted within the minute), and their
    /// holds say so, so that their ends take them off again. Decisions in flight on the old
    /// snapshot are over by then (`reload` waits for them); a call admitted in that instant by
    /// a reader still on it is the one that can be missed.
    fn count_tenant_wide(&self, wanted: &[(Arc<TenantUsage>, bool, bool)]) {
        for mut r in self.reservations.map.iter_mut() {
            let open = r.state == CallState::Reserved;
            let at = r.grant.started_at;
            let Some(h) = r.grant.hold.as_mut() else {
                continue;
            };
            let Some((_, concurrent, rate)) = wanted
                .iter()
                .find(|(u, _, _)| Arc::ptr_eq(u, &h.user.tenant))
            else {
                continue;
            };
            h.count_in_tenant(*concurrent && open, *rate, at);
        }
    }

    /// The live table, rolled over to the month of `now` if that month has begun (pools reset
    /// at 00:00 UTC on the 1st). Never rolls back.
    fn live_for(&self, now: u64) -> arc_swap::Guard<Arc<Live>> {
        let g = self.live.load();
        // Within the table's month (the common case) the date conversion is not needed.
        if now < g.pools.ends_at() {
            return g;
        }
        let month = MonthKey::of(now);
        if month <= g.pools.month {
            return g;
        }
        drop(g);
        {
            let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let cur = self.live.load();
            if month > cur.pools.month {
                let live = Live {
                    snap: Arc::clone(&cur.snap),
                    pools: Arc::new(PoolTable::build(month, &cur.snap.pools, None, self.shared)),
                    accounts: cur.accounts.clone(),
                    users: cur.users.clone(),
                    tenants: cur.tenants.clone(),
                };
                self.live.store(Arc::new(live));
            }
        }
        self.live.load()
    }

    /// The month of `now` with its live counters and credit accounts (for [`Engine::restore`]).
    pub(crate) fn live_parts(
        &self,
        now: u64,
    ) -> (
        MonthKey,
        Vec<Arc<crate::pools::PoolCounter>>,
        Vec<Arc<CreditAccount>>,
    ) {
        let l = self.live_for(now);
        (l.pools.month, l.pools.counters.clone(), l.accounts.clone())
    }

    /// The hold a stored call of `user` in `tenant` had (for [`Engine::restore`]): its user's
    /// and tenant's live counts, when both are in the directory and the call is one limits
    /// count (not emergency, not internal).
    pub(crate) fn hold_of(
        &self,
        basis: Basis,
        user: &str,
        tenant: &str,
    ) -> Option<crate::limits::Hold> {
        if matches!(basis, Basis::Emergency | Basis::Internal) {
            return None;
        }
        let live = self.live.load();
        let (ix, u) = live.snap.lookup(user)?;
        let usage = live.users.get(ix as usize)?;
        let limits = &live.snap.tenant(u.tenant)?.limits;
        (*usage.tenant.tenant == *tenant).then(|| crate::limits::Hold {
            user: Arc::clone(usage),
            tenant_live: limits.concurrent_calls.is_some(),
            tenant_rate: limits.calls_per_minute.is_some(),
            // A restored call is never aborted: its velocity windows need no undoing.
            velocity: 0,
        })
    }

    pub(crate) fn spend_ledger(&self) -> &SpendLedger {
        &self.spend
    }

    /// The month the pools currently count (rolled over on the first decision of a new month).
    pub fn month(&self, now: u64) -> MonthKey {
        self.live_for(now).pools.month
    }

    /// The pools of the current month.
    pub fn pools(&self, now: u64) -> Vec<PoolStatus> {
        self.live_for(now).pools.statuses()
    }

    /// A tenant's live credits balance.
    pub fn credits_balance(&self, tenant: &str) -> Option<Money> {
        let l = self.live.load();
        let i = l.snap.tenants.iter().position(|t| &*t.id == tenant)?;
        l.accounts.get(i).map(|a| a.balance())
    }

    /// Every tenant's credits as (id, live balance, configured figure), read from one
    /// directory version so the two figures agree across a reload. One pass over the tenants,
    /// for callers that look at all of them each second (the usage thresholds), where
    /// [`Engine::credits_balance`] per tenant would be quadratic.
    pub fn credits_balances(&self) -> Vec<(Arc<str>, Money, Money)> {
        let l = self.live.load();
        l.snap
            .tenants
            .iter()
            .zip(l.accounts.iter())
            .map(|(t, a)| (Arc::clone(&t.id), a.balance(), t.credits))
            .collect()
    }

    /// Each user's credits spending of the month of `now` (settled calls and the reservations
    /// of calls in progress, which count against `user_spend_limit` already), with the user's
    /// tenant, for reports (`GET /v1/tenants/{id}`, metrics). Users no longer in the directory
    /// are left out. With several nodes, this node's own figures. Reads only.
    pub fn user_spend(&self, now: u64) -> Vec<crate::credits::UserSpend> {
        let l = self.live_for(now);
        self.spend
            .of_month(l.pools.month)
            .into_iter()
            .filter_map(|(user, spent)| {
                let (_, u) = l.snap.lookup(&user)?;
                let tenant = Arc::clone(&l.snap.tenant(u.tenant)?.id);
                Some(crate::credits::UserSpend {
                    tenant,
                    user,
                    spent,
                })
            })
            .collect()
    }

    /// Decides and, on admit, reserves (DESIGN §2 step 6). A Call-ID that already holds a
    /// reservation gets the same decision again and reserves nothing new.
    ///
    /// The caller persists [`Decision::grant`] before the 302 leaves (DESIGN §6), or calls
    /// [`Engine::abort`] if it cannot.
    ///
    /// # Examples
    ///
    /// A one-user directory, parsed from inline text (the daemon reads the files of
    /// `[directory].path` into [`crate::load::DirectoryFiles`] and calls
    /// [`Snapshot::from_files`] instead):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate_engine::load::{self, LoadErrors, Records};
    /// use tollgate_engine::numbering::NumberingPlan;
    /// use tollgate_engine::{Basis, Engine, EngineConfig, Reason, Request, Snapshot};
    ///
    /// let mut errors = LoadErrors::default();
    /// let records = Records {
    ///     tenants: load::parse_tenants(
    ///         "[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    ///         &mut errors,
    ///     ),
    ///     users: load::parse_users(
    ///         "tenant,user,line_uri,usage_location,licenses\n\
    ///          contoso,alice@contoso.com,+14255550101,US,MCOEV;MCOPSTN1\n",
    ///         &mut errors,
    ///     ),
    ///     catalog: load::parse_catalog(
    ///         "[[sku]]\nname = \"MCOEV\"\nphone_system = true\n\
    ///          [[sku]]\nname = \"MCOPSTN1\"\nplan = \"domestic\"\n\
    ///          minutes = { default = 3000 }\n",
    ///         &mut errors,
    ///     ),
    ///     rates: load::parse_rates("destination,number_type,price_per_minute\n", &mut errors),
    /// };
    /// assert!(errors.is_empty(), "{errors}");
    /// let snapshot = Snapshot::build(records)?;
    /// let plan = Arc::new(NumberingPlan::builtin()?);
    /// let now = 1_795_000_000; // unix seconds, UTC: the engine reads no clock
    /// let engine = Engine::new(plan, EngineConfig::default(), snapshot, now);
    ///
    /// // A domestic call by UPN: rule 9, from the US pool of MCOPSTN1.
    /// let call = Request {
    ///     call_id: "a84b4c76e66710",
    ///     caller: "sip:alice@contoso.com",
    ///     dialed: "+1 212 555 0100",
    /// };
    /// let decision = engine.authorize(&call, now);
    /// assert_eq!(decision.basis(), Some(Basis::DomesticPool));
    /// assert_eq!(decision.max_duration, Some(1800)); // [grants].grant_seconds
    /// assert_eq!(decision.destination.unwrap().e164(), "+12125550100");
    ///
    /// // The same caller by line URI, abroad: a Domestic plan has no international pool.
    /// let abroad = Request { call_id: "b2", caller: "+14255550101", dialed: "+442079460000" };
    /// assert_eq!(engine.authorize(&abroad, now).reason(), Some(Reason::InternationalNotInPlan));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authorize(&self, req: &Request<'_>, now: u64) -> Decision {
        self.authorize_as(req, Service::Call, now)
    }

    /// [`Engine::authorize`] for an INVITE that asks for `service` (`X-Tollgate-Service`): a
    /// meeting's dial-out follows the rules of [`crate::conference`].
    pub fn authorize_as(&self, req: &Request<'_>, service: Service, now: u64) -> Decision {
        if req.call_id.is_empty() {
            return Decision::reject(Reason::BadRequest, Rule::Request, None);
        }
        self.decide_with(
            req.caller,
            req.dialed,
            service,
            now,
            Mode::Reserve(req.call_id),
        )
    }

    /// A dry run: the decision `authorize` would take now, reserving nothing (`tollgate decide`).
    pub fn decide(&self, caller: &str, dialed: &str, now: u64) -> Decision {
        self.decide_as(caller, dialed, Service::Call, now)
    }

    /// [`Engine::decide`] for `service`.
    pub fn decide_as(&self, caller: &str, dialed: &str, service: Service, now: u64) -> Decision {
        self.decide_with(caller, dialed, service, now, Mode::DryRun)
    }

    fn decide_with(
        &self,
        caller: &str,
        dialed: &str,
        service: Service,
        now: u64,
        mode: Mode<'_>,
    ) -> Decision {
        let live = self.live_for(now);
        let who = live.snap.lookup(caller);
        let user = who.map(|(_, u)| u);
        let (dest, normalized) = self.destination(&live.snap, user, caller, dialed);
        let mut d = self.decide_in(&live, who, dialed, dest, service, now, mode);
        d.dial_plan = normalized.map(Arc::new);
        d
    }

    /// `dialed` classified for the caller, after their dial plan ([`crate::dialplan`]): an
    /// emergency number as dialed stays one whatever a rule would make of it; else the first
    /// rule that matches rewrites it (and what it makes is classified, an emergency number
    /// included); else it is classified as dialed.
    fn destination(
        &self,
        snap: &Snapshot,
        user: Option<&User>,
        caller: &str,
        dialed: &str,
    ) -> (Result<Destination, NumberError>, Option<Normalized>) {
        let dest = self.classify_for(user, caller, dialed);
        if matches!(&dest, Ok(d) if d.number_type == NumberType::Emergency) {
            return (dest, None);
        }
        let Some(plan) = user.and_then(|u| u.dial_plan) else {
            return (dest, None);
        };
        // Any rule that makes an emergency number of a short string wins, whatever the order.
        let digits = dialed.bytes().filter(u8::is_ascii_digit).count();
        if digits <= self.numbering.longest_emergency_number() + ACCESS_PREFIX_MAX {
            let emergency = snap.dial_plans.each_rewrite(plan, dialed, |n| {
                let d = self.classify_for(user, caller, &n.number).ok()?;
                (d.number_type == NumberType::Emergency).then_some((Ok(d), Some(n)))
            });
            if let Some(found) = emergency {
                return found;
            }
        }
        match snap.dial_plans.normalize(plan, dialed) {
            Some(n) => (self.classify_for(user, caller, &n.number), Some(n)),
            None => (dest, None),
        }
    }

    /// Whether an INVITE may be refused unexamined while the daemon sheds load (`503
    /// overloaded`, DESIGN §7): every call but an emergency call, which always goes through
    /// (rule 1). A number with more digits than any region's longest emergency number is
    /// sheddable at a glance (the common case, and the cheap one); a shorter one is classified
    /// for the caller exactly as [`Engine::authorize`] would.
    pub fn may_shed(&self, caller: &str, dialed: &str, now: u64) -> bool {
        let live = self.live_for(now);
        // A dial plan may make an emergency number of a longer string (`9911`): with plans,
        // every number is looked at.
        let digits = dialed.bytes().filter(u8::is_ascii_digit).count();
        if digits > self.numbering.longest_emergency_number()
            && live.snap.dial_plans.plans().is_empty()
        {
            return true;
        }
        let user = live.snap.lookup(caller).map(|(_, u)| u);
        !matches!(
            self.destination(&live.snap, user, caller, dialed).0,
            Ok(d) if d.number_type == NumberType::Emergency
        )
    }

    /// `dialed` classified for the caller: in the region of their directory entry, else
    /// (rule 1 before rule 2, and independent of the directory being right) as an emergency
    /// number of the region their own number or the default places them in, or nothing.
    fn classify_for(
        &self,
        user: Option<&User>,
        caller: &str,
        dialed: &str,
    ) -> Result<Destination, NumberError> {
        match user {
            Some(u) if self.numbering.has_region(u.usage_location) => {
                self.numbering.classify(dialed, u.usage_location)
            }
            _ => self.emergency_only(dialed, self.fallback_region(caller)),
        }
    }

    /// The region of a caller the directory cannot place (not in it, or a usage location the
    /// plan cannot read): the region of the caller's own E.164 number (`+44…` → GB), else
    /// `[emergency].default_region`. See [`crate::config::Emergency`] for the order.
    fn fallback_region(&self, caller: &str) -> Option<Region> {
        let number = ["tel:", "sip:", "sips:"]
            .iter()
            .find_map(|p| caller.strip_prefix(p))
            .unwrap_or(caller);
        let number = number.split([';', '@']).next().unwrap_or(number);
        number
            .starts_with('+')
            .then(|| self.numbering.classify(number, Region::NON_GEO).ok())
            .flatten()
            .map(|d| d.region)
            .filter(|r| *r != Region::NON_GEO)
            .or_else(|| self.config.load().emergency.default_region())
    }

    /// `dialed` classified for `region` (without one, only 112 and 911, which the plan knows
    /// everywhere) when it is an emergency number; anything else is refused as unreadable,
    /// since only rule 1 can admit a caller the directory cannot place.
    fn emergency_only(
        &self,
        dialed: &str,
        region: Option<Region>,
    ) -> Result<Destination, NumberError> {
        self.numbering
            .classify(dialed, region.unwrap_or(Region::NON_GEO))
            .and_then(|d| match d.number_type {
                NumberType::Emergency => Ok(d),
                _ => Err(NumberError::Invalid(
                    crate::numbering::Why::UnknownCallerRegion,
                )),
            })
    }

    /// The rules for an already-classified destination (the seam the unit tests use).
    pub fn decide_classified(
        &self,
        caller: &str,
        dest: Result<Destination, NumberError>,
        now: u64,
        mode: Mode<'_>,
    ) -> Decision {
        self.decide_classified_as(caller, dest, Service::Call, now, mode)
    }

    /// [`Engine::decide_classified`] for `service`.
    pub fn decide_classified_as(
        &self,
        caller: &str,
        dest: Result<Destination, NumberError>,
        service: Service,
        now: u64,
        mode: Mode<'_>,
    ) -> Decision {
        let live = self.live_for(now);
        let who = live.snap.lookup(caller);
        let dialed = dest.as_ref().map_or("", |d| d.e164()).to_string();
        self.decide_in(&live, who, &dialed, dest, service, now, mode)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_in(
        &self,
        live: &Live,
        who: Option<(u32, &User)>,
        dialed: &str,
        dest: Result<Destination, NumberError>,
        service: Service,
        now: u64,
        mode: Mode<'_>,
    ) -> Decision {
        let user = who.map(|(_, u)| u);
        let config = self.config.load();
        let shadow = config.enforcement.shadow;
        let mut shadowed = None;
        let verdict = evaluate(&live.snap, user, &dest, service, shadow, &mut shadowed);
        let destination = dest.ok();
        let (outcome, rule, route) = match verdict {
            Verdict::Final {
                outcome: Outcome::Reject(r),
                rule,
                ..
            } => {
                let mut d = Decision::reject(r, rule, destination);
                // Which high-risk prefix matched, for `decide` and the log.
                if let (Reason::HighRiskDestination, Some(x)) = (r, &destination) {
                    let prefix = live.snap.catalog.high_risk_prefix(x.e164_bytes());
                    d.limit = prefix.map(|p| Box::new(crate::limits::LimitHit::high_risk(p)));
                }
                return d;
            }
            Verdict::Final {
                outcome,
                rule,
                route,
            } => (outcome, rule, route),
            fund @ Verdict::Fund { .. } => {
                let (Some((ix, user)), Some(d)) = (who, destination) else {
                    return Decision::reject(Reason::BadRequest, Rule::Request, destination);
                };
                let gate = self.gate(live, ix, user, shadow);
                return self.fund(
                    live, &config, user, gate, shadowed, dialed, d, fund, now, mode,
                );
            }
        };
        // Admitted without funding: emergency, Direct Routing, free, internal.
        let grants = &config.grants;
        let max = grants.max_call_seconds;
        let Outcome::Admit(basis) = outcome else {
            return Decision::reject(Reason::BadRequest, Rule::Request, destination);
        };
        let tenant = user
            .and_then(|u| live.snap.tenant(u.tenant))
            .map(|t| Arc::clone(&t.id))
            .unwrap_or_else(|| Arc::from(""));
        let mut decision = Decision {
            outcome,
            rule,
            destination,
            route,
            max_duration: Some(max),
            grant: None,
            lacking: None,
            dial_plan: None,
            shadow: shadowed,
            limit: None,
            warning: None,
        };
        // Emergency calls and calls inside the tenant are never limited (nor counted).
        let gate = match (basis, who, destination) {
            (Basis::Emergency | Basis::Internal, _, _) => None,
            (_, Some((ix, u)), Some(_)) => self.gate(live, ix, u, shadow),
            _ => None,
        };
        let slot = match mode {
            Mode::Reserve(call_id) => match self.reservations.map.entry(call_id.to_string()) {
                Entry::Occupied(e) => return replay(e.get(), destination),
                Entry::Vacant(v) => Some(v),
            },
            Mode::DryRun => None,
        };
        let passed = match (&gate, destination) {
            (Some(g), Some(d)) => match g.pass(&d, now, slot.is_some()) {
                Ok(p) => p,
                Err(hit) => return Decision::limited(hit, Rule::Limits, destination),
            },
            _ => Passed::default(),
        };
        decision.note(passed.shadow, passed.warning);
        let Some(slot) = slot else { return decision };
        let grant = Grant {
            seq: 0, // numbered as it is recorded
            basis,
            tenant,
            user: user.map_or_else(|| Arc::from(""), |u| Arc::clone(&u.upn)),
            dialed: dialed.into(),
            destination,
            route: decision.route.clone(),
            funding: Funding::None,
            reserved_seconds: max,
            reserved_money: Money::ZERO,
            started_at: now,
            expires_at: now + max + grants.settle_grace_seconds,
            hold: passed.hold,
        };
        decision.grant = Some(grant);
        crate::reservations::reserved(slot, decision, self.seq.next())
    }

    /// The limits a call of `user` (index `ix` of the live snapshot) is judged against.
    fn gate<'a>(
        &self,
        live: &'a Live,
        ix: u32,
        user: &User,
        shadow: crate::limits::ReasonSet,
    ) -> Option<Gate<'a>> {
        let t = live.snap.tenant(user.tenant)?;
        let usage = live.users.get(ix as usize)?;
        Some(Gate {
            user: usage,
            limits: &t.limits,
            user_concurrent: match user.concurrent_calls {
                Some(0) => None,
                Some(n) => Some(n),
                None => t.limits.user_concurrent_calls,
            },
            shadow,
        })
    }

    /// `POST /v1/calls/{id}/extend`: another grant for a call still reserved, up to
    /// `max_call_seconds` in all, from the same pool or balance.
    pub fn extend(&self, call_id: &str, now: u64) -> Result<Extension, CallError> {
        let config = self.config.load();
        let g = &config.grants;
        let inc = g.billing_increment_seconds;
        let mut r = self
            .reservations
            .map
            .get_mut(call_id)
            .ok_or(CallError::UnknownCall)?;
        if r.state != CallState::Reserved {
            return Err(CallError::NotActive(r.state));
        }
        let want = g.extension(r.grant.reserved_seconds);
        let granted = if want == 0 {
            0
        } else {
            match &r.grant.funding {
                Funding::None => 0,
                Funding::Pool(c) => c.reserve(want, inc).map_err(|lack| match lack {
                    Lack::Exhausted => CallError::Exhausted(Reason::PoolExhausted),
                    Lack::Short => CallError::ShareShort,
                })?,
                Funding::Credits {
                    account,
                    per_minute,
                    spend,
                } => {
                    let secs = account.affordable_seconds(*per_minute, want, inc);
                    let cost = Money::for_seconds(*per_minute, secs);
                    if secs < inc.min(want) {
                        return Err(CallError::Exhausted(Reason::CreditsExhausted));
                    }
                    let live = self.live.load();
                    let tenant = live.snap.tenants.iter().find(|t| t.id == r.grant.tenant);
                    let limit = tenant.and_then(|t| t.user_spend_limit);
                    // The day the call started pays for all of it (its end gives back there).
                    let shadowed = config
                        .enforcement
                        .shadow
                        .contains(Reason::DailySpendLimitReached);
                    let daily = r.grant.hold.as_ref().map(|h| funding::Daily {
                        usage: h.tenant(),
                        day: crate::limits::day_of(r.grant.started_at),
                        cap: tenant
                            .and_then(|t| t.limits.daily_spend)
                            .filter(|_| !shadowed),
                    });
                    self.take_credits(account, spend, limit, daily, cost)
                        .map_err(|e| e.map_or(CallError::ShareShort, CallError::Exhausted))?;
                    r.grant.reserved_money.0 += cost.0;
                    secs
                }
            }
        };
        r.grant.reserved_seconds += granted;
        r.grant.expires_at = r.grant.expires_at.max(now) + granted;
        r.version += 1;
        Ok(Extension {
            granted_seconds: granted,
            max_duration: r.grant.reserved_seconds,
            expires_at: r.grant.expires_at,
        })
    }

    /// `POST /v1/calls/{id}/end`: usage rounds up to the billing increment; the rest goes back.
    /// Settling again returns the same answer with `changed: false`.
    ///
    /// # Examples
    ///
    /// With `engine` built as in [`Engine::authorize`]'s example:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tollgate_engine::load::{self, LoadErrors, Records};
    /// # use tollgate_engine::numbering::NumberingPlan;
    /// # use tollgate_engine::{CallState, Engine, EngineConfig, Request, Snapshot};
    /// # let mut errors = LoadErrors::default();
    /// # let records = Records {
    /// #     tenants: load::parse_tenants(
    /// #         "[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    /// #         &mut errors,
    /// #     ),
    /// #     users: load::parse_users(
    /// #         "tenant,user,usage_location,licenses\n\
    /// #          contoso,alice@contoso.com,US,MCOEV;MCOPSTN1\n",
    /// #         &mut errors,
    /// #     ),
    /// #     catalog: load::parse_catalog(
    /// #         "[[sku]]\nname = \"MCOEV\"\nphone_system = true\n\
    /// #          [[sku]]\nname = \"MCOPSTN1\"\nplan = \"domestic\"\n\
    /// #          minutes = { default = 3000 }\n",
    /// #         &mut errors,
    /// #     ),
    /// #     rates: Vec::new(),
    /// # };
    /// # let plan = Arc::new(NumberingPlan::builtin()?);
    /// # let now = 1_795_000_000;
    /// # let engine = Engine::new(plan, EngineConfig::default(), Snapshot::build(records)?, now);
    /// let call = Request { call_id: "c1", caller: "alice@contoso.com", dialed: "+12125550100" };
    /// assert!(engine.authorize(&call, now).is_admit());
    ///
    /// // The proxy reports 61 s: billed as two whole minutes, the rest of the grant goes back.
    /// let s = engine.settle("c1", 61, now + 70)?;
    /// assert_eq!((s.state, s.charged_seconds, s.changed), (CallState::Settled, 120, true));
    ///
    /// // A repeated report is harmless: same figures, nothing charged twice.
    /// let again = engine.settle("c1", 61, now + 75)?;
    /// assert_eq!((again.charged_seconds, again.changed), (120, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn settle(
        &self,
        call_id: &str,
        billable_seconds: u64,
        now: u64,
    ) -> Result<Settlement, CallError> {
        let config = self.config.load();
        self.reservations.settle(
            call_id,
            billable_seconds,
            now,
            |s| config.round_up(s),
            &self.spend,
        )
    }

    /// Settling a call memory no longer holds (it ended long ago), from its stored row
    /// (`stored`, as the ledger keeps it): an ended call answers its figures again with
    /// `changed: false`, as settling twice always does; a row still `reserved` is a call this
    /// engine does not know ([`CallError::UnknownCall`]): nothing changes either way.
    pub fn settle_stored(&self, stored: StoredCall) -> Result<Settlement, CallError> {
        if stored.state == CallState::Reserved {
            return Err(CallError::UnknownCall);
        }
        Ok(stored.settlement(false))
    }

    /// CANCEL: the whole reservation goes back.
    pub fn release(&self, call_id: &str, now: u64) -> Result<Settlement, CallError> {
        self.reservations.release(call_id, now, &self.spend)
    }

    /// Undoes the admission of `call_id` because it could not be persisted (DESIGN §6: no 302
    /// leaves before its reservation is committed): the reservation goes back, the call is
    /// forgotten. Returns whether there was such a reservation.
    pub fn abort(&self, call_id: &str) -> bool {
        self.reservations.abort(call_id, &self.spend)
    }

    /// Settles as fully used every reservation past its grant + grace.
    pub fn expire(&self, now: u64) -> Vec<Settlement> {
        self.reservations.expire(now, &self.spend)
    }

    /// With several nodes, every account this node holds a share of now: the pools of the
    /// month of `now` and the tenants' credit balances (see [`crate::shares`]). Empty for a
    /// single node.
    pub fn shares(&self, now: u64) -> Vec<ShareOf> {
        if !self.shared {
            return Vec::new();
        }
        let live = self.live_for(now);
        let pools = live
            .pools
            .counters
            .iter()
            .map(|c| ShareOf::Pool(Arc::clone(c)));
        let credits = live
            .accounts
            .iter()
            .map(|a| ShareOf::Credits(Arc::clone(a)));
        let spend = self
            .spend
            .accounts(live.pools.month)
            .into_iter()
            .map(ShareOf::Spend);
        pools.chain(credits).chain(spend).collect()
    }

    /// The in-flight calls, for the daemon to read, persist and forget.
    pub fn reservations(&self) -> &Reservations {
        &self.reservations
    }

    /// The route host of an admitted call, for the 302 Contact.
    pub fn route_host(&self, route: &Route) -> String {
        let mut host = String::new();
        self.push_route_host(route, &mut host);
        host
    }

    /// [`Engine::route_host`] appended to `out` (the 302's Contact is built without
    /// allocating).
    pub fn push_route_host(&self, route: &Route, out: &mut String) {
        let config = self.config.load();
        match route {
            Route::Emergency => out.push_str(&config.routes.emergency),
            Route::Internal => out.push_str(&config.routes.internal),
            Route::CallingPlan(r) => config.routes.push_calling_plan_host(*r, out),
            Route::Direct(gw) => out.push_str(gw),
            // The first Contact's; the 302 lists them all (`crate::routing::PolicyRoute::contacts`).
            Route::Policy(p) => out.push_str(p.first_host()),
        }
    }
}

/// The tenants of `new` that have a tenant-wide limit `old` did not give them: (their counts,
/// `concurrent_calls` newly set, `calls_per_minute` newly set).
fn tenant_wide_gained(old: &Live, new: &Live) -> Vec<(Arc<TenantUsage>, bool, bool)> {
    let before: std::collections::HashMap<&str, &crate::limits::Limits> = old
        .snap
        .tenants
        .iter()
        .map(|t| (&*t.id, &t.limits))
        .collect();
    new.snap
        .tenants
        .iter()
        .zip(&new.tenants)
        .filter_map(|(t, u)| {
            let was = before.get(&*t.id);
            let live = t.limits.concurrent_calls.is_some()
                && was.is_none_or(|l| l.concurrent_calls.is_none());
            let rate = t.limits.calls_per_minute.is_some()
                && was.is_none_or(|l| l.calls_per_minute.is_none());
            (live || rate).then(|| (Arc::clone(u), live, rate))
        })
        .collect()
}

fn build_live(snap: Snapshot, month: MonthKey, prev: Option<&Live>, shared: bool) -> Live {
    let pools = PoolTable::build(month, &snap.pools, prev.map(|p| &*p.pools), shared);
    let old: std::collections::HashMap<&str, &Arc<CreditAccount>> = prev
        .map(|p| p.accounts.iter().map(|a| (&*a.tenant, a)).collect())
        .unwrap_or_default();
    let accounts = snap
        .tenants
        .iter()
        .map(|t| {
            let old = old.get(&*t.id);
            match old {
                Some(a) => {
                    a.reconfigure(t.credits);
                    Arc::clone(a)
                }
                None => Arc::new(CreditAccount::new(Arc::clone(&t.id), t.credits, shared)),
            }
        })
        .collect();
    let (users, tenants) = usage_for(&snap, prev);
    Live {
        snap: Arc::new(snap),
        pools: Arc::new(pools),
        accounts,
        users,
        tenants,
    }
}

/// The live counts of `snap`'s users and tenants: those of the same UPN or tenant id in
/// `prev` carry over (their calls hold them), the rest start at zero.
fn usage_for(snap: &Snapshot, prev: Option<&Live>) -> (Vec<Arc<UserUsage>>, Vec<Arc<TenantUsage>>) {
    use std::collections::HashMap;
    let mut old_users: HashMap<&str, &Arc<UserUsage>> = HashMap::new();
    let mut old_tenants: HashMap<&str, &Arc<TenantUsage>> = HashMap::new();
    if let Some(p) = prev {
        old_users.extend(p.snap.users.iter().zip(&p.users).map(|(u, x)| (&*u.upn, x)));
        old_tenants.extend(p.tenants.iter().map(|t| (&*t.tenant, t)));
    }
    let tenants: Vec<Arc<TenantUsage>> = snap
        .tenants
        .iter()
        .map(|t| match old_tenants.get(&*t.id) {
            Some(x) => {
                x.set_velocity(&t.limits.velocity);
                Arc::clone(x)
            }
            None => Arc::new(TenantUsage::new(Arc::clone(&t.id), &t.limits.velocity)),
        })
        .collect();
    let users = snap
        .users
        .iter()
        .map(|u| {
            let tenant = &tenants[u.tenant as usize];
            match old_users.get(&*u.upn) {
                // Moved to another tenant: counted afresh there.
                Some(x) if Arc::ptr_eq(&x.tenant, tenant) => Arc::clone(x),
                _ => Arc::new(UserUsage::new(Arc::clone(tenant))),
            }
        })
        .collect();
    (users, tenants)
}

#[path = "funding.rs"]
mod funding;

#[path = "elsewhere.rs"]
mod elsewhere;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "engine_reservation_tests.rs"]
mod reservation_tests;

#[cfg(test)]
#[path = "engine_share_tests.rs"]
mod share_tests;

#[cfg(test)]
#[path = "engine_conference_tests.rs"]
mod conference_tests;

#[cfg(test)]
#[path = "engine_dialplan_tests.rs"]
mod dialplan_tests;

#[cfg(test)]
#[path = "engine_catalog_tests.rs"]
mod catalog_tests;

#[cfg(test)]
#[path = "engine_limits_tests.rs"]
mod limits_tests;
