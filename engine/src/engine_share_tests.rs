//! The engine with several nodes (DESIGN §6): grants come out of this node's shares; a short
//! share names its account instead of refusing for good; a drained account answers as a single
//! node would.

use super::tests::*;
use super::*;
use crate::shares::{ShareOf, Short};

fn shared() -> Engine {
    let config = EngineConfig {
        shares: true,
        ..EngineConfig::default()
    };
    Engine::new(plan(), config, snapshot(), NOW)
}

fn share_of(d: &Decision) -> &crate::shares::Share {
    d.lacking
        .as_ref()
        .and_then(|s| s.of.share())
        .expect("a short decision names its share")
}

/// Decides a US call of `user` as the driver would have it: each share the decision finds
/// short gets `amount` more, then the call is decided again.
fn admit_drawing(e: &Engine, user: &str, id: &str, amount: u64) -> Decision {
    for _ in 0..4 {
        let d = call(e, user, us(), id);
        if d.lacking.is_none() {
            return d;
        }
        share_of(&d).add(amount);
    }
    panic!("still short after four draws");
}

#[test]
fn a_node_admits_from_its_share_and_asks_for_more_when_it_is_short() {
    let e = shared();
    let d = call(&e, "small@u.com", us(), "s1");
    assert_eq!(reason(&d), Some("store_unavailable"));
    assert!(matches!(
        d.lacking,
        Some(Short {
            of: ShareOf::Pool(_),
            needed: 1800
        })
    ));
    assert!(
        e.reservations().is_empty(),
        "a short decision reserves nothing"
    );
    share_of(&d).add(2000);
    let d = call(&e, "small@u.com", us(), "s1");
    assert_eq!(
        (basis(&d), d.max_duration),
        (Some("domestic_pool"), Some(1800))
    );
    // 200 s left: no short grant while the store may have more.
    let d = call(&e, "small@u.com", us(), "s2");
    assert_eq!(reason(&d), Some("store_unavailable"));
    // The store says the pool is drained: what is left, then credits.
    share_of(&d).set_drained(true);
    let d = call(&e, "small@u.com", us(), "s2");
    assert_eq!(
        (basis(&d), d.max_duration),
        (Some("domestic_pool"), Some(180))
    );
    let d = call(&e, "small@u.com", us(), "s3");
    assert_eq!(reason(&d), Some("store_unavailable"));
    assert!(matches!(
        d.lacking,
        Some(Short {
            of: ShareOf::Credits(_),
            ..
        })
    ));
    share_of(&d).add(1_000_000);
    let d = call(&e, "small@u.com", us(), "s3");
    assert_eq!(basis(&d), Some("credits"));
}

#[test]
fn what_a_call_leaves_goes_back_through_the_store_not_into_the_share() {
    let e = shared();
    let d = call(&e, "small@u.com", us(), "a");
    share_of(&d).add(3600);
    assert!(call(&e, "small@u.com", us(), "a").is_admit());
    e.settle("a", 30, NOW + 40).unwrap();
    let shares = e.shares(NOW);
    let pool = shares
        .iter()
        .find_map(|s| match s {
            ShareOf::Pool(c) if &*c.key.tenant == "u" => c.share(),
            _ => None,
        })
        .unwrap();
    assert_eq!(pool.free(), 1800);
    assert_eq!(pool.taken(), 1800);
}

#[test]
fn emergency_and_unfunded_calls_need_no_share() {
    let e = shared();
    assert_eq!(
        basis(&call(&e, "us1@t.com", emergency(), "e")),
        Some("emergency")
    );
    assert_eq!(
        basis(&call(&e, "dr@t.com", us(), "dr")),
        Some("direct_routing")
    );
}

#[test]
fn a_single_node_has_no_shares() {
    assert!(engine().shares(NOW).is_empty());
    assert!(!shared().shares(NOW).is_empty());
}

#[test]
fn a_call_another_node_admitted_ends_from_its_row_once() {
    // Node A admits; node B (another engine) ends it from the stored row.
    let a = shared();
    let d = call(&a, "small@u.com", us(), "x");
    share_of(&d).add(3600);
    assert!(call(&a, "small@u.com", us(), "x").is_admit());
    let row = StoredCall::from_record("x", &a.reservations().get("x").unwrap());
    let b = shared();
    let (ended, s) = b.end_stored(
        row.clone(),
        Ending::Settled {
            billable_seconds: 61,
        },
        NOW + 70,
    );
    assert_eq!(
        (s.state, s.charged_seconds, s.changed),
        (CallState::Settled, 120, true)
    );
    assert_eq!(
        (ended.version, ended.ended_at),
        (row.version + 1, Some(NOW + 70))
    );
    // The same row ended again answers the same figures, changed: false.
    let (_, again) = b.end_stored(ended.clone(), Ending::Released, NOW + 80);
    assert_eq!(
        (again.state, again.charged_seconds, again.changed),
        (CallState::Settled, 120, false)
    );
    // A release charges nothing; a credits call is charged in money.
    let (_, r) = b.end_stored(row, Ending::Released, NOW + 5);
    assert_eq!((r.state, r.charged_seconds), (CallState::Released, 0));
    let d = admit_drawing(&a, "lim@v.com", "c", 10_000_000);
    assert_eq!(basis(&d), Some("credits"));
    let row = StoredCall::from_record("c", &a.reservations().get("c").unwrap());
    let (ended, s) = b.end_stored(
        row,
        Ending::Settled {
            billable_seconds: 30,
        },
        NOW + 40,
    );
    assert_eq!(s.charged_seconds, 60);
    assert!(ended.charged_money.0 > 0 && ended.charged_money <= ended.reserved_money);
}

#[test]
fn a_call_another_node_admitted_is_extended_from_its_row_and_its_node_adopts_it() {
    let a = shared();
    let d = call(&a, "small@u.com", us(), "x");
    share_of(&d).add(1800);
    assert!(call(&a, "small@u.com", us(), "x").is_admit());
    // A's share is spent: its own extension asks for a draw first.
    assert_eq!(a.extend("x", NOW + 10), Err(CallError::ShareShort));
    assert!(matches!(
        a.extension_short("x"),
        Some(Short {
            of: ShareOf::Pool(_),
            needed: 1800
        })
    ));
    // B extends from the row and what the pool of record has available.
    let row = StoredCall::from_record("x", &a.reservations().get("x").unwrap());
    let b = shared();
    assert_eq!(
        b.extend_stored(row.clone(), 59, NOW + 10).err(),
        Some(CallError::Exhausted(Reason::PoolExhausted)),
        "less than one increment available"
    );
    let (ext, x, amount) = b.extend_stored(row.clone(), 1000, NOW + 10).unwrap();
    assert_eq!(
        (x.granted_seconds, amount),
        (960, 960),
        "what is left, in increments"
    );
    assert_eq!(
        (ext.reserved_seconds, ext.version, x.max_duration),
        (2760, row.version + 1, 2760)
    );
    assert_eq!(ext.expires_at, row.expires_at + 960);
    // A adopts it once; settling then gives back no more than was reserved.
    assert!(a.adopt_extension(&ext));
    assert!(!a.adopt_extension(&ext));
    assert_eq!(
        a.reservations().get("x").unwrap().grant.reserved_seconds,
        2760
    );
    let pool = |e: &Engine| {
        e.pools(NOW)
            .into_iter()
            .find(|p| &*p.key.tenant == "u")
            .unwrap()
    };
    assert_eq!(pool(&a).reserved_seconds, 2760);
    let s = a.settle("x", 2000, NOW + 2000).unwrap();
    assert_eq!(s.charged_seconds, 2040);
    assert_eq!(
        (pool(&a).reserved_seconds, pool(&a).used_seconds),
        (0, 2040)
    );
    // An ended call is not extended.
    let ended = StoredCall::from_record("x", &a.reservations().get("x").unwrap());
    assert_eq!(
        b.extend_stored(ended, 10_000, NOW).err(),
        Some(CallError::NotActive(CallState::Settled))
    );
}

#[test]
fn a_user_spend_limit_is_an_allowance_drawn_from_the_store() {
    // 0.50 limit at 0.019/min (26 minutes), as `rule10_spend_limit` with one node.
    let e = shared();
    let d = call(&e, "lim@v.com", us(), "l1");
    assert_eq!(reason(&d), Some("store_unavailable"));
    let Some(Short {
        of: ShareOf::Spend(allowance),
        needed,
    }) = d.lacking.clone()
    else {
        panic!("the allowance is drawn first: {:?}", d.lacking);
    };
    assert_eq!(
        (&*allowance.user, allowance.limit()),
        ("lim@v.com", Money(500_000))
    );
    assert!(e.shares(NOW).iter().any(|s| matches!(s, ShareOf::Spend(_))));
    // The store grants the allowance, then the balance: admitted for a full grant.
    allowance.share().add(needed);
    let d = admit_drawing(&e, "lim@v.com", "l1", 10_000_000);
    assert_eq!(basis(&d), Some("credits"));
    assert_eq!(allowance.share().free(), 0, "drawn call by call");
    // The store has 0.10 left of the allowance and says it is drained: a shorter grant, then
    // the limit.
    allowance.share().add(100_000);
    allowance.share().set_drained(true);
    let d = call(&e, "lim@v.com", us(), "l2");
    assert_eq!((basis(&d), d.max_duration), (Some("credits"), Some(300)));
    assert_eq!(
        reason(&call(&e, "lim@v.com", us(), "l3")),
        Some("spend_limit_reached")
    );
    // An admission undone before it reached the store gives its allowance back.
    assert!(e.abort("l2"));
    assert_eq!(allowance.share().free(), 100_000);
}
