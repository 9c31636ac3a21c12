//! Toll-fraud and abuse controls (DESIGN §2 reasons `call_limit_reached`, `rate_limit_reached`,
//! `high_risk_destination`, `destination_rate_too_high`, `daily_spend_limit_reached`; DESIGN
//! §3 `[tenant.limits]`).
//!
//! What an attacker with one stolen account does is place as many calls as the system lets
//! through, to numbers that pay them (international revenue-share fraud, traffic pumping).
//! Every peer bounds it the same few ways (`peers-and-sip-conventions.md` §2, §5;
//! `teams-pstn-features.md` §3): live calls per account (Kamailio `cnxcc`, CGRateS ResourceS,
//! Telnyx `concurrent_call_limit`), calls per minute and per destination with a warning and a
//! critical threshold (OpenSIPS `fraud_detection`), a high-risk prefix list (Twilio
//! `high_risk_tollfraud_numbers_enabled`), a dearest rate (Telnyx `max_destination_rate`) and a
//! daily spend cap (Telnyx `daily_spend_limit`, 00:00 UTC). This module holds those limits as
//! a tenant configures them ([`Limits`]) and the live counts they are judged against
//! ([`UserUsage`], [`TenantUsage`], [`Window`]).
//!
//! # Counting without a shared lock
//!
//! Every count is an atomic of the user or the tenant it belongs to: two workers deciding
//! calls of different users touch different cache lines, and no count takes a lock. A limit is
//! judged by *adding first and checking after*: the admission is counted, and if the count
//! is then over the limit it is taken back and the call refused. Two workers racing for the
//! last place may both be refused, never both admitted: a limit is never exceeded.
//!
//! # What is per node
//!
//! Counts live in the node that admitted the calls. With several nodes (DESIGN §6) the money
//! of record is the store's, but these counts are not: sharing them would put a store round
//! trip on every INVITE. A proxy that sends every call of one caller to the same node (the
//! shipped Kamailio configuration with `TOLLGATE_DS_ALG "1"`, a hash of the From URI) makes a
//! user's limits hold cluster-wide while that node is up; a tenant's limits, and the daily
//! cap, hold per node. The README ("Toll-fraud and abuse controls") says so.

use std::sync::Arc;

use serde::Deserialize;

use crate::credits::Money;
use crate::load::{LoadErrors, TENANTS_FILE};
use crate::numbering::{Destination, Region};

mod gate;
mod usage;
mod window;

pub use gate::{Figure, LimitHit, ReasonSet};
pub(crate) use gate::{Gate, Passed};
pub use usage::{day_of, Hold, TenantUsage, UserUsage};
pub use window::{Minute, Window, MINUTE_STEP, VELOCITY_SLOTS};

/// A user's live calls at most unless the tenant says otherwise (`user_concurrent_calls`):
/// generous for a person, who holds one or two calls, and still a bound on what one stolen
/// account can run at once.
pub const DEFAULT_USER_CONCURRENT_CALLS: u32 = 20;
/// A user's admissions per rolling minute at most unless the tenant says otherwise
/// (`user_calls_per_minute`): one a second, which no person dials, and the 54,800 calls a
/// second one account was once admitted become 60 a minute.
pub const DEFAULT_USER_CALLS_PER_MINUTE: u32 = 60;
/// Velocity rules per tenant at most (each one is a [`Window`] of 480 bytes).
pub const VELOCITY_RULES_MAX: usize = 32;
/// The longest velocity window: a day.
pub const VELOCITY_WINDOW_MAX: u32 = 86_400;

/// `[tenant.limits]` of `tenants.toml`, as written. Every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRecord {
    /// Live admitted calls of the tenant; 0: no limit.
    pub concurrent_calls: Option<u32>,
    /// Live admitted calls of one user; 0: no limit.
    pub user_concurrent_calls: Option<u32>,
    /// Admissions of the tenant per rolling minute; 0: no limit.
    pub calls_per_minute: Option<u32>,
    /// Admissions of one user per rolling minute; 0: no limit.
    pub user_calls_per_minute: Option<u32>,
    /// Credits spent by the tenant per UTC day (decimal).
    pub daily_spend: Option<String>,
    /// The dearest `rates.csv` price a credits call may have (decimal).
    pub max_price_per_minute: Option<String>,
    /// `block` (the default) or `allow`: the catalog's `[numbers].high_risk_prefixes`.
    pub high_risk: Option<String>,
}

/// `[[tenant.velocity]]` of `tenants.toml`, as written: admissions of the tenant to one
/// destination in a window, with a warning and a blocking threshold (OpenSIPS
/// `fraud_detection`'s warning and critical).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityRecord {
    /// An E.164 prefix (`+882`) or an ISO region code (`CU`).
    pub destination: String,
    /// The window, seconds: a whole number of minutes, at most a day (default an hour).
    #[serde(default = "default_window")]
    pub window_seconds: u32,
    /// Admissions in the window past which each further one is logged and counted.
    #[serde(default)]
    pub warn: Option<u32>,
    /// Admissions in the window at which further ones are refused (`rate_limit_reached`).
    #[serde(default)]
    pub block: Option<u32>,
}

fn default_window() -> u32 {
    3600
}

/// Whether calls to the catalog's high-risk prefixes are allowed (`[tenant.limits].high_risk`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HighRisk {
    /// Refused with `high_risk_destination` (the default).
    #[default]
    Block,
    /// Decided like any other number (rule 6's international list still applies).
    Allow,
}

/// What a velocity rule watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Numbers of this region.
    Region(Region),
    /// Numbers starting with this E.164 prefix (`+882`).
    Prefix(Box<str>),
}

impl Target {
    pub(crate) fn matches(&self, d: &Destination) -> bool {
        match self {
            Target::Region(r) => d.region == *r,
            Target::Prefix(p) => d.e164_bytes().starts_with(p.as_bytes()),
        }
    }
}

/// One velocity rule, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Velocity {
    /// The destination as written (`+882`, `CU`), for `decide` and logs.
    pub name: Arc<str>,
    /// What it matches.
    pub target: Target,
    /// The window, seconds (a multiple of 60).
    pub window_seconds: u32,
    /// Warn past this many admissions in the window.
    pub warn: Option<u32>,
    /// Refuse at this many.
    pub block: Option<u32>,
}

/// A tenant's limits, checked. `None`: no limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Live admitted calls of the tenant.
    pub concurrent_calls: Option<u32>,
    /// Live admitted calls of each user (a `users.csv` `concurrent_calls` overrides it).
    pub user_concurrent_calls: Option<u32>,
    /// Admissions of the tenant per rolling minute.
    pub calls_per_minute: Option<u32>,
    /// Admissions of each user per rolling minute.
    pub user_calls_per_minute: Option<u32>,
    /// Credits spent per UTC day.
    pub daily_spend: Option<Money>,
    /// The dearest per-minute price a credits call may be admitted at.
    pub max_price_per_minute: Option<Money>,
    /// High-risk prefixes blocked or allowed.
    pub high_risk: HighRisk,
    /// Velocity rules, in file order.
    pub velocity: Vec<Velocity>,
}

impl Default for Limits {
    /// The limits of a tenant that writes none: generous per-user bounds, high risk blocked.
    fn default() -> Self {
        Limits {
            concurrent_calls: None,
            user_concurrent_calls: Some(DEFAULT_USER_CONCURRENT_CALLS),
            calls_per_minute: None,
            user_calls_per_minute: Some(DEFAULT_USER_CALLS_PER_MINUTE),
            daily_spend: None,
            max_price_per_minute: None,
            high_risk: HighRisk::Block,
            velocity: Vec::new(),
        }
    }
}

impl Limits {
    /// Checks a tenant's `[tenant.limits]` and `[[tenant.velocity]]`; every error is added to
    /// `errors` with the tenant's line.
    pub(crate) fn build(
        rec: Option<&LimitsRecord>,
        velocity: &[VelocityRecord],
        line: usize,
        errors: &mut LoadErrors,
    ) -> Limits {
        let f = TENANTS_FILE;
        let line = Some(line);
        let mut l = Limits::default();
        if let Some(r) = rec {
            let count = |v: Option<u32>, default: Option<u32>| match v {
                None => default,
                Some(0) => None,
                Some(n) => Some(n),
            };
            l.concurrent_calls = count(r.concurrent_calls, None);
            l.user_concurrent_calls = count(r.user_concurrent_calls, l.user_concurrent_calls);
            l.calls_per_minute = count(r.calls_per_minute, None);
            l.user_calls_per_minute = count(r.user_calls_per_minute, l.user_calls_per_minute);
            let mut money = |v: &Option<String>, field: &str| {
                let s = v.as_ref()?;
                let m = Money::parse(s);
                if m.is_none() {
                    errors.push(
                        f,
                        line,
                        &format!("limits.{field}"),
                        format!("{s:?} is not a decimal amount"),
                    );
                }
                m
            };
            l.daily_spend = money(&r.daily_spend, "daily_spend");
            l.max_price_per_minute = money(&r.max_price_per_minute, "max_price_per_minute");
            l.high_risk = match r.high_risk.as_deref().map(str::trim) {
                None | Some("block") => HighRisk::Block,
                Some("allow") => HighRisk::Allow,
                Some(other) => {
                    errors.push(
                        f,
                        line,
                        "limits.high_risk",
                        format!("{other:?} is neither `block` nor `allow`"),
                    );
                    HighRisk::Block
                }
            };
        }
        if velocity.len() > VELOCITY_RULES_MAX {
            errors.push(
                f,
                line,
                "velocity",
                format!("{} rules; at most {VELOCITY_RULES_MAX}", velocity.len()),
            );
        }
        for v in velocity.iter().take(VELOCITY_RULES_MAX) {
            let d = v.destination.trim();
            let target = if let Some(digits) = d.strip_prefix('+') {
                (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| Target::Prefix(d.into()))
            } else {
                Region::new(d).map(Target::Region)
            };
            let mut bad = |field: &str, message: String| {
                errors.push(f, line, &format!("velocity.{field}"), message)
            };
            let Some(target) = target else {
                bad(
                    "destination",
                    format!("{d:?} is neither an E.164 prefix (`+882`) nor a region (`CU`)"),
                );
                continue;
            };
            let w = v.window_seconds;
            if w == 0 || w % 60 != 0 || w > VELOCITY_WINDOW_MAX {
                bad(
                    "window_seconds",
                    format!("{w}: a whole number of minutes, 60 to {VELOCITY_WINDOW_MAX}"),
                );
                continue;
            }
            let (warn, block) = (v.warn.filter(|n| *n > 0), v.block.filter(|n| *n > 0));
            match (warn, block) {
                (None, None) => {
                    bad("block", format!("{d}: give warn, block or both (above 0)"));
                    continue;
                }
                (Some(w), Some(b)) if w >= b => {
                    bad("warn", format!("{d}: warn ({w}) must be below block ({b})"));
                    continue;
                }
                _ => {}
            }
            l.velocity.push(Velocity {
                name: d.into(),
                target,
                window_seconds: w,
                warn,
                block,
            });
        }
        l
    }
}

#[cfg(test)]
mod tests;
