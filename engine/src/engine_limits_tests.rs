//! The abuse controls of [`crate::limits`] through the engine: each limit at its edge, the
//! window sliding, what ends a call, shadow mode, restart and reload.

use super::tests::{basis, call, gb, mx, plan, reason, snapshot_of, us, NOW};
use super::*;
use crate::limits::Figure;
use crate::numbering::NumberType;

const TENANTS: &str = r#"
[[tenant]]
id = "a"
domains = ["a.com"]
credits = "100.00"
[tenant.limits]
user_concurrent_calls = 2
concurrent_calls = 3
user_calls_per_minute = 4
calls_per_minute = 6
max_price_per_minute = "0.06"
daily_spend = "2.00"
[[tenant.velocity]]
destination = "+52551"
window_seconds = 600
warn = 1
block = 2
[tenant.direct_routing]
sbc1 = "sbc1.a.com"

[[tenant]]
id = "b"
domains = ["b.com"]
[tenant.limits]
high_risk = "allow"
user_concurrent_calls = 0
user_calls_per_minute = 0
"#;

const USERS: &str =
    "tenant,user,line_uri,usage_location,licenses,voice_routing,dial_out_policy,concurrent_calls
a,x@a.com,,US,MCOEV;MCOPSTN1;MCOPSTNC,,,
a,y@a.com,,US,MCOEV;MCOPSTN1;MCOPSTNC,,,
a,z@a.com,,US,MCOEV;MCOPSTN1,,,1
a,dr@a.com,,US,MCOEV,direct_routing:sbc1,,5
a,c@a.com,,US,MCOEV;MCOPSTNC,,,0
a,off@a.com,,US,MCOEV;MCOPSTN1,,DialoutCPCandPSTNDisabled,
b,w@b.com,,US,MCOEV;MCOPSTN2,,,
";

fn engine_with(config: EngineConfig) -> Engine {
    Engine::new(plan(), config, snapshot_of(TENANTS, USERS), NOW)
}

fn engine() -> Engine {
    engine_with(EngineConfig::default())
}

fn at(e: &Engine, caller: &str, d: Destination, id: &str, now: u64) -> Decision {
    e.decide_classified(caller, Ok(d), now, Mode::Reserve(id))
}

fn limit_name(d: &Decision) -> Option<&'static str> {
    d.limit.as_ref().map(|l| l.name)
}

fn shadowing(reasons: &[Reason]) -> EngineConfig {
    let mut c = EngineConfig::default();
    for r in reasons {
        c.enforcement.shadow.insert(*r);
    }
    c
}

#[test]
fn a_user_holds_at_most_their_live_calls_and_an_end_frees_one() {
    let e = engine();
    assert!(call(&e, "x@a.com", us(), "1").is_admit());
    assert!(call(&e, "x@a.com", us(), "2").is_admit());
    let d = call(&e, "x@a.com", us(), "3");
    assert_eq!(reason(&d), Some("call_limit_reached"));
    assert_eq!(limit_name(&d), Some("user_concurrent_calls"));
    let l = d.limit.as_deref().unwrap();
    assert_eq!((l.limit, l.current), (Figure::Count(2), Figure::Count(3)));
    assert!(d.grant.is_none(), "a refused call holds nothing");
    // The same Call-ID again is the first admission replayed, not a third call.
    assert!(call(&e, "x@a.com", us(), "1").is_replay());
    // Each way a call ends gives its place back: settle, release, expiry.
    e.settle("1", 30, NOW + 30).unwrap();
    assert!(call(&e, "x@a.com", us(), "4").is_admit());
    e.release("2", NOW + 31).unwrap();
    assert!(call(&e, "x@a.com", us(), "5").is_admit());
    let expiry = NOW + 1800 + 120;
    assert_eq!(e.expire(expiry).len(), 2);
    assert!(at(&e, "x@a.com", us(), "6", expiry).is_admit());
}

#[test]
fn a_tenant_holds_at_most_its_live_calls_across_users() {
    let e = engine();
    assert!(call(&e, "x@a.com", us(), "1").is_admit());
    assert!(call(&e, "x@a.com", us(), "2").is_admit());
    assert!(call(&e, "y@a.com", us(), "3").is_admit());
    let d = call(&e, "y@a.com", us(), "4");
    assert_eq!(reason(&d), Some("call_limit_reached"));
    assert_eq!(limit_name(&d), Some("concurrent_calls"));
    // The refusal took nothing: y still holds one call, and a freed place is y's to take.
    e.settle("1", 10, NOW).unwrap();
    assert!(call(&e, "y@a.com", us(), "5").is_admit());
}

#[test]
fn a_user_row_overrides_the_tenant_user_limit() {
    let e = engine();
    assert!(call(&e, "z@a.com", us(), "1").is_admit());
    assert_eq!(
        limit_name(&call(&e, "z@a.com", us(), "2")),
        Some("user_concurrent_calls")
    );
    // dr@a.com may hold 5, but the tenant's 3 stops it first.
    e.settle("1", 5, NOW).unwrap();
    for i in 0..3 {
        assert!(call(&e, "dr@a.com", gb(), &format!("dr{i}")).is_admit());
    }
    assert_eq!(
        limit_name(&call(&e, "dr@a.com", gb(), "dr3")),
        Some("concurrent_calls")
    );
}

#[test]
fn the_rolling_minute_slides_and_says_when_to_retry() {
    let e = engine();
    // Four admissions a minute for x, each ended at once so live calls are not the limit.
    for i in 0..4u64 {
        let id = format!("r{i}");
        assert!(at(&e, "x@a.com", us(), &id, NOW + i * 10).is_admit(), "{i}");
        e.settle(&id, 1, NOW + i * 10).unwrap();
    }
    let d = at(&e, "x@a.com", us(), "r4", NOW + 40);
    assert_eq!(reason(&d), Some("rate_limit_reached"));
    assert_eq!(limit_name(&d), Some("user_calls_per_minute"));
    // The first admission (at NOW) leaves the window at NOW + 60.
    assert_eq!(d.retry_after(), Some(20));
    // A refusal is not an admission: it does not push the retry further.
    assert_eq!(
        at(&e, "x@a.com", us(), "r5", NOW + 59).retry_after(),
        Some(1)
    );
    assert!(at(&e, "x@a.com", us(), "r6", NOW + 60).is_admit());
    // The tenant's six a minute: y brings it to six, the seventh is the tenant's limit.
    e.settle("r6", 1, NOW + 60).unwrap();
    for i in 0..2 {
        let id = format!("y{i}");
        assert!(at(&e, "y@a.com", us(), &id, NOW + 61).is_admit());
        e.settle(&id, 1, NOW + 61).unwrap();
    }
    let d = at(&e, "y@a.com", us(), "y2", NOW + 61);
    assert_eq!(limit_name(&d), Some("calls_per_minute"));
    assert_eq!(
        d.retry_after(),
        Some(9),
        "x's admission at NOW + 10 leaves at NOW + 70"
    );
}

#[test]
fn a_velocity_rule_warns_then_blocks_its_destination_only() {
    let e = engine();
    let d = call(&e, "dr@a.com", mx(), "v1");
    assert!(d.is_admit() && d.warning.is_none());
    let d = call(&e, "dr@a.com", mx(), "v2");
    assert!(d.is_admit());
    let w = d.warning.as_deref().expect("past warn = 1");
    assert_eq!(
        (w.name, w.destination.as_deref()),
        ("velocity", Some("+52551"))
    );
    let d = call(&e, "dr@a.com", mx(), "v3");
    assert_eq!(reason(&d), Some("rate_limit_reached"));
    assert_eq!(limit_name(&d), Some("velocity"));
    assert!(d.retry_after().is_some_and(|r| r > 0 && r <= 600));
    // Other destinations are not watched by it.
    assert!(call(&e, "x@a.com", us(), "v4").is_admit());
}

#[test]
fn high_risk_prefixes_are_blocked_unless_the_tenant_allows_them() {
    let e = engine();
    let sat = Destination::new("+8816123456789", 881, Region::NON_GEO, NumberType::Voip);
    let d = call(&e, "dr@a.com", sat, "h1");
    assert_eq!(reason(&d), Some("high_risk_destination"));
    assert_eq!(d.rule, Rule::Barred);
    let hit = d.limit.as_deref().expect("the matching entry");
    assert_eq!(
        (hit.name, hit.destination.as_deref()),
        ("high_risk_prefixes", Some("+881"))
    );
    // Tenant b allows them: rule 6's international list decides instead.
    let d = call(&e, "w@b.com", sat, "h2");
    assert_eq!(reason(&d), Some("destination_not_supported"));
    // Emergency calls are never limited.
    let e911 = Destination::new("911", 1, Region::new("US").unwrap(), NumberType::Emergency);
    for i in 0..5 {
        assert!(call(&e, "z@a.com", e911, &format!("e{i}")).is_admit());
    }
}

#[test]
fn a_credits_call_dearer_than_the_tenant_allows_is_refused() {
    let e = engine();
    // c@a.com pays everything with credits. MX is 0.050 a minute: below 0.06.
    let d = call(&e, "c@a.com", mx(), "p1");
    assert_eq!(basis(&d), Some("credits"));
    let gb_mobile = Destination::new(
        "+447700900123",
        44,
        Region::new("GB").unwrap(),
        NumberType::Mobile,
    );
    let d = call(&e, "c@a.com", gb_mobile, "p2");
    assert_eq!(reason(&d), Some("destination_rate_too_high"));
    let l = d.limit.as_deref().unwrap();
    assert_eq!(l.current, Figure::Money(Money::parse("0.09").unwrap()));
    assert!(!e.reservations().contains("p2"));
}

#[test]
fn the_daily_cap_shrinks_the_grant_then_refuses_until_the_next_day() {
    let e = engine();
    let before = e.credits_balance("a").unwrap();
    // 2.00 a day at 0.05 a minute is 40 minutes: a grant of 30, then 10, then nothing.
    // (A Mexican number the velocity rule does not watch.)
    let w = Destination::new(
        "+525598765432",
        52,
        Region::new("MX").unwrap(),
        NumberType::Mobile,
    );
    let d1 = call(&e, "c@a.com", w, "d1");
    assert_eq!(d1.max_duration, Some(1800));
    e.settle("d1", 1800, NOW).unwrap();
    let d2 = call(&e, "c@a.com", w, "d2");
    assert_eq!(d2.max_duration, Some(600));
    let d3 = call(&e, "c@a.com", w, "d3");
    assert_eq!(reason(&d3), Some("daily_spend_limit_reached"));
    assert_eq!(limit_name(&d3), Some("daily_spend"));
    // A call that used less gives the rest back to the day.
    e.settle("d2", 60, NOW).unwrap();
    assert!(call(&e, "c@a.com", w, "d4").is_admit());
    // The next UTC day starts at zero.
    let tomorrow = (NOW / 86_400 + 1) * 86_400;
    e.settle("d4", 60, NOW).unwrap();
    let d = at(&e, "c@a.com", w, "d5", tomorrow);
    assert_eq!(d.max_duration, Some(1800));
    assert!(e.credits_balance("a").unwrap() < before);
}

#[test]
fn shadow_mode_admits_what_a_rule_would_refuse_and_says_why() {
    let e = engine_with(shadowing(&[
        Reason::CallLimitReached,
        Reason::PstnDisabledByPolicy,
        Reason::HighRiskDestination,
    ]));
    assert!(call(&e, "z@a.com", us(), "s1").is_admit());
    let d = call(&e, "z@a.com", us(), "s2");
    assert_eq!(basis(&d), Some("domestic_pool"));
    assert_eq!(d.shadow, Some(Reason::CallLimitReached));
    assert_eq!(limit_name(&d), Some("user_concurrent_calls"));
    // A policy reason: admitted as if the policy allowed it.
    let d = call(&e, "off@a.com", us(), "s3");
    assert_eq!(
        (basis(&d), d.shadow),
        (Some("domestic_pool"), Some(Reason::PstnDisabledByPolicy))
    );
    // The tenant's limit shadowed too: z holds 2 calls and off 1, so x's is the tenant's 4th.
    let d = call(&e, "x@a.com", us(), "s4");
    assert_eq!(d.shadow, Some(Reason::CallLimitReached));
    // A reason not listed still refuses: here the rate limit.
    let e = engine_with(shadowing(&[Reason::CallLimitReached]));
    for i in 0..4 {
        assert!(call(&e, "x@a.com", us(), &format!("t{i}")).is_admit());
    }
    assert_eq!(
        reason(&call(&e, "x@a.com", us(), "t4")),
        Some("rate_limit_reached")
    );
}

#[test]
fn a_dry_run_counts_nothing() {
    let e = engine();
    for _ in 0..10 {
        assert!(e
            .decide_classified("x@a.com", Ok(us()), NOW, Mode::DryRun)
            .is_admit());
    }
    assert!(call(&e, "x@a.com", us(), "1").is_admit());
    assert!(call(&e, "x@a.com", us(), "2").is_admit());
    // At the limit, the dry run says what the next call would get.
    let d = e.decide_classified("x@a.com", Ok(us()), NOW, Mode::DryRun);
    assert_eq!(reason(&d), Some("call_limit_reached"));
}

#[test]
fn a_restart_rebuilds_live_calls_windows_and_the_day_from_stored_calls() {
    let e = engine();
    assert!(call(&e, "x@a.com", us(), "1").is_admit());
    assert!(call(&e, "x@a.com", us(), "2").is_admit());
    for i in 0..2 {
        let id = format!("y{i}");
        assert!(call(&e, "y@a.com", us(), &id).is_admit());
        e.settle(&id, 1, NOW).unwrap();
    }
    assert!(call(&e, "c@a.com", mx(), "c1").is_admit());
    e.settle("c1", 1800, NOW).unwrap();
    let mut stored = Vec::new();
    e.reservations()
        .for_each(|id, r| stored.push(StoredCall::from_record(id, r)));
    let again = engine();
    again.restore(stored, NOW + 5);
    // x's two live calls are live again.
    assert_eq!(
        limit_name(&at(&again, "x@a.com", us(), "3", NOW + 5)),
        Some("user_concurrent_calls")
    );
    // y's two admissions and x's two and c's one are in the tenant's minute: 6 with the next.
    assert!(at(&again, "y@a.com", us(), "y2", NOW + 5).is_admit());
    again.settle("y2", 1, NOW + 5).unwrap();
    assert_eq!(
        limit_name(&at(&again, "y@a.com", us(), "y3", NOW + 5)),
        Some("calls_per_minute")
    );
    // c spent 1.50 of the day's 2.00: a grant of 10 minutes is what is left.
    let d = at(&again, "c@a.com", mx(), "c2", NOW + 70);
    assert_eq!(d.max_duration, Some(600));
}

#[test]
fn an_aborted_admission_is_taken_back() {
    let e = engine();
    assert!(call(&e, "x@a.com", us(), "1").is_admit());
    assert!(call(&e, "x@a.com", us(), "2").is_admit());
    assert!(e.abort("2"));
    assert!(call(&e, "x@a.com", us(), "3").is_admit());
    // Out of the velocity window too: two more calls to the watched prefix fit, not one.
    e.settle("1", 5, NOW).unwrap();
    e.settle("3", 5, NOW).unwrap();
    assert!(call(&e, "dr@a.com", mx(), "v1").is_admit());
    assert!(e.abort("v1"));
    assert!(call(&e, "dr@a.com", mx(), "v2").is_admit());
    assert!(call(&e, "dr@a.com", mx(), "v3").is_admit());
    assert_eq!(
        limit_name(&call(&e, "dr@a.com", mx(), "v4")),
        Some("velocity")
    );
}

#[test]
fn a_reload_keeps_the_counts_and_applies_new_limits_at_once() {
    let e = engine();
    assert!(call(&e, "x@a.com", us(), "1").is_admit());
    let lower = TENANTS.replace("user_concurrent_calls = 2", "user_concurrent_calls = 1");
    e.reload(snapshot_of(&lower, USERS));
    assert_eq!(
        limit_name(&call(&e, "x@a.com", us(), "2")),
        Some("user_concurrent_calls")
    );
    // The call admitted before the reload still ends on the counts it was taken from.
    e.settle("1", 5, NOW).unwrap();
    assert!(call(&e, "x@a.com", us(), "3").is_admit());
}

#[test]
fn a_tenant_wide_limit_set_by_a_reload_counts_the_calls_already_live() {
    // Tenant b has no tenant-wide limit: its counts are not kept.
    let e = engine();
    for i in 0..3 {
        assert!(call(&e, "w@b.com", us(), &format!("b{i}")).is_admit());
    }
    let limited = TENANTS.replace(
        "high_risk = \"allow\"",
        "high_risk = \"allow\"\nconcurrent_calls = 3\ncalls_per_minute = 4",
    );
    e.reload(snapshot_of(&limited, USERS));
    // The three live calls count: the fourth is refused.
    let d = call(&e, "w@b.com", us(), "b3");
    assert_eq!(limit_name(&d), Some("concurrent_calls"));
    // An end takes one off (its hold now says it was counted), and the minute holds the three
    // admissions: one more fits, then the rate limit.
    e.settle("b0", 5, NOW).unwrap();
    assert!(call(&e, "w@b.com", us(), "b4").is_admit());
    e.settle("b1", 5, NOW).unwrap();
    assert_eq!(
        limit_name(&call(&e, "w@b.com", us(), "b5")),
        Some("calls_per_minute")
    );
}
