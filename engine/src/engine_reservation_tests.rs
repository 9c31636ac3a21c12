//! Tests of the reservation model (DESIGN §4 "Reservations"): dry run, grants, settle twice /
//! unknown / after expiry, release, extend, duplicate Call-IDs, month rollover, reload.

use super::tests::*;
use super::*;
use crate::pools::PoolKind;

#[test]
fn dry_run_reserves_nothing() {
    let e = engine();
    for _ in 0..10 {
        let d = e.decide_classified("small@u.com", Ok(us()), NOW, Mode::DryRun);
        assert_eq!(
            (basis(&d), d.max_duration),
            (Some("domestic_pool"), Some(1800))
        );
        assert!(d.grant.is_none());
    }
    assert_eq!(
        pool(&e, "u", "US", "MCOPSTN5", PoolKind::Domestic).reserved_seconds,
        0
    );
    assert!(e.reservations().is_empty());
}

#[test]
fn grant_is_at_most_what_is_left_and_rounds() {
    let e = engine();
    for i in 0..3 {
        call(&e, "small@u.com", us(), &format!("g{i}"));
    }
    e.settle("g0", 1, NOW + 1).unwrap();
    // 7200 - 60 used - 3600 reserved = 3540 left: grant 1800, then 1740.
    assert_eq!(call(&e, "small@u.com", us(), "g3").max_duration, Some(1800));
    assert_eq!(call(&e, "small@u.com", us(), "g4").max_duration, Some(1740));
    let p = pool(&e, "u", "US", "MCOPSTN5", PoolKind::Domestic);
    assert_eq!((p.used_seconds, p.remaining_seconds), (60, 0));
}

#[test]
fn settle_twice_unknown_and_after_expiry() {
    let e = engine();
    call(&e, "us1@t.com", us(), "a");
    let s1 = e.settle("a", 90, NOW + 90).unwrap();
    assert!(s1.changed);
    assert_eq!((s1.state, s1.charged_seconds), (CallState::Settled, 120));
    let s2 = e.settle("a", 500, NOW + 900).unwrap();
    assert!(!s2.changed);
    assert_eq!((s2.billable_seconds, s2.charged_seconds), (90, 120));
    assert_eq!(
        pool(&e, "t", "US", "MCOPSTN1", PoolKind::Domestic).used_seconds,
        120
    );

    assert_eq!(e.settle("nope", 10, NOW), Err(CallError::UnknownCall));
    assert_eq!(e.release("nope", NOW), Err(CallError::UnknownCall));
    assert_eq!(e.extend("nope", NOW), Err(CallError::UnknownCall));

    call(&e, "us1@t.com", us(), "b");
    assert!(e.expire(NOW + 1800 + 119).is_empty());
    let ex = e.expire(NOW + 1800 + 120);
    assert_eq!(ex.len(), 1);
    assert_eq!(
        (ex[0].state, ex[0].charged_seconds),
        (CallState::Expired, 1800)
    );
    let s = e.settle("b", 10, NOW + 3000).unwrap();
    assert!(!s.changed);
    assert_eq!((s.state, s.charged_seconds), (CallState::Expired, 1800));
    assert!(e.expire(NOW + 9999).is_empty());
    assert_eq!(
        pool(&e, "t", "US", "MCOPSTN1", PoolKind::Domestic).used_seconds,
        1920
    );
    assert_eq!(
        e.extend("b", NOW),
        Err(CallError::NotActive(CallState::Expired))
    );
}

#[test]
fn release_returns_everything_once() {
    let e = engine();
    call(&e, "cred@t.com", gb(), "c");
    let s = e.release("c", NOW + 5).unwrap();
    assert!(s.changed);
    assert_eq!(s.state, CallState::Released);
    assert_eq!(e.credits_balance("t"), Some(Money(10_000_000)));
    assert!(!e.release("c", NOW + 6).unwrap().changed);
    assert!(!e.settle("c", 100, NOW + 7).unwrap().changed);
    assert_eq!(e.credits_balance("t"), Some(Money(10_000_000)));
}

#[test]
fn extend_grants_more_until_max_or_exhausted() {
    let e = engine();
    call(&e, "small@u.com", us(), "x");
    let x = e.extend("x", NOW + 1700).unwrap();
    assert_eq!((x.granted_seconds, x.max_duration), (1800, 3600));
    let x = e.extend("x", NOW + 3500).unwrap();
    assert_eq!((x.granted_seconds, x.max_duration), (1800, 5400));
    e.extend("x", NOW + 5000).unwrap();
    assert_eq!(
        e.extend("x", NOW + 7000),
        Err(CallError::Exhausted(Reason::PoolExhausted))
    );
    let s = e.settle("x", 7000, NOW + 7000).unwrap();
    assert_eq!(s.charged_seconds, 7020);
    // Emergency calls are already granted the maximum.
    call(&e, "none@t.com", emergency(), "em");
    assert_eq!(e.extend("em", NOW).unwrap().granted_seconds, 0);
}

#[test]
fn same_call_id_reserves_once() {
    let e = engine();
    let a = call(&e, "us1@t.com", us(), "dup");
    let b = call(&e, "us1@t.com", us(), "dup");
    assert_eq!(
        (basis(&a), basis(&b)),
        (Some("domestic_pool"), Some("domestic_pool"))
    );
    assert_eq!(
        pool(&e, "t", "US", "MCOPSTN1", PoolKind::Domestic).reserved_seconds,
        1800
    );
    let d = e.authorize(
        &Request {
            call_id: "",
            caller: "us1@t.com",
            dialed: "911",
        },
        NOW,
    );
    assert_eq!(reason(&d), Some("bad_request"));
}

#[test]
fn pools_roll_over_at_month_start_utc() {
    let e = engine();
    drain(&e, "small@u.com", us(), "m");
    let dec = e.decide_classified("small@u.com", Ok(us()), NOW, Mode::DryRun);
    assert_eq!(basis(&dec), Some("credits"));
    // 2026-12-01T00:00:00Z: a fresh pool.
    let dec = e.decide_classified(
        "small@u.com",
        Ok(us()),
        1_796_083_200,
        Mode::Reserve("dec-1"),
    );
    assert_eq!(basis(&dec), Some("domestic_pool"));
    // Settling a November call still lands on the November counter.
    let s = e.settle("m-0", 60, 1_796_083_300).unwrap();
    assert!(s.changed);
    let dec_pool = e
        .pools(1_796_083_300)
        .into_iter()
        .find(|p| &*p.key.tenant == "u")
        .unwrap();
    assert_eq!(
        (dec_pool.used_seconds, dec_pool.reserved_seconds),
        (0, 1800)
    );
}

#[test]
fn reload_keeps_live_counts_and_credits() {
    let e = engine();
    call(&e, "us1@t.com", us(), "a");
    call(&e, "cred@t.com", gb(), "b");
    e.reload(snapshot());
    assert_eq!(
        pool(&e, "t", "US", "MCOPSTN1", PoolKind::Domestic).reserved_seconds,
        1800
    );
    assert_eq!(e.credits_balance("t"), Some(Money(10_000_000 - 660_000)));
    e.settle("a", 60, NOW + 60).unwrap();
    assert_eq!(
        pool(&e, "t", "US", "MCOPSTN1", PoolKind::Domestic).used_seconds,
        60
    );
}

#[test]
fn a_reconfiguration_applies_from_the_next_call_and_keeps_what_is_held() {
    let e = engine();
    let a = call(&e, "us1@t.com", us(), "a");
    assert_eq!(a.max_duration, Some(1800));
    let mut config = EngineConfig::default();
    config.grants.grant_seconds = 600;
    config.grants.max_call_seconds = 3000;
    config.grants.billing_increment_seconds = 1;
    config.routes.calling_plan = "gw-{region}.example.org:5070".into();
    config.routes.emergency = "psap.example.org".into();
    e.reconfigure(config);
    // The next admission is sized and routed by the new settings.
    let b = call(&e, "us1@t.com", us(), "b");
    assert_eq!(b.max_duration, Some(600));
    assert_eq!(
        e.route_host(b.route.as_ref().unwrap()),
        "gw-us.example.org:5070"
    );
    let em = call(&e, "none@t.com", emergency(), "em");
    assert_eq!(em.max_duration, Some(3000));
    assert_eq!(e.route_host(em.route.as_ref().unwrap()), "psap.example.org");
    // The call admitted before keeps its reservation; its extension is one new grant, within
    // the new maximum over the whole call.
    assert_eq!(
        pool(&e, "t", "US", "MCOPSTN1", PoolKind::Domestic).reserved_seconds,
        2400
    );
    let x = e.extend("a", NOW + 1700).unwrap();
    assert_eq!((x.granted_seconds, x.max_duration), (600, 2400));
    let x = e.extend("a", NOW + 2300).unwrap();
    assert_eq!((x.granted_seconds, x.max_duration), (600, 3000));
    assert_eq!(e.extend("a", NOW + 2900).unwrap().granted_seconds, 0);
    // Settlements round to the increment in effect.
    assert_eq!(e.settle("a", 61, NOW + 61).unwrap().charged_seconds, 61);
    // The store seam is the engine's for life.
    e.reconfigure(EngineConfig {
        shares: true,
        ..EngineConfig::default()
    });
    assert!(!e.config().shares);
    assert!(e.shares(NOW).is_empty());
}

/// Every call of `e` as the ledger would store it.
fn stored(e: &Engine) -> Vec<crate::restore::StoredCall> {
    let mut v = Vec::new();
    e.reservations()
        .for_each(|id, r| v.push(crate::restore::StoredCall::from_record(id, r)));
    v
}

#[test]
fn restore_rebuilds_pools_balances_spending_and_open_calls() {
    let e1 = engine();
    call(&e1, "small@u.com", us(), "a");
    call(&e1, "small@u.com", us(), "b");
    e1.settle("a", 61, NOW + 61).unwrap();
    call(&e1, "cred@t.com", gb(), "c");
    e1.settle("c", 61, NOW + 61).unwrap();
    call(&e1, "cred@t.com", gb(), "d");
    call(&e1, "lim@v.com", us(), "l1");
    let calls = stored(&e1);
    assert!(calls.iter().all(|c| c.version >= 1));

    let e2 = engine();
    let r = e2.restore(calls, NOW + 100);
    assert_eq!((r.open, r.ended), (3, 2));
    assert_eq!(e2.pools(NOW + 100), e1.pools(NOW + 100));
    assert_eq!(e2.credits_balance("t"), e1.credits_balance("t"));
    assert_eq!(e2.credits_balance("v"), e1.credits_balance("v"));
    // The spend limit still counts l1.
    assert_eq!(
        reason(&call(&e2, "lim@v.com", us(), "l2")),
        Some("spend_limit_reached")
    );
    // Open calls settle after the restore exactly as they would have before.
    let s1 = e1.settle("b", 100, NOW + 200).unwrap();
    let s2 = e2.settle("b", 100, NOW + 200).unwrap();
    assert_eq!(s1, s2);
    e1.settle("d", 30, NOW + 200).unwrap();
    e2.settle("d", 30, NOW + 200).unwrap();
    assert_eq!(e2.credits_balance("t"), e1.credits_balance("t"));
    assert_eq!(
        pool(&e2, "u", "US", "MCOPSTN5", PoolKind::Domestic).used_seconds,
        120 + 120 // 61 s and 100 s, each rounded up to whole minutes
    );
}

#[test]
fn sequence_numbers_follow_admission_and_survive_a_restore() {
    let e1 = engine();
    let seq = |d: &Decision| d.grant.as_ref().map(|g| g.seq);
    let a = seq(&call(&e1, "small@u.com", us(), "a")).unwrap();
    let b = seq(&call(&e1, "small@u.com", us(), "b")).unwrap();
    assert!(b > a && a >= NOW * 1_000_000, "{a} {b}");
    // A replay answers from the record: the same sequence number.
    assert_eq!(seq(&call(&e1, "small@u.com", us(), "a")), Some(a));
    assert_eq!(e1.reservations().get("a").map(|r| r.grant.seq), Some(a));

    // Restored calls keep theirs, and new ones come after them even if the clock went back.
    let e2 = Engine::new(plan(), EngineConfig::default(), snapshot(), NOW - 3600);
    e2.restore(stored(&e1), NOW);
    assert_eq!(e2.reservations().get("b").map(|r| r.grant.seq), Some(b));
    let c = seq(&call(&e2, "small@u.com", us(), "c")).unwrap();
    assert!(c > b, "{c} {b}");
    e2.seq_floor(c + 100);
    assert_eq!(seq(&call(&e2, "small@u.com", us(), "d")), Some(c + 100));
}

#[test]
fn restore_after_month_rollover_charges_the_month_the_call_started_in() {
    const DEC_1: u64 = 1_796_083_200; // 2026-12-01T00:00:00Z
    let e1 = engine();
    call(&e1, "small@u.com", us(), "nov-open");
    call(&e1, "small@u.com", us(), "nov-ended");
    e1.settle("nov-ended", 600, NOW + 600).unwrap();
    let e2 = engine();
    let r = e2.restore(stored(&e1), DEC_1 + 10);
    assert_eq!((r.open, r.ended), (1, 1));
    // December starts full: November's usage and open reservation are not in it.
    let dec = pool(&e2, "u", "US", "MCOPSTN5", PoolKind::Domestic);
    assert_eq!(dec.month.to_string(), "2026-12");
    assert_eq!((dec.used_seconds, dec.reserved_seconds), (0, 0));
    // The November call settles on November's counter.
    let s = e2.settle("nov-open", 60, DEC_1 + 20).unwrap();
    assert_eq!((s.state, s.charged_seconds), (CallState::Settled, 60));
    let dec = pool(&e2, "u", "US", "MCOPSTN5", PoolKind::Domestic);
    assert_eq!((dec.used_seconds, dec.reserved_seconds), (0, 0));
    assert_eq!(
        e2.reservations()
            .get("nov-open")
            .map(|r| r.month().to_string()),
        Some("2026-11".to_string())
    );
}

#[test]
fn abort_undoes_an_admission_that_could_not_be_persisted() {
    let e = engine();
    call(&e, "small@u.com", us(), "x");
    call(&e, "cred@t.com", gb(), "y");
    let before = e.credits_balance("t");
    assert!(e.abort("x"));
    assert!(e.abort("y"));
    assert!(!e.abort("x"));
    let p = pool(&e, "u", "US", "MCOPSTN5", PoolKind::Domestic);
    assert_eq!((p.used_seconds, p.reserved_seconds), (0, 0));
    assert!(e.credits_balance("t") > before);
    assert_eq!(e.credits_balance("t"), Some(Money(10_000_000)));
    assert!(e.reservations().is_empty());
    // An ended call is not aborted.
    call(&e, "small@u.com", us(), "z");
    e.settle("z", 1, NOW + 1).unwrap();
    assert!(!e.abort("z"));
}

/// A call that left memory is settled from its stored row through the engine: an ended one
/// answers again with `changed: false`; a row still reserved is unknown here.
#[test]
fn settling_a_stored_call_changes_nothing() {
    let e = engine();
    let d = call(&e, "us1@t.com", us(), "stored");
    assert_eq!(basis(&d), Some("domestic_pool"));
    let r = e.reservations().get("stored").unwrap();
    let mut row = StoredCall::from_record("stored", &r);
    drop(r);
    assert_eq!(e.settle_stored(row.clone()), Err(CallError::UnknownCall));
    let settled = e.settle("stored", 61, NOW + 70).unwrap();
    row.state = settled.state;
    row.billable_seconds = settled.billable_seconds;
    row.charged_seconds = settled.charged_seconds;
    row.charged_money = settled.charged_money;
    let again = e.settle_stored(row).unwrap();
    assert_eq!(
        again,
        Settlement {
            changed: false,
            ..settled
        }
    );
}
