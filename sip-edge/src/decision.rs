//! A decision as the operator reads it (DESIGN §5): one JSON shape for `tollgate decide` and
//! `GET /v1/decide` — outcome, SIP status, basis or reason, the rule that fired in words, and
//! what is known of the destination and the route.

use serde::Serialize;
use tollgate_engine::conference::Service;
use tollgate_engine::routing::PolicyRoute;
use tollgate_engine::{Decision, Engine, Outcome, Route};

use crate::server::status::SipStatus;

/// One decision line. Field names are pinned by DESIGN §5.
#[derive(Serialize, Debug)]
pub struct Line<'a> {
    pub caller: &'a str,
    pub dial: &'a str,
    /// `conference-dialout` for a meeting's dial-out (absent: a user's call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'static str>,
    pub outcome: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub rule: &'static str,
    /// The caller's dial plan rewrote the dialed string: the rule's name, and what it made
    /// of it (then classified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dial_plan_rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e164: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A call routed by the caller's voice routing policy (rule 7): which policy, usage and
    /// route decided, and every Contact of the 302 with its `q`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_routing: Option<VoiceRouting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<u64>,
    /// Shadow mode (DESIGN §2): the reason the call would have been refused for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_reason: Option<&'static str>,
    /// The limit of `[tenant.limits]` that refused the call (or, with `shadow_reason`, would
    /// have), with its figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitLine>,
    /// A velocity rule's `warn` threshold this call passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<LimitLine>,
    /// Where the pools came from (the CLI only; the daemon's own are live): `ledger`, or
    /// `not_consulted` when there was no ledger to read (`cli::decide::Pools`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pools: Option<&'static str>,
    /// Why the pools were not consulted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pools_note: Option<String>,
}

/// The JSON form of a decision.
pub fn line<'a>(
    engine: &Engine,
    caller: &'a str,
    dial: &'a str,
    service: Service,
    d: &Decision,
) -> Line<'a> {
    let (outcome, basis, reason) = match d.outcome {
        Outcome::Admit(b) => ("admit", Some(b.as_str()), None),
        Outcome::Reject(r) => ("reject", None, Some(r.as_str())),
    };
    Line {
        caller,
        dial,
        service: (service != Service::Call).then_some(service.as_str()),
        outcome,
        status: d.sip_status(),
        basis,
        reason,
        rule: d.rule.describe(),
        dial_plan_rule: d.dial_plan.as_ref().map(|n| n.rule.to_string()),
        normalized: d.dial_plan.as_ref().map(|n| n.number.to_string()),
        e164: d.destination.map(|x| x.e164().to_string()),
        region: d.destination.map(|x| x.region.as_str().to_string()),
        number_type: d.destination.map(|x| x.number_type.as_str()),
        route: d.route.as_ref().map(|r| engine.route_host(r)),
        voice_routing: match &d.route {
            Some(Route::Policy(p)) => Some(VoiceRouting::of(p)),
            _ => None,
        },
        max_duration: d.max_duration,
        shadow_reason: d.shadow.map(|r| r.as_str()),
        limit: d.limit.as_deref().map(LimitLine::of),
        warning: d.warning.as_deref().map(LimitLine::of),
        pools: None,
        pools_note: None,
    }
}

/// The `limit` and `warning` of a decision line: the setting of `[tenant.limits]` (or
/// `velocity` and its destination), its figure and what the call made of it.
#[derive(Serialize, Debug)]
pub struct LimitLine {
    /// `user_concurrent_calls`, `calls_per_minute`, `velocity`, `daily_spend`, ...
    pub name: &'static str,
    /// The limit: calls, or money as a decimal string.
    pub limit: serde_json::Value,
    /// The calls (with this one) or money (spent with this call; the destination's price).
    pub current: serde_json::Value,
    /// Seconds until one more call fits (`Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// A velocity rule's destination (`+882`, `CU`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// All of it in words.
    pub text: String,
}

impl LimitLine {
    fn of(l: &tollgate_engine::limits::LimitHit) -> LimitLine {
        use tollgate_engine::limits::Figure;
        let json = |f: Figure| match f {
            Figure::Count(n) => serde_json::Value::from(n),
            Figure::Money(m) => serde_json::Value::from(m.to_string()),
        };
        LimitLine {
            name: l.name,
            limit: json(l.limit),
            current: json(l.current),
            retry_after: l.retry_after,
            destination: l.destination.as_ref().map(|d| d.to_string()),
            text: l.describe(),
        }
    }
}

/// The `voice_routing` of a decision line.
#[derive(Serialize, Debug)]
pub struct VoiceRouting {
    /// The caller's policy id (`routing.toml` `[[voice_routing_policy]]`).
    pub policy: String,
    /// The first PSTN usage of the policy with a matching route.
    pub usage: String,
    /// The deciding route: the matching one with the lowest priority.
    pub route: String,
    /// The Contacts of the 302, in order.
    pub contacts: Vec<ContactLine>,
}

/// One Contact of a voice-routed 302.
#[derive(Serialize, Debug)]
pub struct ContactLine {
    /// The gateway id of `[tenant.direct_routing]`.
    pub gateway: String,
    /// Its host, the Contact's host part.
    pub host: String,
    /// The Contact's `q`.
    pub q: &'static str,
    /// The matching route that listed it first.
    pub route: String,
}

impl VoiceRouting {
    fn of(p: &PolicyRoute) -> VoiceRouting {
        VoiceRouting {
            policy: p.policy.to_string(),
            usage: p.usage.name.to_string(),
            route: p
                .first_route()
                .map(|r| r.name.to_string())
                .unwrap_or_default(),
            contacts: p
                .contacts()
                .map(|c| ContactLine {
                    gateway: c.gateway.id.to_string(),
                    host: c.gateway.host.to_string(),
                    q: c.q,
                    route: c.route.name.to_string(),
                })
                .collect(),
        }
    }
}
