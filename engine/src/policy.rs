//! The ten rules of DESIGN §4 and the vocabulary of their answers: [`Reason`] (DESIGN §2 table),
//! [`Basis`], [`Rule`] and [`Decision`].
//!
//! An internal, pure step applies rules 1–8 and says how a call that passes them must be funded
//! (rules 9 and 10); the engine then does the funding (pool or credits reservation) and builds
//! the final [`Decision`] that [`crate::Engine::authorize`] returns.

use std::sync::Arc;

use crate::catalog::PlanKind;
use crate::conference::Service;
use crate::directory::{DialOut, Snapshot, User};
use crate::limits::{HighRisk, ReasonSet};
use crate::numbering::{Destination, NumberError, NumberType, Region};
use crate::reservations::Grant;

/// Why a call is refused. One vocabulary for SIP, logs, metrics and the CLI (DESIGN §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The INVITE came from outside `[sip].trusted_peers` (DESIGN §2 step 1). Given by the
    /// edge, never by the engine, and never shadowed.
    UntrustedPeer,
    /// The caller is neither a UPN nor a line URI of the directory (DESIGN §4 rule 2).
    UnknownCaller,
    /// The caller holds no Phone System license (MCOEV, or an E5 that includes it): rule 3;
    /// "You must first purchase a Phone System add-on license" (calling-plan-rules §6).
    NoPhoneSystem,
    /// Rule 10: no pool serves the call and the caller holds neither a calling plan nor
    /// Communications Credits.
    NoCallingPlan,
    /// Rule 5: the caller's OnlineDialOutPolicy is `…PSTNDisabled` (calling-plan-rules §7).
    PstnDisabledByPolicy,
    /// Rule 5: the policy is `…PSTNDomestic` and the destination is not domestic for the
    /// caller's usage location.
    InternationalDisabledByPolicy,
    /// Rule 10: a Domestic-plan user dialing abroad, without credits to pay for it.
    InternationalNotInPlan,
    /// Rule 6: a barred destination (premium rate, UK `449`, a non-emergency short code, a
    /// region outside the catalog's international list; calling-plan-rules §4). Also rule 10
    /// when credits would pay but no `rates.csv` row prices the destination.
    DestinationNotSupported,
    /// Rule 10: the plan has a pool for this call but it cannot cover a grant, and credits
    /// cannot step in. Also what a refused extension of a pool-funded call says.
    PoolExhausted,
    /// Rule 10: the caller holds MCOPSTNC but the tenant's balance cannot cover a grant at the
    /// destination's rate.
    CreditsExhausted,
    /// Rule 10: a credits call that would take the user past the tenant's `user_spend_limit`
    /// this month (`-CallingSpendUserLimit`, calling-plan-rules §3).
    SpendLimitReached,
    /// Rule 4: the dialed string is no number ([`NumberError::Invalid`]); SIP 404.
    InvalidNumber,
    /// Rule 4: the dialed string is cut short ([`crate::numbering::NumberError::Incomplete`]);
    /// SIP 484 so the caller may go on dialing.
    IncompleteNumber,
    /// The daemon is shedding load (DESIGN §7; see [`crate::Engine::may_shed`]): 503 with
    /// `Retry-After`. Given by the edge.
    Overloaded,
    /// The ledger or cluster store could not commit the admission (DESIGN §6): 503. Given by
    /// the edge.
    StoreUnavailable,
    /// The request itself is unusable (empty Call-ID, ...): SIP 400 ([`Rule::Request`]).
    BadRequest,
    /// Rule 7: the caller's voice routing policy has no route for the number and the caller has
    /// no Calling Plan (nor credits) to fall back to: "the call is dropped"
    /// (teams-pstn-features §2.4); SIP 404, Q.850 3 (DESIGN §2).
    NoRoute,
    /// A meeting dial-out whose organizer's OnlineDialOutPolicy is `…CPCDisabled…`
    /// ([`crate::conference`]).
    ConferenceDialoutDisabledByPolicy,
    /// The caller or their tenant holds as many live calls as `[tenant.limits]` allows
    /// (`user_concurrent_calls`, `concurrent_calls`; [`crate::limits`]). SIP 403, Q.850 34.
    CallLimitReached,
    /// The caller or their tenant was admitted as many calls in the last minute as allowed
    /// (`user_calls_per_minute`, `calls_per_minute`), or a velocity rule's `block` is reached
    /// for the destination ([`crate::limits`]). SIP 403 with `Retry-After`.
    RateLimitReached,
    /// The number starts with one of the catalog's `high_risk_prefixes` (satellite and
    /// international networks, revenue-share ranges) and the tenant does not allow them.
    HighRiskDestination,
    /// A credits call whose `rates.csv` price is above the tenant's `max_price_per_minute`.
    DestinationRateTooHigh,
    /// A credits call that would take the tenant past its `daily_spend` this UTC day.
    DailySpendLimitReached,
}

impl Reason {
    /// Every reason, in the order of the DESIGN §2 table (for metrics, which pre-register a
    /// label per reason, and tests).
    pub const ALL: [Reason; 23] = [
        Reason::UntrustedPeer,
        Reason::UnknownCaller,
        Reason::NoPhoneSystem,
        Reason::NoCallingPlan,
        Reason::PstnDisabledByPolicy,
        Reason::InternationalDisabledByPolicy,
        Reason::InternationalNotInPlan,
        Reason::DestinationNotSupported,
        Reason::PoolExhausted,
        Reason::CreditsExhausted,
        Reason::SpendLimitReached,
        Reason::InvalidNumber,
        Reason::IncompleteNumber,
        Reason::Overloaded,
        Reason::StoreUnavailable,
        Reason::BadRequest,
        Reason::NoRoute,
        Reason::ConferenceDialoutDisabledByPolicy,
        Reason::CallLimitReached,
        Reason::RateLimitReached,
        Reason::HighRiskDestination,
        Reason::DestinationRateTooHigh,
        Reason::DailySpendLimitReached,
    ];

    /// The pinned name (DESIGN §2).
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::UntrustedPeer => "untrusted_peer",
            Reason::UnknownCaller => "unknown_caller",
            Reason::NoPhoneSystem => "no_phone_system",
            Reason::NoCallingPlan => "no_calling_plan",
            Reason::PstnDisabledByPolicy => "pstn_disabled_by_policy",
            Reason::InternationalDisabledByPolicy => "international_disabled_by_policy",
            Reason::InternationalNotInPlan => "international_not_in_plan",
            Reason::DestinationNotSupported => "destination_not_supported",
            Reason::PoolExhausted => "pool_exhausted",
            Reason::CreditsExhausted => "credits_exhausted",
            Reason::SpendLimitReached => "spend_limit_reached",
            Reason::InvalidNumber => "invalid_number",
            Reason::IncompleteNumber => "incomplete_number",
            Reason::Overloaded => "overloaded",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::BadRequest => "bad_request",
            Reason::NoRoute => "no_route",
            Reason::ConferenceDialoutDisabledByPolicy => "conference_dialout_disabled_by_policy",
            Reason::CallLimitReached => "call_limit_reached",
            Reason::RateLimitReached => "rate_limit_reached",
            Reason::HighRiskDestination => "high_risk_destination",
            Reason::DestinationRateTooHigh => "destination_rate_too_high",
            Reason::DailySpendLimitReached => "daily_spend_limit_reached",
        }
    }

    /// The reason of a pinned name (`"pool_exhausted"`), e.g. for `[enforcement] shadow`.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// On what basis a call is admitted (`X-Tollgate-Basis`, DESIGN §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Basis {
    /// Rule 1: an emergency number of the caller's region, or 112/911; never charged.
    Emergency,
    /// Rule 7: a Direct Routing user, sent to their own gateway; no pool, no charge.
    DirectRouting,
    /// Rule 9: a domestic call drawn from the caller's domestic minute pool.
    DomesticPool,
    /// Rule 9: an international call drawn from an International plan's separate pool.
    InternationalPool,
    /// Rule 10: paid by the tenant's Communications Credits at the `rates.csv` price.
    Credits,
    /// Rule 8: a domestic number of a type the catalog makes free (toll-free by default).
    Free,
    /// A meeting's dial-out drawn from the tenant's Audio Conferencing pool
    /// ([`crate::conference`]).
    ConferencePool,
    /// A call to the line URI of a user of the caller's own tenant: Teams to Teams, "free"
    /// (calling-plan-rules §4); never charged, routed to `[routes].internal`.
    Internal,
}

impl Basis {
    /// Whether an admission on this basis is answered even when the ledger cannot commit it:
    /// only an emergency call, which is admitted "whatever the license, policy, pool or ledger
    /// state" (DESIGN §4 rule 1) and charges nothing that a lost row could misstate. Every other
    /// admission waits for its commit and is refused `503 store_unavailable` without it.
    pub fn answered_without_commit(self) -> bool {
        self == Basis::Emergency
    }

    /// Every basis, in a stable order (metrics labels, tests).
    pub const ALL: [Basis; 8] = [
        Basis::Emergency,
        Basis::DirectRouting,
        Basis::DomesticPool,
        Basis::InternationalPool,
        Basis::Credits,
        Basis::Free,
        Basis::ConferencePool,
        Basis::Internal,
    ];

    /// The pinned name of `X-Tollgate-Basis` (DESIGN §2): `"domestic_pool"`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            Basis::Emergency => "emergency",
            Basis::DirectRouting => "direct_routing",
            Basis::DomesticPool => "domestic_pool",
            Basis::InternationalPool => "international_pool",
            Basis::Credits => "credits",
            Basis::Free => "free",
            Basis::ConferencePool => "conference_pool",
            Basis::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Basis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule of DESIGN §4 fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// 1: emergency numbers are always admitted.
    Emergency = 1,
    /// 2: the caller must be in the directory.
    UnknownCaller = 2,
    /// 3: the caller needs Phone System.
    PhoneSystem = 3,
    /// 4: the dialed string must be a complete, valid number.
    Number = 4,
    /// 5: the PSTN axis of the caller's OnlineDialOutPolicy.
    DialOutPolicy = 5,
    /// 6: barred destinations.
    Barred = 6,
    /// 7: Direct Routing users go to their gateway.
    DirectRouting = 7,
    /// 8: domestic toll-free (or other free types) are free.
    Domestic = 8,
    /// 9: the calling plan's minute pool paid.
    Pool = 9,
    /// 10: Communications Credits paid, or the reason none of pool and credits could.
    Credits = 10,
    /// Not one of the ten: the request itself was unusable (duplicate Call-ID, ...).
    Request = 0,
    /// Not one of the ten: the Call-ID already holds an admission (a retransmitted INVITE that
    /// reached the engine), whose answer is given again; nothing new is reserved.
    Replay = 11,
    /// Not one of the ten (DESIGN §2 `internal`): the number is a line of the caller's own
    /// tenant, a Teams-to-Teams call. Decided after rules 1–4, before the PSTN rules.
    Internal = 12,
    /// Not one of the ten: the abuse controls of `[tenant.limits]` ([`crate::limits`]), judged
    /// once rules 1–8 would admit, before anything is reserved.
    Limits = 13,
}

impl Rule {
    /// The rule's number in DESIGN §4 (0 for [`Rule::Request`], 11 for [`Rule::Replay`]).
    pub fn number(&self) -> u8 {
        *self as u8
    }

    /// The rule in words, for `tollgate decide` and logs.
    pub fn describe(&self) -> &'static str {
        match self {
            Rule::Emergency => "1: emergency numbers are always admitted",
            Rule::UnknownCaller => "2: the caller is not in the directory",
            Rule::PhoneSystem => "3: the caller needs a Phone System license",
            Rule::Number => "4: the dialed number must be a complete, valid number",
            Rule::DialOutPolicy => {
                "5: the caller's dial-out policy (its CPC part for a meeting's dial-out)"
            }
            Rule::Barred => {
                "6: barred destination (premium rate, UK 449, not reachable, high risk)"
            }
            Rule::DirectRouting => {
                "7: Direct Routing users go to their gateway, or the routes of their voice routing policy"
            }
            Rule::Domestic => "8: domestic toll-free numbers are free",
            Rule::Pool => {
                "9: a minute pool (the calling plan's; the tenant's conferencing pool for a meeting's dial-out)"
            }
            Rule::Credits => "10: Communications Credits when no pool can serve (else why not)",
            Rule::Request => "0: the request itself",
            Rule::Replay => "the Call-ID was already admitted: the same answer, nothing reserved",
            Rule::Internal => "internal: a line of the caller's own tenant, free (Teams to Teams)",
            Rule::Limits => "limits: the tenant's live-call, call-rate and velocity limits",
        }
    }
}

/// Accept or refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted: a 302 carrying `X-Tollgate-Basis`.
    Admit(Basis),
    /// Refused: the status and Q.850 cause the edge maps the reason to (DESIGN §2 table).
    Reject(Reason),
}

/// Where an admitted call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `[routes].emergency` (rule 1).
    Emergency,
    /// The calling-plan gateway of this pool region (`[routes].calling_plan`).
    CallingPlan(Region),
    /// The user's Direct Routing gateway.
    Direct(Arc<str>),
    /// `[routes].internal`: a call to a user of the caller's own tenant (basis `internal`).
    Internal,
    /// The gateways of the routes of the user's voice routing policy that match the number,
    /// one Contact each with a falling `q` ([`crate::routing`]).
    Policy(crate::routing::PolicyRoute),
}

/// The answer to one call. Cloning copies `Arc`s only.
#[derive(Clone, Debug)]
pub struct Decision {
    /// Admit with a basis, or reject with a reason.
    pub outcome: Outcome,
    /// Which rule of DESIGN §4 decided (`tollgate decide` shows it).
    pub rule: Rule,
    /// The classified number, when the dialed string could be read (the 302 Contact's E.164).
    pub destination: Option<Destination>,
    /// Where an admitted call goes (`None` for rejects); see [`crate::Engine::route_host`].
    pub route: Option<Route>,
    /// `X-Tollgate-Max-Duration` (admits only).
    pub max_duration: Option<u64>,
    /// What was reserved (admits made by `authorize`; `None` for a dry run): the durability
    /// seam, for the daemon to persist before the 302 leaves.
    pub grant: Option<Grant>,
    /// With several nodes, a reject for `store_unavailable` because this node's share of an
    /// account that may still have more was short ([`crate::shares`]): the daemon may draw
    /// more for it and decide again.
    pub lacking: Option<crate::shares::Short>,
    /// The caller's dial plan rewrote the dialed string: which rule, and into what
    /// ([`crate::dialplan`]).
    pub dial_plan: Option<Arc<crate::dialplan::Normalized>>,
    /// Shadow mode (DESIGN §2): the reason the call would have been refused for, had
    /// `[enforcement] shadow` not made it report-only (`X-Tollgate-Shadow`).
    pub shadow: Option<Reason>,
    /// The limit of [`crate::limits`] that refused the call, or (with `shadow`) would have; or
    /// a velocity rule's warning on an admission. Boxed: most decisions have none.
    pub limit: Option<Box<crate::limits::LimitHit>>,
    /// A velocity rule's `warn` threshold passed by this admission (logged and counted).
    pub warning: Option<Box<crate::limits::LimitHit>>,
}

impl Decision {
    /// A refusal for `reason`, decided by `rule`.
    pub fn reject(reason: Reason, rule: Rule, destination: Option<Destination>) -> Decision {
        Decision {
            outcome: Outcome::Reject(reason),
            rule,
            destination,
            route: None,
            max_duration: None,
            grant: None,
            lacking: None,
            dial_plan: None,
            shadow: None,
            limit: None,
            warning: None,
        }
    }

    /// A refusal by a limit of [`crate::limits`], with its figures.
    pub fn limited(
        hit: Box<crate::limits::LimitHit>,
        rule: Rule,
        destination: Option<Destination>,
    ) -> Decision {
        let mut d = Decision::reject(hit.reason, rule, destination);
        d.limit = Some(hit);
        d
    }

    /// Carries what the limits' gate noted on an admission: a shadowed refusal (unless a rule
    /// before it was shadowed already), a warning.
    pub(crate) fn note(
        &mut self,
        shadow: Option<Box<crate::limits::LimitHit>>,
        warning: Option<Box<crate::limits::LimitHit>>,
    ) {
        if let (Some(hit), None) = (shadow, self.shadow) {
            self.shadow = Some(hit.reason);
            self.limit = Some(hit);
        }
        if warning.is_some() {
            self.warning = warning;
        }
    }

    /// `Retry-After` of a `rate_limit_reached` refusal: seconds until one more call fits.
    pub fn retry_after(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Reject(Reason::RateLimitReached) => {
                self.limit.as_ref().and_then(|l| l.retry_after)
            }
            _ => None,
        }
    }

    /// A reject because a share was short (`store_unavailable` unless the daemon tops the
    /// share up and decides again).
    pub fn short(short: crate::shares::Short, rule: Rule, destination: Destination) -> Decision {
        Decision {
            lacking: Some(short),
            ..Decision::reject(Reason::StoreUnavailable, rule, Some(destination))
        }
    }

    /// An admission replayed for a Call-ID that already held a reservation (a retransmitted
    /// INVITE that reached the engine): nothing new was reserved.
    pub fn is_replay(&self) -> bool {
        self.rule == Rule::Replay
    }

    /// Whether the call is admitted (302).
    pub fn is_admit(&self) -> bool {
        matches!(self.outcome, Outcome::Admit(_))
    }

    /// The basis of an admission; `None` for a reject.
    pub fn basis(&self) -> Option<Basis> {
        match self.outcome {
            Outcome::Admit(b) => Some(b),
            Outcome::Reject(_) => None,
        }
    }

    /// The reason of a refusal; `None` for an admit.
    pub fn reason(&self) -> Option<Reason> {
        match self.outcome {
            Outcome::Admit(_) => None,
            Outcome::Reject(r) => Some(r),
        }
    }
}

/// The result of rules 1–8.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// Decided without funding: a reject, or an admit that uses no pool (emergency, Direct
    /// Routing, free).
    Final {
        outcome: Outcome,
        rule: Rule,
        route: Option<Route>,
    },
    /// Passed rules 1–8: fund it from `pool` (rule 9), else credits (rule 10), else `otherwise`.
    Fund {
        pool: Option<(u32, Basis)>,
        credits: bool,
        otherwise: Reason,
        route: Route,
    },
}

/// Whether `r` refuses the call: not when `[enforcement] shadow` lists it, which is then noted
/// in `shadowed` (the first one only).
pub(crate) fn refuses(r: Reason, shadow: ReasonSet, shadowed: &mut Option<Reason>) -> bool {
    if shadow.contains(r) {
        shadowed.get_or_insert(r);
        false
    } else {
        true
    }
}

/// Rules 5 and 6 once the call's policy has been read (`policy`: the reason it refuses the
/// call for, if any): the policy; then the barred destinations — a high-risk prefix first (its
/// own reason) unless the tenant allows them, then non-emergency short codes (not routable to
/// the PSTN) and the catalog's bars. `None`: the call passes (or shadow mode let it pass).
pub(crate) fn policy_and_bars(
    snap: &Snapshot,
    user: &User,
    d: &Destination,
    domestic: bool,
    policy: Option<Reason>,
    shadow: ReasonSet,
    shadowed: &mut Option<Reason>,
) -> Option<Verdict> {
    let reject = |r, rule| Verdict::Final {
        outcome: Outcome::Reject(r),
        rule,
        route: None,
    };
    let mut refuses = |r: Reason| refuses(r, shadow, shadowed);
    if let Some(r) = policy.filter(|r| refuses(*r)) {
        return Some(reject(r, Rule::DialOutPolicy));
    }
    if is_high_risk(snap, user, d) && refuses(Reason::HighRiskDestination) {
        return Some(reject(Reason::HighRiskDestination, Rule::Barred));
    }
    if is_barred(snap, d, domestic) && refuses(Reason::DestinationNotSupported) {
        return Some(reject(Reason::DestinationNotSupported, Rule::Barred));
    }
    None
}

/// Rule 6's high-risk part: the number starts with a catalog `high_risk_prefixes` entry and
/// the caller's tenant does not allow them.
pub(crate) fn is_high_risk(snap: &Snapshot, user: &User, d: &Destination) -> bool {
    snap.catalog.is_high_risk(d.e164_bytes())
        && snap
            .tenant(user.tenant)
            .is_none_or(|t| t.limits.high_risk == HighRisk::Block)
}

/// Rule 6's bars: a non-emergency short code, or a destination the catalog bars.
pub(crate) fn is_barred(snap: &Snapshot, d: &Destination, domestic: bool) -> bool {
    d.number_type == NumberType::ShortCode
        || snap
            .catalog
            .is_barred_bytes(d.e164_bytes(), d.number_type, d.region, domestic)
}

/// Rules 1–8 of DESIGN §4, in order, for a known or unknown caller and a classified number.
///
/// A reason in `shadow` does not refuse: the rule is passed as if it had not fired, and the
/// first such reason is left in `shadowed` (DESIGN §2 "Shadow mode").
pub(crate) fn evaluate(
    snap: &Snapshot,
    user: Option<&User>,
    dest: &Result<Destination, NumberError>,
    service: Service,
    shadow: ReasonSet,
    shadowed: &mut Option<Reason>,
) -> Verdict {
    let fin = |outcome, rule, route| Verdict::Final {
        outcome,
        rule,
        route,
    };
    let reject = |r, rule| fin(Outcome::Reject(r), rule, None);
    // Rule 1: emergency, whatever the license, policy, pool or ledger state.
    if let Ok(d) = dest {
        if d.number_type == NumberType::Emergency {
            return fin(
                Outcome::Admit(Basis::Emergency),
                Rule::Emergency,
                Some(Route::Emergency),
            );
        }
    }
    // Rule 2.
    let Some(user) = user else {
        return reject(Reason::UnknownCaller, Rule::UnknownCaller);
    };
    let number = |dest: &Result<Destination, NumberError>| match dest {
        Ok(d) => Ok(*d),
        Err(NumberError::Incomplete(_)) => Err(reject(Reason::IncompleteNumber, Rule::Number)),
        Err(NumberError::Invalid(_)) => Err(reject(Reason::InvalidNumber, Rule::Number)),
    };
    // A meeting's dial-out has rules of its own after these (no Phone System needed).
    if service == Service::ConferenceDialout {
        return match number(dest) {
            Ok(d) => crate::conference::evaluate(snap, user, &d, shadow, shadowed),
            Err(v) => v,
        };
    }
    // Rule 3: "You must first purchase a Phone System add-on license".
    if !user.phone_system {
        return reject(Reason::NoPhoneSystem, Rule::PhoneSystem);
    }
    // Rule 4.
    let d = match number(dest) {
        Ok(d) => d,
        Err(v) => return v,
    };
    let d = &d;
    // A line of the caller's own tenant: Teams to Teams, free whatever the plan, the policy
    // or the pools ("Calls to other … Teams users are free"). It is no PSTN call, so the PSTN
    // rules below do not apply to it.
    if snap.is_internal(user, d.e164_bytes()) {
        return fin(
            Outcome::Admit(Basis::Internal),
            Rule::Internal,
            Some(Route::Internal),
        );
    }
    let domestic = snap.catalog.is_domestic(user.usage_location, d.region);
    // Rule 5: OnlineDialOutPolicy, PSTN axis.
    let policy = match user.dial_out {
        DialOut::Disabled => Some(Reason::PstnDisabledByPolicy),
        DialOut::Domestic if !domestic => Some(Reason::InternationalDisabledByPolicy),
        _ => None,
    };
    if let Some(refused) = policy_and_bars(snap, user, d, domestic, policy, shadow, shadowed) {
        return refused;
    }
    // Rule 7: "Direct Routing calls never touch Calling Plan pools".
    if let Some(gw) = snap.gateway_route(user) {
        return fin(
            Outcome::Admit(Basis::DirectRouting),
            Rule::DirectRouting,
            Some(Route::Direct(Arc::clone(gw))),
        );
    }
    let has_pstn = user.plan.is_some() || user.credits;
    // Rule 7, voice routing policy: a matching route wins even over a Calling Plan; no match
    // falls back to the plan ("applies automatically as the last route"), or is dropped.
    if let Some(policy) = user.voice_policy {
        match snap.routing.select(policy, d.e164()) {
            Some(r) => {
                return fin(
                    Outcome::Admit(Basis::DirectRouting),
                    Rule::DirectRouting,
                    Some(Route::Policy(r)),
                )
            }
            None if !has_pstn => return reject(Reason::NoRoute, Rule::DirectRouting),
            None => {}
        }
    }
    let route = Route::CallingPlan(user.pool_region);
    // UK shared-cost numbers: "supported using Communications Credits to pay per minute",
    // never from a pool (catalog `credits_only_prefixes`).
    if snap.catalog.is_credits_only(d.e164_bytes()) {
        return Verdict::Fund {
            pool: None,
            credits: user.credits,
            otherwise: Reason::DestinationNotSupported,
            route,
        };
    }
    // Rule 8: domestic toll-free is free (for users who can call the PSTN at all).
    if domestic && has_pstn && snap.catalog.is_free_domestic(d.number_type) {
        return fin(Outcome::Admit(Basis::Free), Rule::Domestic, Some(route));
    }
    // Rules 9 and 10: which pool, and what to say if neither pool nor credits serve.
    let pool = if domestic {
        user.domestic_pool().map(|p| (p, Basis::DomesticPool))
    } else {
        user.international_pool()
            .map(|p| (p, Basis::InternationalPool))
    };
    let otherwise = match (pool, user.plan) {
        (Some(_), _) => Reason::PoolExhausted,
        (None, Some((_, PlanKind::Domestic))) if !domestic => Reason::InternationalNotInPlan,
        (None, Some(_)) => Reason::PoolExhausted,
        (None, None) => Reason::NoCallingPlan,
    };
    Verdict::Fund {
        pool,
        credits: user.credits,
        otherwise,
        route,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_table_matches_design() {
        // The statuses and Q.850 causes are the edge's (`sip-edge/src/server/status.rs`).
        let expect = [
            "untrusted_peer",
            "unknown_caller",
            "no_phone_system",
            "no_calling_plan",
            "pstn_disabled_by_policy",
            "international_disabled_by_policy",
            "international_not_in_plan",
            "destination_not_supported",
            "pool_exhausted",
            "credits_exhausted",
            "spend_limit_reached",
            "invalid_number",
            "incomplete_number",
            "overloaded",
            "store_unavailable",
            "bad_request",
            "no_route",
            "conference_dialout_disabled_by_policy",
            "call_limit_reached",
            "rate_limit_reached",
            "high_risk_destination",
            "destination_rate_too_high",
            "daily_spend_limit_reached",
        ];
        assert_eq!(Reason::ALL.len(), expect.len());
        for (r, name) in Reason::ALL.iter().zip(expect) {
            assert_eq!(r.as_str(), name);
            assert_eq!(Reason::from_name(name), Some(*r));
        }
        let bases: Vec<_> = Basis::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(
            bases,
            [
                "emergency",
                "direct_routing",
                "domestic_pool",
                "international_pool",
                "credits",
                "free",
                "conference_pool",
                "internal"
            ]
        );
    }
}
