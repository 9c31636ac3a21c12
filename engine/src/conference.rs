//! Meeting dial-out: a meeting's bridge calling a phone out (DESIGN §2 `conference_pool`, §3
//! "A meeting dial-out …").
//!
//! The proxy marks such an INVITE `X-Tollgate-Service: conference-dialout` and names the
//! meeting's organizer as the caller. The rules differ from a user's own call
//! (`teams-pstn-features.md` §2.2, `calling-plan-rules.md` §7):
//! - the **CPC** axis of the organizer's OnlineDialOutPolicy governs it, not the PSTN axis:
//!   `…CPCDisabled…` → `conference_dialout_disabled_by_policy`; `…CPCDomestic…` and a destination
//!   that is not domestic for the organizer, or `…CPCZoneA…` and one outside Zone A →
//!   `international_disabled_by_policy`; `DialoutCPCandPSTN…` gives the CPC axis the value of
//!   the PSTN one ("both controls");
//! - Phone System is not needed: dial-out is an Audio Conferencing feature, and a calling plan
//!   neither pays for it nor is drawn on;
//! - the tenant's **Audio Conferencing pool** pays first: "60 minutes per user per month that
//!   can be used to dial out to non-premium numbers in ANY of the Zone A countries", one pool
//!   for the whole tenant "regardless of organizer location" (licences × 60 a calendar month;
//!   the catalog's `conferencing_minutes`, `[regions].zone_a`). Only an organizer holding such
//!   a licence draws on it (basis `conference_pool`);
//! - beyond the pool or outside Zone A, **Communications Credits** pay at the destination's
//!   rate ("based on the destination of the call and not the organizer's country") when the
//!   organizer holds them (basis `credits`, within the user's spend limit);
//! - emergency numbers are admitted as always (rule 1), and barred destinations stay barred
//!   (rule 6: premium rate is "non-premium numbers" only here too).
//!
//! Where the documentation is silent (our choices): the pool is keyed `(tenant, 001,
//! AudioConferencing, conference)` — region `001` (non-geographic) since it belongs to no
//! country; an organizer without a conferencing licence and without credits is refused
//! `no_calling_plan`, one with a licence dialing outside Zone A without credits
//! `destination_not_supported`, one whose pool is used up `pool_exhausted`; the call is routed
//! to the calling-plan gateway of the organizer's pool region; domestic toll-free numbers are
//! free as for any call (rule 8).

use crate::directory::{DialOut, Snapshot, User};
use crate::limits::ReasonSet;
use crate::numbering::Destination;
use crate::policy::{policy_and_bars, Basis, Outcome, Reason, Route, Rule, Verdict};

/// What an INVITE asks for: `X-Tollgate-Service` (absent: a user's own call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Service {
    /// A user calling out (DESIGN §4).
    #[default]
    Call,
    /// A meeting's bridge dialing out for its organizer (this module).
    ConferenceDialout,
}

impl Service {
    /// The header's value, as sent by a trusted proxy (case-insensitive; `None`: unknown).
    pub fn from_header(value: &str) -> Option<Service> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("conference-dialout") {
            Some(Service::ConferenceDialout)
        } else if v.eq_ignore_ascii_case("call") {
            Some(Service::Call)
        } else {
            None
        }
    }

    /// The name `decide` and the log use: `call` or `conference-dialout`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Service::Call => "call",
            Service::ConferenceDialout => "conference-dialout",
        }
    }
}

/// The CPC (conference dial-out) axis of an OnlineDialOutPolicy (`calling-plan-rules.md` §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpc {
    /// `…CPCInternational…`, and `DialoutCPCandPSTNInternational` (the default): anywhere.
    International,
    /// `…CPCDomestic…`: numbers domestic for the organizer only.
    Domestic,
    /// `…CPCZoneA…`: Zone A countries only.
    ZoneA,
    /// `…CPCDisabled…`: no dial-out from the organizer's meetings.
    Disabled,
}

impl Cpc {
    /// Reads the CPC part of one of the 12 policy names (`DialoutCPCZoneAPSTNDomestic` →
    /// `ZoneA`); `DialoutCPCandPSTN…` takes the PSTN axis' value. Empty → the default,
    /// `International`. The caller checks the name as a whole ([`DialOut::from_policy`]).
    pub fn from_policy(name: &str) -> Option<Cpc> {
        let n = name.trim();
        if n.is_empty() {
            return Some(Cpc::International);
        }
        let lower = n.to_ascii_lowercase();
        let (cpc, _) = lower.strip_prefix("dialoutcpc")?.split_once("pstn")?;
        match cpc {
            "international" => Some(Cpc::International),
            "domestic" => Some(Cpc::Domestic),
            "zonea" => Some(Cpc::ZoneA),
            "disabled" => Some(Cpc::Disabled),
            "and" => Some(match DialOut::from_policy(n)? {
                DialOut::International => Cpc::International,
                DialOut::Domestic => Cpc::Domestic,
                DialOut::Disabled => Cpc::Disabled,
            }),
            _ => None,
        }
    }
}

/// The rules of a meeting dial-out for a known organizer and a readable, non-emergency number
/// (rules 1, 2 and 4 are the caller's: [`crate::policy::evaluate`]).
///
/// Shadow mode as in [`crate::policy::evaluate`].
pub(crate) fn evaluate(
    snap: &Snapshot,
    user: &User,
    d: &Destination,
    shadow: ReasonSet,
    shadowed: &mut Option<Reason>,
) -> Verdict {
    let domestic = snap.catalog.is_domestic(user.usage_location, d.region);
    let zone_a = snap.catalog.is_zone_a(d.region);
    let policy = match user.cpc {
        Cpc::Disabled => Some(Reason::ConferenceDialoutDisabledByPolicy),
        Cpc::Domestic if !domestic => Some(Reason::InternationalDisabledByPolicy),
        Cpc::ZoneA if !zone_a => Some(Reason::InternationalDisabledByPolicy),
        _ => None,
    };
    if let Some(refused) = policy_and_bars(snap, user, d, domestic, policy, shadow, shadowed) {
        return refused;
    }
    let route = Route::CallingPlan(user.pool_region);
    let licensed = user.conference_pool().is_some();
    if domestic && (licensed || user.credits) && snap.catalog.is_free_domestic(d.number_type) {
        return Verdict::Final {
            outcome: Outcome::Admit(Basis::Free),
            rule: Rule::Domestic,
            route: Some(route),
        };
    }
    // "Non-premium numbers in ANY of the Zone A countries": a credits-only number (UK shared
    // cost) is not one.
    let pool = user
        .conference_pool()
        .filter(|_| zone_a && !snap.catalog.is_credits_only(d.e164_bytes()))
        .map(|p| (p, Basis::ConferencePool));
    let otherwise = match (pool, licensed) {
        (Some(_), _) => Reason::PoolExhausted,
        (None, true) => Reason::DestinationNotSupported,
        (None, false) => Reason::NoCallingPlan,
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
    fn the_cpc_axis_of_every_policy_name() {
        let cases = [
            ("", Cpc::International),
            ("DialoutCPCandPSTNInternational", Cpc::International),
            ("DialoutCPCandPSTNDomestic", Cpc::Domestic),
            ("DialoutCPCandPSTNDisabled", Cpc::Disabled),
            ("DialoutCPCDomesticPSTNInternational", Cpc::Domestic),
            ("DialoutCPCDisabledPSTNInternational", Cpc::Disabled),
            ("DialoutCPCInternationalPSTNDomestic", Cpc::International),
            ("DialoutCPCInternationalPSTNDisabled", Cpc::International),
            ("DialoutCPCDomesticPSTNDisabled", Cpc::Domestic),
            ("DialoutCPCDisabledPSTNDomestic", Cpc::Disabled),
            ("DialoutCPCZoneAPSTNInternational", Cpc::ZoneA),
            ("dialoutcpczoneapstndomestic", Cpc::ZoneA),
            ("DialoutCPCZoneAPSTNDisabled", Cpc::ZoneA),
        ];
        for (name, want) in cases {
            assert_eq!(Cpc::from_policy(name), Some(want), "{name}");
        }
        for bad in [
            "DialoutCPCEverywherePSTNDomestic",
            "CPCZoneA",
            "DialoutCPCandPSTNLocal",
        ] {
            assert_eq!(Cpc::from_policy(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_service_header() {
        assert_eq!(
            Service::from_header(" Conference-Dialout "),
            Some(Service::ConferenceDialout)
        );
        assert_eq!(Service::from_header("call"), Some(Service::Call));
        assert_eq!(Service::from_header("voicemail"), None);
    }
}
