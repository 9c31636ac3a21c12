//! Property test of the reservation model under concurrency (issue 3): 8 threads issue random
//! authorize / extend / settle / release / expire against a small pool. At every step
//! settled + reserved ≤ capacity and no credit balance is negative; at the end the pool's used
//! seconds equal the sum of the rounded billable seconds charged to it, and the credits spent
//! equal the sum charged in money.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use tollgate_engine::config::Grants;
use tollgate_engine::credits::Money;
use tollgate_engine::load::{self, LoadErrors, Records};
use tollgate_engine::numbering::{Destination, NumberType, NumberingPlan, Region};
use tollgate_engine::{Basis, CallState, Engine, EngineConfig, Mode, Snapshot};

const NOW: u64 = 1_795_000_000;
const CREDITS: i64 = 3_000_000; // 3.00

fn plan() -> Arc<NumberingPlan> {
    static PLAN: OnceLock<Arc<NumberingPlan>> = OnceLock::new();
    Arc::clone(PLAN.get_or_init(|| Arc::new(NumberingPlan::builtin().expect("plan"))))
}

fn engine() -> Engine {
    let mut e = LoadErrors::default();
    let rec = Records {
        tenants: load::parse_tenants(
            "[[tenant]]\nid = \"p\"\ndomains = [\"p.com\"]\ncredits = \"3.00\"\n",
            &mut e,
        ),
        users: load::parse_users(
            "tenant,user,usage_location,licenses\n\
             p,a@p.com,US,MCOEV;MCOPSTN5;MCOPSTNC\n\
             p,b@p.com,US,MCOEV;MCOPSTNC\n",
            &mut e,
        ),
        catalog: load::parse_catalog(include_str!("../../config/catalog.toml"), &mut e),
        rates: load::parse_rates(include_str!("../../config/rates.csv"), &mut e),
    };
    assert!(e.is_empty(), "{e}");
    let snap = Snapshot::build(rec).expect("snapshot");
    let config = EngineConfig {
        grants: Grants {
            grant_seconds: 600,
            max_call_seconds: 1800,
            settle_grace_seconds: 30,
            billing_increment_seconds: 60,
        },
        ..EngineConfig::default()
    };
    Engine::new(plan(), config, snap, NOW)
}

#[derive(Clone, Debug)]
enum Op {
    Authorize { user: u8, call: u8 },
    Extend { call: u8 },
    Settle { call: u8, billable: u16 },
    Release { call: u8 },
    Expire { advance: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 0u8..16).prop_map(|(user, call)| Op::Authorize { user, call }),
        2 => (0u8..16).prop_map(|call| Op::Extend { call }),
        3 => (0u8..16, 0u16..2000).prop_map(|(call, billable)| Op::Settle { call, billable }),
        1 => (0u8..16).prop_map(|call| Op::Release { call }),
        1 => (0u16..400).prop_map(|advance| Op::Expire { advance }),
    ]
}

fn check_invariants(e: &Engine, now: u64) {
    for p in e.pools(now) {
        assert!(
            p.used_seconds + p.reserved_seconds <= p.capacity_seconds,
            "{p:?}"
        );
    }
    let bal = e.credits_balance("p").expect("tenant");
    assert!(bal >= Money::ZERO, "{bal:?}");
}

fn run(threads: Vec<Vec<Op>>) {
    let e = engine();
    let clock = AtomicU64::new(NOW);
    let us = Destination::new(
        "+12125550100",
        1,
        Region::new("US").expect("US"),
        NumberType::FixedLineOrMobile,
    );
    std::thread::scope(|s| {
        for (t, ops) in threads.iter().enumerate() {
            let (e, clock) = (&e, &clock);
            s.spawn(move || {
                for op in ops {
                    let now = clock.load(Ordering::SeqCst);
                    let id = |c: u8| format!("t{t}-c{c}");
                    match *op {
                        Op::Authorize { user, call } => {
                            let caller = if user == 0 { "a@p.com" } else { "b@p.com" };
                            e.decide_classified(caller, Ok(us), now, Mode::Reserve(&id(call)));
                        }
                        Op::Extend { call } => {
                            let _ = e.extend(&id(call), now);
                        }
                        Op::Settle { call, billable } => {
                            let _ = e.settle(&id(call), u64::from(billable), now);
                        }
                        Op::Release { call } => {
                            let _ = e.release(&id(call), now);
                        }
                        Op::Expire { advance } => {
                            clock.fetch_add(u64::from(advance), Ordering::SeqCst);
                            e.expire(now);
                        }
                    }
                    check_invariants(e, now);
                }
            });
        }
    });
    // End every call, then compare the books.
    let end = clock.load(Ordering::SeqCst) + 100_000;
    e.expire(end);
    check_invariants(&e, NOW);
    let (mut pool_seconds, mut money) = (0u64, 0i64);
    e.reservations().for_each(|_, r| {
        assert_ne!(r.state, CallState::Reserved);
        let expect = match r.state {
            CallState::Settled => {
                (r.billable_seconds.div_ceil(60) * 60).min(r.grant.reserved_seconds)
            }
            CallState::Expired => r.grant.reserved_seconds,
            _ => 0,
        };
        assert_eq!(r.charged_seconds, expect, "{r:?}");
        match r.grant.basis {
            Basis::DomesticPool => pool_seconds += r.charged_seconds,
            Basis::Credits => money += r.charged_money.0,
            _ => {}
        }
    });
    let pools = e.pools(NOW);
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].used_seconds, pool_seconds);
    assert_eq!(pools[0].reserved_seconds, 0);
    assert_eq!(e.credits_balance("p"), Some(Money(CREDITS - money)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pools_and_credits_stay_exact_under_concurrency(
        threads in prop::collection::vec(prop::collection::vec(op(), 1..120), 8)
    ) {
        run(threads);
    }
}
