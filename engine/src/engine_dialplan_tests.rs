//! Tenant dial plans in the decision ([`crate::dialplan`]): a rule rewrites the number before it
//! is classified; emergency numbers are recognised before and after; an extension of the
//! tenant is an internal call.

use super::tests::{basis, plan, reason, NOW};
use super::*;
use crate::load::DirectoryFiles;
use crate::policy::Rule;

const TENANTS: &str = r#"
[[tenant]]
id = "t"
domains = ["t.com"]
credits = "0.00"

[[tenant]]
id = "u"
domains = ["u.com"]
credits = "0.00"
"#;

const USERS: &str = "tenant,user,line_uri,usage_location,licenses,dial_plan
t,us1@t.com,+12065550101,US,MCOEV;MCOPSTN1,
t,us2@t.com,+12065550102,US,MCOEV,
t,site@t.com,,US,MCOEV;MCOPSTN1,site-b
u,plain@u.com,,US,MCOEV;MCOPSTN1,
";

const PLANS: &str = r#"
[[dial_plan]]
id = "main"
tenant = "t"
default = true
[[dial_plan.rule]]
name = "extension"
pattern = '^(\d{4})$'
translation = "+1206555$1"
[[dial_plan.rule]]
name = "outside line"
pattern = '^9(\d+)$'
translation = "$1"

[[dial_plan]]
id = "site-b"
tenant = "t"
[[dial_plan.rule]]
name = "site prefix"
pattern = '^6(\d{4})$'
translation = "+1206555$1"
"#;

fn engine() -> Engine {
    let files = DirectoryFiles {
        dialplans: Some(Ok(PLANS.as_bytes().to_vec())),
        ..DirectoryFiles::with(|name| match name {
            crate::load::TENANTS_FILE => Ok(TENANTS.as_bytes().to_vec()),
            crate::load::USERS_FILE => Ok(USERS.as_bytes().to_vec()),
            crate::load::CATALOG_FILE => Ok(include_bytes!("../../config/catalog.toml").to_vec()),
            _ => Ok(include_bytes!("../../config/rates.csv").to_vec()),
        })
    };
    let snap = Snapshot::from_files(files).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(plan(), EngineConfig::default(), snap, NOW)
}

fn rule_of(d: &Decision) -> Option<&str> {
    d.dial_plan.as_ref().map(|n| &*n.rule)
}

#[test]
fn the_plan_rewrites_before_classifying_and_the_ledger_keeps_what_was_dialed() {
    let e = engine();
    let d = e.authorize(
        &Request {
            call_id: "out-1",
            caller: "us1@t.com",
            dialed: "9 1 212 555 0100",
        },
        NOW,
    );
    assert_eq!(basis(&d), Some("domestic_pool"));
    assert_eq!(rule_of(&d), Some("outside line"));
    assert_eq!(
        d.dial_plan.as_ref().map(|n| &*n.number),
        Some("12125550100")
    );
    assert_eq!(
        d.destination.map(|x| x.e164().to_string()).as_deref(),
        Some("+12125550100")
    );
    assert_eq!(
        d.grant.as_ref().map(|g| &*g.dialed),
        Some("9 1 212 555 0100")
    );
    // A 4-digit extension of the tenant's range, a colleague's line: internal.
    let d = e.decide("us1@t.com", "0102", NOW);
    assert_eq!((basis(&d), d.rule), (Some("internal"), Rule::Internal));
    assert_eq!(rule_of(&d), Some("extension"));
    // The user's own plan, not the tenant's default.
    let d = e.decide("site@t.com", "60101", NOW);
    assert_eq!(
        (basis(&d), rule_of(&d)),
        (Some("internal"), Some("site prefix"))
    );
    let d = e.decide("site@t.com", "0101", NOW);
    assert_eq!(rule_of(&d), None);
    // Another tenant has no plan: the string is classified as dialed.
    let d = e.decide("plain@u.com", "912125550100", NOW);
    assert_eq!((rule_of(&d), reason(&d)), (None, Some("invalid_number")));
}

#[test]
fn emergency_numbers_are_recognised_before_and_after_the_plan() {
    let e = engine();
    // 911 as dialed: the outside-line rule would make `11` of it; it is never applied.
    let d = e.decide("us1@t.com", "911", NOW);
    assert_eq!((basis(&d), rule_of(&d)), (Some("emergency"), None));
    // 9 then 911: the outside-line rule makes 911 of it, though the extension rule, listed
    // first, matches too.
    let d = e.decide("us1@t.com", "9911", NOW);
    assert_eq!(
        (basis(&d), rule_of(&d)),
        (Some("emergency"), Some("outside line"))
    );
    // Even for a user without a calling plan, and under load: never shed.
    let d = e.decide("us2@t.com", "9 911", NOW);
    assert_eq!(basis(&d), Some("emergency"));
    assert!(!e.may_shed("us2@t.com", "9911", NOW));
    assert!(e.may_shed("us2@t.com", "912125550100", NOW));
}
