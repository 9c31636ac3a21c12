//! The catalog's Teams rules in the decision: Pay-As-You-Go plans, UK shared-cost numbers paid
//! by credits only, and the international list.

use super::tests::{basis, r, reason, snapshot_of, NOW};
use super::*;
use crate::numbering::NumberType;
use crate::pools::PoolKind;

const TENANTS: &str = r#"
[[tenant]]
id = "p"
domains = ["p.com"]
credits = "10.00"
user_spend_limit = "1.00"

[[tenant]]
id = "broke"
domains = ["broke.com"]
credits = "0.00"
"#;

const USERS: &str = "tenant,user,usage_location,licenses
p,payg@p.com,US,MCOEV;MCOPSTN_PAYG_1
p,payg-de@p.com,DE,MCOEV;MCOPSTN_PAYG_2
p,wrongzone@p.com,DE,MCOEV;MCOPSTN_PAYG_1
p,both@p.com,US,MCOEV;MCOPSTN1;MCOPSTN_PAYG_1
p,plan@p.com,GB,MCOEV;MCOPSTN1
p,credits@p.com,GB,MCOEV;MCOPSTN1;MCOPSTNPP
broke,payg@broke.com,US,MCOEV;MCOPSTN_PAYG_1
";

fn engine() -> Engine {
    Engine::new(
        super::tests::plan(),
        EngineConfig::default(),
        snapshot_of(TENANTS, USERS),
        NOW,
    )
}

fn us() -> Destination {
    Destination::new("+12125550100", 1, r("US"), NumberType::FixedLineOrMobile)
}
fn gb() -> Destination {
    Destination::new("+442079460000", 44, r("GB"), NumberType::FixedLine)
}
/// A UK shared-cost number, as libphonenumber classifies it.
fn shared_cost() -> Destination {
    Destination::new("+448451234567", 44, r("GB"), NumberType::PremiumRate)
}

#[test]
fn pay_as_you_go_pays_every_call_from_credits_within_the_spend_limit() {
    let e = engine();
    // Domestic and international alike, from the first minute; no pool exists for it.
    let d = e.decide_classified("payg@p.com", Ok(us()), NOW, Mode::Reserve("a"));
    assert_eq!((basis(&d), d.rule), (Some("credits"), Rule::Credits));
    let d = e.decide_classified("payg@p.com", Ok(gb()), NOW, Mode::DryRun);
    assert_eq!(basis(&d), Some("credits"));
    let d = e.decide_classified("payg-de@p.com", Ok(gb()), NOW, Mode::DryRun);
    assert_eq!(basis(&d), Some("credits"));
    assert!(e
        .pools(NOW)
        .iter()
        .all(|p| !p.key.sku.starts_with("MCOPSTN_PAYG")));
    // A zone 1 plan held in Germany grants nothing there.
    let d = e.decide_classified("wrongzone@p.com", Ok(us()), NOW, Mode::DryRun);
    assert_eq!(reason(&d), Some("no_calling_plan"));
    // Bundled minutes first, then the PAYG credits (overage).
    let d = e.decide_classified("both@p.com", Ok(us()), NOW, Mode::DryRun);
    assert_eq!(basis(&d), Some("domestic_pool"));
    let d = e.decide_classified("both@p.com", Ok(gb()), NOW, Mode::DryRun);
    assert_eq!(basis(&d), Some("credits"));
    // A zero balance stops PAYG calls.
    let d = e.decide_classified("payg@broke.com", Ok(us()), NOW, Mode::DryRun);
    assert_eq!(reason(&d), Some("credits_exhausted"));
    // The user spend limit holds: 1.00 at the US rate (0.019/min) is 52 minutes.
    let mut i = 0;
    while e
        .decide_classified("payg@p.com", Ok(us()), NOW, Mode::Reserve(&format!("s{i}")))
        .is_admit()
    {
        i += 1;
        assert!(i < 100);
    }
    let d = e.decide_classified("payg@p.com", Ok(us()), NOW, Mode::DryRun);
    assert_eq!(reason(&d), Some("spend_limit_reached"));
}

#[test]
fn uk_shared_cost_numbers_are_paid_by_credits_only_and_449_stays_barred() {
    let e = engine();
    // With credits (MCOPSTNPP, the licence's own part number): credits, not the pool.
    let d = e.decide_classified("credits@p.com", Ok(shared_cost()), NOW, Mode::Reserve("sc"));
    assert_eq!(basis(&d), Some("credits"));
    assert_eq!(
        super::tests::pool(&e, "p", "GB", "MCOPSTN1", PoolKind::Domestic).reserved_seconds,
        0
    );
    // Without: not supported, though the plan's pool has minutes.
    let d = e.decide_classified("plan@p.com", Ok(shared_cost()), NOW, Mode::DryRun);
    assert_eq!(
        (reason(&d), d.rule),
        (Some("destination_not_supported"), Rule::Credits)
    );
    // Premium rate elsewhere, and 449, stay barred for everyone.
    for n in ["+449091234567", "+449801234567"] {
        let premium = Destination::new(n, 44, r("GB"), NumberType::PremiumRate);
        let d = e.decide_classified("credits@p.com", Ok(premium), NOW, Mode::DryRun);
        assert_eq!(
            (reason(&d), d.rule),
            (Some("destination_not_supported"), Rule::Barred)
        );
    }
}

#[test]
fn the_international_list_bars_what_it_does_not_name() {
    let e = engine();
    let dial = |n: &str, cc: u16, region: &str| {
        let d = Destination::new(n, cc, r(region), NumberType::FixedLineOrMobile);
        e.decide_classified("credits@p.com", Ok(d), NOW, Mode::DryRun)
    };
    assert_eq!(basis(&dial("+97142000000", 971, "AE")), Some("credits"));
    // South Sudan and Timor-Leste are not on the list.
    for (n, cc, region) in [("+211912345678", 211, "SS"), ("+6707212345", 670, "TL")] {
        let d = dial(n, cc, region);
        assert_eq!(
            (reason(&d), d.rule),
            (Some("destination_not_supported"), Rule::Barred),
            "{n}"
        );
    }
    // Nor are North Korea, satellites and Cuba, which the catalog's high-risk prefixes name
    // first: rule 6 gives that reason.
    for (n, cc, region) in [
        ("+85021234567", 850, "KP"),
        ("+8816123456789", 881, "001"),
        ("+5378123456", 53, "CU"),
    ] {
        let d = dial(n, cc, region);
        assert_eq!(
            (reason(&d), d.rule),
            (Some("high_risk_destination"), Rule::Barred),
            "{n}"
        );
    }
}
