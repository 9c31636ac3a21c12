//! One test per rule of DESIGN §4 and per reason code the engine gives, plus the reservation
//! model (settle, extend, release, expire, rollover, reload).

use super::*;
use crate::load::{self, LoadErrors, Records};
use crate::numbering::Why;
use crate::pools::PoolKind;
use crate::Basis;

/// 2026-11-18T…Z.
pub(super) const NOW: u64 = 1_795_000_000;

const TENANTS: &str = r#"
[[tenant]]
id = "t"
domains = ["t.com", "t.example"]
credits = "10.00"
[tenant.direct_routing]
sbc1 = "sbc1.t.com:5061;transport=tls"
# These tests run more calls of one user than the default limits allow (limits_tests.rs).
[tenant.limits]
user_concurrent_calls = 0
user_calls_per_minute = 0

[[tenant]]
id = "u"
domains = ["u.com"]
credits = "1.00"

[[tenant]]
id = "v"
domains = ["v.com"]
credits = "100.00"
user_spend_limit = "0.50"
"#;

const USERS: &str = "tenant,user,line_uri,usage_location,licenses,voice_routing,dial_out_policy
t,us1@t.com,+12065550101,US,MCOEV;MCOPSTN1,,
t,none@t.com,,US,,,
t,nops@t.com,,US,MCOPSTN1,,
t,dis@t.com,,US,MCOEV;MCOPSTN1,,DialoutCPCandPSTNDisabled
t,dom@t.com,,US,MCOEV;MCOPSTN1,,DialoutCPCInternationalPSTNDomestic
t,pr@t.com,+17875550101,PR,MCOEV;MCOPSTN1,,
t,ca@t.com,,CA,MCOEV;MCOPSTN1,,
t,intl@t.com,,US,SPE_E5;MCOPSTN2,,
t,cred@t.com,,US,MCOEV;MCOPSTN1;MCOPSTNC,,
t,dr@t.com,,US,MCOEV,direct_routing:sbc1,
t,ps@t.com,,US,MCOEV;ENTERPRISEPACK,,
t,gb@t.com,,GB,MCOEV;MCOPSTN1,,
u,small@u.com,,US,MCOEV;MCOPSTN5;MCOPSTNC,,
v,lim@v.com,,US,MCOEV;MCOPSTNC,,
";

pub(super) fn snapshot() -> Snapshot {
    snapshot_of(TENANTS, USERS)
}

/// A snapshot of these `tenants.toml` and `users.csv`, with the shipped catalog and rates.
pub(super) fn snapshot_of(tenants: &str, users: &str) -> Snapshot {
    let mut e = LoadErrors::default();
    let rec = Records {
        tenants: load::parse_tenants(tenants, &mut e),
        users: load::parse_users(users, &mut e),
        catalog: load::parse_catalog(include_str!("../../config/catalog.toml"), &mut e),
        rates: load::parse_rates(include_str!("../../config/rates.csv"), &mut e),
    };
    assert!(e.is_empty(), "{e}");
    Snapshot::build(rec).unwrap_or_else(|e| panic!("{e}"))
}

/// The numbering plan, compiled once for all tests.
pub(super) fn plan() -> Arc<NumberingPlan> {
    static PLAN: std::sync::OnceLock<Arc<NumberingPlan>> = std::sync::OnceLock::new();
    Arc::clone(PLAN.get_or_init(|| Arc::new(NumberingPlan::builtin().unwrap())))
}

pub(super) fn engine() -> Engine {
    Engine::new(plan(), EngineConfig::default(), snapshot(), NOW)
}

pub(super) fn r(c: &str) -> Region {
    Region::new(c).unwrap()
}

pub(super) fn us() -> Destination {
    Destination::new("+12125550100", 1, r("US"), NumberType::FixedLineOrMobile)
}
pub(super) fn ca() -> Destination {
    Destination::new("+14165550100", 1, r("CA"), NumberType::FixedLine)
}
pub(super) fn gb() -> Destination {
    Destination::new("+442079460000", 44, r("GB"), NumberType::FixedLine)
}
pub(super) fn mx() -> Destination {
    Destination::new("+525512345678", 52, r("MX"), NumberType::Mobile)
}
pub(super) fn emergency() -> Destination {
    Destination::new("911", 1, r("US"), NumberType::Emergency)
}

/// Reserving decision for a classified destination under a fresh Call-ID.
pub(super) fn call(e: &Engine, caller: &str, d: Destination, id: &str) -> Decision {
    e.decide_classified(caller, Ok(d), NOW, Mode::Reserve(id))
}

pub(super) fn reason(d: &Decision) -> Option<&'static str> {
    d.reason().map(|r| r.as_str())
}
pub(super) fn basis(d: &Decision) -> Option<&'static str> {
    d.basis().map(|b| b.as_str())
}

pub(super) fn pool(
    e: &Engine,
    tenant: &str,
    region: &str,
    sku: &str,
    kind: PoolKind,
) -> crate::pools::PoolStatus {
    e.pools(NOW)
        .into_iter()
        .find(|p| {
            &*p.key.tenant == tenant
                && p.key.region.as_str() == region
                && &*p.key.sku == sku
                && p.key.kind == kind
        })
        .unwrap()
}

/// Drains a pool with reservations of the given caller.
pub(super) fn drain(e: &Engine, caller: &str, d: Destination, prefix: &str) {
    for i in 0..1000 {
        let dec = call(e, caller, d, &format!("{prefix}-{i}"));
        if dec.basis() != Some(Basis::DomesticPool) && dec.basis() != Some(Basis::InternationalPool)
        {
            return;
        }
    }
}

#[test]
fn rule1_emergency_always_admitted_free() {
    let e = engine();
    for caller in [
        "none@t.com",
        "nops@t.com",
        "dis@t.com",
        "ps@t.com",
        "intl@t.com",
    ] {
        let d = call(&e, caller, emergency(), caller);
        assert_eq!(basis(&d), Some("emergency"), "{caller}");
        assert_eq!(d.rule, Rule::Emergency);
        assert_eq!(d.route, Some(Route::Emergency));
        assert!(d.is_admit());
        assert_eq!(d.max_duration, Some(14_400));
    }
    // With the pool exhausted.
    drain(&e, "small@u.com", us(), "x");
    let d = call(&e, "small@u.com", emergency(), "e-small");
    assert_eq!(basis(&d), Some("emergency"));
    // Never charged.
    let s = e.settle("e-small", 600, NOW + 600).unwrap();
    assert_eq!((s.charged_seconds, s.charged_money), (0, Money::ZERO));
}

#[test]
fn rule1_unknown_caller_dialing_112_or_911() {
    let e = engine();
    for dial in ["112", "911", "tel:911"] {
        let d = e.decide("stranger@nowhere.example", dial, NOW);
        assert_eq!(basis(&d), Some("emergency"), "{dial}");
        assert_eq!(
            e.route_host(d.route.as_ref().unwrap()),
            "emergency.example.net"
        );
        let d = e.authorize(
            &Request {
                call_id: dial,
                caller: "+19995550000",
                dialed: dial,
            },
            NOW,
        );
        assert_eq!(basis(&d), Some("emergency"), "{dial}");
    }
}

#[test]
fn rule2_unknown_caller() {
    let e = engine();
    let d = call(&e, "mallory@t.com", us(), "c");
    assert_eq!(reason(&d), Some("unknown_caller"));
    assert_eq!(d.rule, Rule::UnknownCaller);
    assert_eq!(
        reason(&e.decide("", "+12125550100", NOW)),
        Some("unknown_caller")
    );
}

#[test]
fn rule3_no_phone_system() {
    let e = engine();
    assert_eq!(
        reason(&call(&e, "none@t.com", us(), "a")),
        Some("no_phone_system")
    );
    assert_eq!(
        reason(&call(&e, "nops@t.com", us(), "b")),
        Some("no_phone_system")
    );
}

#[test]
fn rule4_incomplete_and_invalid_numbers() {
    let e = engine();
    let d = e.decide_classified(
        "us1@t.com",
        Err(NumberError::Incomplete(Why::TooShort)),
        NOW,
        Mode::DryRun,
    );
    assert_eq!(
        (reason(&d), d.rule),
        (Some("incomplete_number"), Rule::Number)
    );
    let d = e.decide_classified(
        "us1@t.com",
        Err(NumberError::Invalid(Why::NoMatch)),
        NOW,
        Mode::DryRun,
    );
    assert_eq!(reason(&d), Some("invalid_number"));
}

#[test]
fn rule5_dial_out_policy() {
    let e = engine();
    let d = call(&e, "dis@t.com", us(), "a");
    assert_eq!(
        (reason(&d), d.rule),
        (Some("pstn_disabled_by_policy"), Rule::DialOutPolicy)
    );
    assert_eq!(
        reason(&call(&e, "dom@t.com", gb(), "b")),
        Some("international_disabled_by_policy")
    );
    // PSTNDomestic still reaches Canada from the US (domestic).
    assert_eq!(
        basis(&call(&e, "dom@t.com", ca(), "c")),
        Some("domestic_pool")
    );
}

#[test]
fn rule6_barred_destinations() {
    let e = engine();
    let premium = Destination::new("+19005550100", 1, r("US"), NumberType::PremiumRate);
    let uk449 = Destination::new("+449012345678", 44, r("GB"), NumberType::Unknown);
    let short = Destination::new("611", 1, r("US"), NumberType::ShortCode);
    for (d, who) in [
        (premium, "us1@t.com"),
        (uk449, "gb@t.com"),
        (short, "us1@t.com"),
    ] {
        let dec = call(&e, who, d, d.e164());
        assert_eq!(
            (reason(&dec), dec.rule),
            (Some("destination_not_supported"), Rule::Barred),
            "{d:?}"
        );
    }
}

#[test]
fn rule7_direct_routing() {
    let e = engine();
    let d = call(&e, "dr@t.com", gb(), "dr");
    assert_eq!(basis(&d), Some("direct_routing"));
    assert_eq!(
        e.route_host(d.route.as_ref().unwrap()),
        "sbc1.t.com:5061;transport=tls"
    );
    let s = e.settle("dr", 125, NOW + 125).unwrap();
    assert_eq!(s.charged_seconds, 0);
}

#[test]
fn rule8_domestic_toll_free_is_free() {
    let e = engine();
    let tf = Destination::new("+18005550100", 1, r("US"), NumberType::TollFree);
    let d = call(&e, "ca@t.com", tf, "tf");
    assert_eq!((basis(&d), d.rule), (Some("free"), Rule::Domestic));
    let before = pool(&e, "t", "CA", "MCOPSTN1", PoolKind::Domestic);
    assert_eq!(before.reserved_seconds, 0);
    // A Phone-System-only user has no PSTN at all, toll-free included.
    assert_eq!(
        reason(&call(&e, "ps@t.com", tf, "tf2")),
        Some("no_calling_plan")
    );
}

#[test]
fn rule9_domestic_pools_us_ca_pr() {
    let e = engine();
    let d = call(&e, "us1@t.com", ca(), "us-ca");
    assert_eq!(
        (basis(&d), d.rule, d.max_duration),
        (Some("domestic_pool"), Rule::Pool, Some(1800))
    );
    assert_eq!(
        e.route_host(d.route.as_ref().unwrap()),
        "pstn-us.example.net"
    );
    let d = call(&e, "pr@t.com", us(), "pr-us");
    assert_eq!(basis(&d), Some("domestic_pool"));
    // PR pools with the US: both reservations are in the US pool.
    let p = pool(&e, "t", "US", "MCOPSTN1", PoolKind::Domestic);
    assert_eq!(p.reserved_seconds, 3600);
    // 6 MCOPSTN1 licenses in US+PR (us1, nops, dis, dom, pr, cred) × 3000 min.
    assert_eq!(p.capacity_seconds, 6 * 3000 * 60);
    let d = call(&e, "ca@t.com", us(), "ca-us");
    assert_eq!(basis(&d), Some("domestic_pool"));
    assert_eq!(
        pool(&e, "t", "CA", "MCOPSTN1", PoolKind::Domestic).reserved_seconds,
        1800
    );
}

#[test]
fn rule9_international_plan_draws_its_600_minute_pool() {
    let e = engine();
    let d = call(&e, "intl@t.com", gb(), "i0");
    assert_eq!(basis(&d), Some("international_pool"));
    let p = pool(&e, "t", "US", "MCOPSTN2", PoolKind::International);
    assert_eq!((p.capacity_seconds, p.reserved_seconds), (36_000, 1800));
    // Domestic calls draw the domestic pool of the same plan.
    assert_eq!(
        basis(&call(&e, "intl@t.com", us(), "i1")),
        Some("domestic_pool")
    );
    assert_eq!(
        pool(&e, "t", "US", "MCOPSTN2", PoolKind::Domestic).reserved_seconds,
        1800
    );
    // 600 minutes = 20 grants of 30 minutes; the 21st fails: no credits → pool_exhausted.
    for i in 2..21 {
        assert_eq!(
            basis(&call(&e, "intl@t.com", mx(), &format!("i{i}"))),
            Some("international_pool")
        );
    }
    let d = call(&e, "intl@t.com", mx(), "i21");
    assert_eq!((reason(&d), d.rule), (Some("pool_exhausted"), Rule::Pool));
}

#[test]
fn rule10_domestic_plan_abroad_with_and_without_credits() {
    let e = engine();
    let d = call(&e, "us1@t.com", gb(), "a");
    assert_eq!(reason(&d), Some("international_not_in_plan"));
    let d = call(&e, "cred@t.com", gb(), "b");
    assert_eq!(
        (basis(&d), d.rule, d.max_duration),
        (Some("credits"), Rule::Credits, Some(1800))
    );
    // GB fixed line at 0.022/min: 30 minutes reserve 0.66.
    assert_eq!(e.credits_balance("t"), Some(Money(10_000_000 - 660_000)));
    let s = e.settle("b", 61, NOW + 61).unwrap();
    assert_eq!((s.charged_seconds, s.charged_money), (120, Money(44_000)));
    assert_eq!(e.credits_balance("t"), Some(Money(10_000_000 - 44_000)));
    assert_eq!(
        reason(&call(&e, "ps@t.com", us(), "c")),
        Some("no_calling_plan")
    );
}

#[test]
fn rule10_pool_exhausted_then_credits_then_exhausted() {
    let e = engine();
    // MCOPSTN5: 120 minutes = 7200 s = 4 grants.
    for i in 0..4 {
        assert_eq!(
            basis(&call(&e, "small@u.com", us(), &format!("p{i}"))),
            Some("domestic_pool")
        );
    }
    // Tenant u has 1.00 at 0.019/min: 30 min (0.57), then 22 min (0.418), then nothing.
    let d = call(&e, "small@u.com", us(), "c1");
    assert_eq!((basis(&d), d.max_duration), (Some("credits"), Some(1800)));
    let d = call(&e, "small@u.com", us(), "c2");
    assert_eq!((basis(&d), d.max_duration), (Some("credits"), Some(1320)));
    let d = call(&e, "small@u.com", us(), "c3");
    assert_eq!(
        (reason(&d), d.rule),
        (Some("credits_exhausted"), Rule::Credits)
    );
    assert_eq!(e.credits_balance("u"), Some(Money(12_000)));
    // All tenants at once agree with each one's own figure, beside the configured one.
    for (id, balance, configured) in e.credits_balances() {
        assert_eq!(Some(balance), e.credits_balance(&id), "{id}");
        let tenant = e.snapshot().tenants.iter().find(|t| t.id == id).cloned();
        assert_eq!(tenant.map(|t| t.credits), Some(configured), "{id}");
    }
    assert!(e
        .credits_balances()
        .iter()
        .any(|(id, b, c)| &**id == "u" && *b == Money(12_000) && *c == Money(1_000_000)));
}

#[test]
fn rule10_spend_limit() {
    let e = engine();
    // 0.50 limit at 0.019/min: 26 minutes.
    let d = call(&e, "lim@v.com", us(), "l1");
    assert_eq!((basis(&d), d.max_duration), (Some("credits"), Some(1560)));
    let d = call(&e, "lim@v.com", us(), "l2");
    assert_eq!(reason(&d), Some("spend_limit_reached"));
    e.release("l1", NOW).unwrap();
    assert_eq!(basis(&call(&e, "lim@v.com", us(), "l3")), Some("credits"));
}

#[test]
fn user_spend_reports_each_users_month_with_the_tenant() {
    let e = engine();
    assert!(e.user_spend(NOW).is_empty());
    call(&e, "lim@v.com", us(), "s1");
    let spend = e.user_spend(NOW);
    let lim = crate::credits::UserSpend {
        tenant: "v".into(),
        user: "lim@v.com".into(),
        // 26 minutes at 0.019: what the reservation holds counts already.
        spent: Money(494_000),
    };
    assert_eq!(spend, std::slice::from_ref(&lim));
    e.settle("s1", 60, NOW).unwrap();
    assert_eq!(
        e.user_spend(NOW),
        [crate::credits::UserSpend {
            spent: Money(19_000),
            ..lim
        }]
    );
    // Another month has its own figures.
    assert!(e.user_spend(NOW + 40 * 86_400).is_empty());
}

/// Through `authorize()` with dialed strings: the real numbering plan.
#[test]
fn authorize_with_dialed_strings() {
    let e = engine();
    let mut n = 0;
    let mut auth = |caller: &str, dialed: &str| {
        n += 1;
        e.authorize(
            &Request {
                call_id: &format!("s{n}"),
                caller,
                dialed,
            },
            NOW,
        )
    };
    let d = auth("intl@t.com", "+442079460000");
    assert_eq!(basis(&d), Some("international_pool"));
    let dest = d.destination.unwrap();
    assert_eq!((dest.e164(), dest.region.as_str()), ("+442079460000", "GB"));
    assert_eq!(
        e.route_host(d.route.as_ref().unwrap()),
        "pstn-us.example.net"
    );
    for (caller, dial) in [
        ("gb@t.com", "112"),
        ("gb@t.com", "999"),
        ("us1@t.com", "911"),
        ("none@t.com", "911"),
    ] {
        assert_eq!(
            basis(&auth(caller, dial)),
            Some("emergency"),
            "{caller} {dial}"
        );
    }
    let d = auth("gb@t.com", "020 7946 0000");
    assert_eq!(basis(&d), Some("domestic_pool"));
    assert_eq!(d.destination.unwrap().e164(), "+442079460000");
    assert_eq!(
        e.route_host(d.route.as_ref().unwrap()),
        "pstn-gb.example.net"
    );
    assert_eq!(
        basis(&auth("us1@t.com", "+1 416 555 0100")),
        Some("domestic_pool")
    );
    assert_eq!(
        basis(&auth("pr@t.com", "2125550100")),
        Some("domestic_pool")
    );
    assert_eq!(
        reason(&auth("us1@t.com", "+44 20 7946 0000")),
        Some("international_not_in_plan")
    );
    assert_eq!(basis(&auth("us1@t.com", "1-800-555-0100")), Some("free"));
    assert_eq!(
        reason(&auth("us1@t.com", "+1 900 555 0100")),
        Some("destination_not_supported")
    );
    assert_eq!(
        reason(&auth("gb@t.com", "09098790000")),
        Some("destination_not_supported")
    );
    assert_eq!(
        reason(&auth("us1@t.com", "+1212555")),
        Some("incomplete_number")
    );
    assert_eq!(reason(&auth("us1@t.com", "hello")), Some("invalid_number"));
    assert_eq!(
        reason(&auth("stranger@x.com", "+442079460000")),
        Some("unknown_caller")
    );
}

/// Rule 1 does not depend on the directory (issue 15): a caller it cannot place is placed by
/// their own E.164 number, else by `[emergency].default_region`; only emergency numbers are
/// admitted that way, everything else stays `unknown_caller`.
#[test]
fn rule1_national_emergency_numbers_of_callers_the_directory_cannot_place() {
    let e = engine();
    for (caller, dial) in [
        ("+442079460000", "999"),
        ("tel:+442079460000", "999"),
        ("+33142685300", "15"),
        ("+33142685300", "17"),
        ("sip:+33142685300@gw.example;user=phone", "15"),
    ] {
        let d = e.decide(caller, dial, NOW);
        assert_eq!(basis(&d), Some("emergency"), "{caller} {dial}");
        assert_eq!(d.rule, Rule::Emergency);
    }
    // Not emergency where the caller's number says they are, and no default: rule 2.
    for (caller, dial) in [
        ("+12065550100", "999"),
        ("stranger@nowhere.example", "999"),
        ("+442079460000", "02079460001"),
        ("442079460000", "999"),
    ] {
        let d = e.decide(caller, dial, NOW);
        assert_eq!(reason(&d), Some("unknown_caller"), "{caller} {dial}");
    }
    // A default region places callers whose number says nothing.
    let config = EngineConfig {
        emergency: crate::config::Emergency {
            default_region: "GB".into(),
        },
        ..EngineConfig::default()
    };
    let e = Engine::new(plan(), config, snapshot(), NOW);
    assert_eq!(
        basis(&e.decide("stranger@nowhere.example", "999", NOW)),
        Some("emergency")
    );
    assert_eq!(
        basis(&e.decide("442079460000", "999", NOW)),
        Some("emergency")
    );
    // The caller's own number comes before the default.
    assert_eq!(
        reason(&e.decide("+33142685300", "999", NOW)),
        Some("unknown_caller")
    );
    assert_eq!(
        basis(&e.decide("+33142685300", "15", NOW)),
        Some("emergency")
    );
    // A known caller is placed by the directory (the license location), not by their number.
    assert_eq!(basis(&e.decide("gb@t.com", "999", NOW)), Some("emergency"));
}

/// Shedding (DESIGN §7 overload): everything but an emergency call may be refused unexamined;
/// what is an emergency number is decided as `authorize` decides it.
#[test]
fn only_emergency_calls_are_never_shed() {
    let e = engine();
    assert!(e.numbering().longest_emergency_number() >= 3);
    assert!(e.may_shed("us1@t.com", "+12125550100", NOW));
    assert!(e.may_shed("us1@t.com", "+442079460000", NOW));
    for (caller, dial) in [
        ("us1@t.com", "911"),
        ("us1@t.com", "112"),
        ("gb@t.com", "999"),
        ("stranger@nowhere.example", "911"),
        ("+442079460000", "999"),
    ] {
        assert!(!e.may_shed(caller, dial, NOW), "{caller} {dial}");
        assert_eq!(basis(&e.decide(caller, dial, NOW)), Some("emergency"));
    }
    // Short, but no emergency number where the caller is.
    assert!(e.may_shed("us1@t.com", "999", NOW));
    assert!(e.may_shed("stranger@nowhere.example", "999", NOW));
}

#[test]
fn a_line_of_the_callers_own_tenant_is_internal_and_free() {
    let e = engine();
    let line = |n: &str| Destination::new(n, 1, r("US"), NumberType::FixedLineOrMobile);
    // No calling plan, or PSTN calls disabled: a colleague's line is still free.
    for (caller, id) in [("ps@t.com", "i1"), ("dis@t.com", "i2"), ("us1@t.com", "i3")] {
        let d = call(&e, caller, line("+17875550101"), id);
        assert_eq!(
            (basis(&d), d.rule),
            (Some("internal"), Rule::Internal),
            "{caller}"
        );
        assert_eq!(e.route_host(d.route.as_ref().unwrap()), "teams.example.net");
        assert_eq!(
            d.max_duration,
            Some(EngineConfig::default().grants.max_call_seconds)
        );
    }
    assert!(e.pools(NOW).iter().all(|p| p.reserved_seconds == 0));
    // Phone System is still needed.
    let d = call(&e, "none@t.com", line("+17875550101"), "i4");
    assert_eq!(reason(&d), Some("no_phone_system"));
    // Another tenant's line is an ordinary PSTN call.
    let d = call(&e, "small@u.com", line("+12065550101"), "i5");
    assert_eq!(basis(&d), Some("domestic_pool"));
}
