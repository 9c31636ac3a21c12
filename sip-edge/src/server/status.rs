//! How a decision is said in SIP (DESIGN §2, the reject table): the status of each reason and
//! its Q.850 cause for the `Reason:` header (RFC 3326). The engine decides *why*; saying it in
//! SIP is the edge's business, so the engine carries no status codes.

use tollgate_engine::{Decision, Outcome, Reason};

/// The SIP face of a reason or a decision.
pub trait SipStatus {
    /// The response status: 302 for an admission, the reason's status otherwise.
    fn sip_status(&self) -> u16;
}

impl SipStatus for Reason {
    fn sip_status(&self) -> u16 {
        match self {
            Reason::InvalidNumber | Reason::NoRoute => 404,
            Reason::IncompleteNumber => 484,
            Reason::Overloaded | Reason::StoreUnavailable => 503,
            Reason::BadRequest => 400,
            _ => 403,
        }
    }
}

impl SipStatus for Decision {
    fn sip_status(&self) -> u16 {
        match self.outcome {
            Outcome::Admit(_) => 302,
            Outcome::Reject(r) => r.sip_status(),
        }
    }
}

/// The Q.850 cause of a reject's `Reason:` header (RFC 3326, DESIGN §2); `None` for
/// `bad_request`, which is no call failure.
pub fn q850_cause(reason: Reason) -> Option<u16> {
    Some(match reason {
        Reason::UntrustedPeer | Reason::UnknownCaller => 21,
        Reason::NoPhoneSystem
        | Reason::NoCallingPlan
        | Reason::PstnDisabledByPolicy
        | Reason::InternationalDisabledByPolicy
        | Reason::ConferenceDialoutDisabledByPolicy => 57,
        Reason::InternationalNotInPlan
        | Reason::DestinationNotSupported
        | Reason::PoolExhausted
        | Reason::CreditsExhausted
        | Reason::SpendLimitReached => 21,
        Reason::InvalidNumber => 1,
        Reason::IncompleteNumber => 28,
        Reason::Overloaded => 42,
        Reason::StoreUnavailable => 41,
        Reason::BadRequest => return None,
        // "No route to specified transit network" (DESIGN §2).
        Reason::NoRoute => 3,
        // "No circuit/channel available": the caller's lines are all in use (DESIGN §2).
        Reason::CallLimitReached => 34,
        Reason::RateLimitReached
        | Reason::HighRiskDestination
        | Reason::DestinationRateTooHigh
        | Reason::DailySpendLimitReached => 21,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_table_matches_design() {
        let expect = [
            ("untrusted_peer", 403, Some(21)),
            ("unknown_caller", 403, Some(21)),
            ("no_phone_system", 403, Some(57)),
            ("no_calling_plan", 403, Some(57)),
            ("pstn_disabled_by_policy", 403, Some(57)),
            ("international_disabled_by_policy", 403, Some(57)),
            ("international_not_in_plan", 403, Some(21)),
            ("destination_not_supported", 403, Some(21)),
            ("pool_exhausted", 403, Some(21)),
            ("credits_exhausted", 403, Some(21)),
            ("spend_limit_reached", 403, Some(21)),
            ("invalid_number", 404, Some(1)),
            ("incomplete_number", 484, Some(28)),
            ("overloaded", 503, Some(42)),
            ("store_unavailable", 503, Some(41)),
            ("bad_request", 400, None),
            ("no_route", 404, Some(3)),
            ("conference_dialout_disabled_by_policy", 403, Some(57)),
            ("call_limit_reached", 403, Some(34)),
            ("rate_limit_reached", 403, Some(21)),
            ("high_risk_destination", 403, Some(21)),
            ("destination_rate_too_high", 403, Some(21)),
            ("daily_spend_limit_reached", 403, Some(21)),
        ];
        assert_eq!(Reason::ALL.len(), expect.len());
        for (r, (name, status, q)) in Reason::ALL.iter().zip(expect) {
            assert_eq!(
                (r.as_str(), r.sip_status(), q850_cause(*r)),
                (name, status, q)
            );
        }
    }
}
