//! Meeting dial-out ([`crate::conference`]): the CPC axis, the tenant's Audio Conferencing pool
//! for Zone A, credits beyond it, and what a user's own call still gets.

use super::tests::{basis, r, reason, NOW};
use super::*;
use crate::numbering::NumberType;
use crate::pools::PoolKind;
use crate::Basis;

const TENANTS: &str = r#"
[[tenant]]
id = "m"
domains = ["m.com"]
credits = "100.00"
"#;

/// Six conferencing licences (MCOMEETADV, and E5 which includes it): a 360-minute pool.
const USERS: &str = "tenant,user,line_uri,usage_location,licenses,voice_routing,dial_out_policy
m,org@m.com,,US,MCOEV;MCOPSTN1;MCOMEETADV,,
m,host@m.com,,GB,MCOMEETADV,,
m,cred@m.com,,US,MCOMEETADV;MCOPSTNC,,
m,nolic@m.com,,US,MCOEV;MCOPSTN1,,
m,paid@m.com,,US,MCOEV;MCOPSTNC,,
m,cpcoff@m.com,,US,MCOMEETADV,,DialoutCPCDisabledPSTNInternational
m,cpcdom@m.com,,US,MCOMEETADV,,DialoutCPCDomesticPSTNInternational
m,zonea@m.com,,US,SPE_E5;MCOPSTN1,,DialoutCPCZoneAPSTNDisabled
";

fn engine() -> Engine {
    let snap = super::tests::snapshot_of(TENANTS, USERS);
    Engine::new(super::tests::plan(), EngineConfig::default(), snap, NOW)
}

fn gb() -> Destination {
    Destination::new("+442079460000", 44, r("GB"), NumberType::FixedLine)
}
fn us() -> Destination {
    Destination::new("+12125550100", 1, r("US"), NumberType::FixedLineOrMobile)
}
/// Outside Zone A.
fn ae() -> Destination {
    Destination::new("+97142000000", 971, r("AE"), NumberType::FixedLine)
}

fn dial_out(e: &Engine, caller: &str, d: Destination, id: &str) -> Decision {
    e.decide_classified_as(
        caller,
        Ok(d),
        Service::ConferenceDialout,
        NOW,
        Mode::Reserve(id),
    )
}

fn conference_pool(e: &Engine) -> crate::pools::PoolStatus {
    e.pools(NOW)
        .into_iter()
        .find(|p| p.key.kind == PoolKind::Conference)
        .expect("the tenant's conferencing pool")
}

#[test]
fn the_tenant_pool_pays_for_zone_a_whoever_organizes() {
    let e = engine();
    let p = conference_pool(&e);
    assert_eq!(
        (
            &*p.key.tenant,
            p.key.region,
            &*p.key.sku,
            p.capacity_seconds
        ),
        ("m", Region::NON_GEO, "AudioConferencing", 6 * 3600)
    );
    // An organizer in the US dialing the UK, one in the UK without Phone System dialing the
    // US: both Zone A, both from the one pool; no calling-plan pool moves.
    let a = dial_out(&e, "org@m.com", gb(), "a");
    assert_eq!((basis(&a), a.rule), (Some("conference_pool"), Rule::Pool));
    assert_eq!(a.route, Some(Route::CallingPlan(r("US"))));
    let b = dial_out(&e, "host@m.com", us(), "b");
    assert_eq!(basis(&b), Some("conference_pool"));
    assert_eq!(conference_pool(&e).reserved_seconds, 3600);
    assert!(e
        .pools(NOW)
        .iter()
        .filter(|p| p.key.kind != PoolKind::Conference)
        .all(|p| p.reserved_seconds == 0));
    let s = e.settle("a", 61, NOW + 61).unwrap();
    assert_eq!(s.charged_seconds, 120);
    assert_eq!(conference_pool(&e).used_seconds, 120);
}

#[test]
fn the_cpc_axis_governs_dial_out_and_the_pstn_axis_calls() {
    let e = engine();
    let d = dial_out(&e, "cpcoff@m.com", gb(), "off");
    assert_eq!(
        (reason(&d), d.rule),
        (
            Some("conference_dialout_disabled_by_policy"),
            Rule::DialOutPolicy
        )
    );
    let d = dial_out(&e, "cpcdom@m.com", gb(), "dom-gb");
    assert_eq!(reason(&d), Some("international_disabled_by_policy"));
    let d = dial_out(&e, "cpcdom@m.com", us(), "dom-us");
    assert_eq!(basis(&d), Some("conference_pool"));
    // Zone A only: the UK yes, the UAE no; and the same user's own PSTN calls are disabled.
    let d = dial_out(&e, "zonea@m.com", gb(), "za-gb");
    assert_eq!(basis(&d), Some("conference_pool"));
    let d = dial_out(&e, "zonea@m.com", ae(), "za-ae");
    assert_eq!(reason(&d), Some("international_disabled_by_policy"));
    let d = e.decide_classified("zonea@m.com", Ok(gb()), NOW, Mode::DryRun);
    assert_eq!(reason(&d), Some("pstn_disabled_by_policy"));
    // Emergency numbers are admitted as always.
    let d = dial_out(
        &e,
        "cpcoff@m.com",
        Destination::new("911", 1, r("US"), NumberType::Emergency),
        "sos",
    );
    assert_eq!(basis(&d), Some("emergency"));
}

#[test]
fn credits_pay_beyond_the_pool_and_outside_zone_a() {
    let e = engine();
    // Outside Zone A: credits if the organizer holds them, else not supported.
    let d = dial_out(&e, "cred@m.com", ae(), "c-ae");
    assert_eq!(basis(&d), Some("credits"));
    let d = dial_out(&e, "org@m.com", ae(), "o-ae");
    assert_eq!(reason(&d), Some("destination_not_supported"));
    // No conferencing licence: credits, or no way to pay.
    let d = dial_out(&e, "paid@m.com", gb(), "p-gb");
    assert_eq!(basis(&d), Some("credits"));
    let d = dial_out(&e, "nolic@m.com", gb(), "n-gb");
    assert_eq!(reason(&d), Some("no_calling_plan"));
    // The pool used up: credits for who holds them, pool_exhausted for the others.
    let mut i = 0;
    while dial_out(&e, "org@m.com", gb(), &format!("drain-{i}")).basis()
        == Some(Basis::ConferencePool)
    {
        i += 1;
    }
    assert_eq!(conference_pool(&e).reserved_seconds, 6 * 3600);
    let d = dial_out(&e, "host@m.com", gb(), "late");
    assert_eq!(reason(&d), Some("pool_exhausted"));
    let d = dial_out(&e, "cred@m.com", gb(), "late-paid");
    assert_eq!(basis(&d), Some("credits"));
}
