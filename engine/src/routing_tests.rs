//! Tests of voice routing policies: loading `routing.toml`, the routes a number selects, the
//! Contacts and their `q`, and rule 7 in the engine.

use std::sync::{Arc, OnceLock};

use super::*;
use crate::load::DirectoryFiles;
use crate::numbering::NumberingPlan;
use crate::{Basis, Engine, EngineConfig, Reason, Route, Rule, Snapshot};

const NOW: u64 = 1_795_000_000;

const TENANTS: &str = r#"
[[tenant]]
id = "t"
domains = ["t.com"]
credits = "10.00"
[tenant.direct_routing]
sbc1 = "sbc1.t.com:5061;transport=tls"
sbc2 = "sbc2.t.com:5061;transport=tls"
sbc3 = "sbc3.t.com"
intl = "intl.t.com"

[[tenant]]
id = "u"
domains = ["u.com"]
[tenant.direct_routing]
usbc = "sbc.u.com"
"#;

/// Line numbers matter to the error tests: keep this text as it is.
const ROUTING: &str = r#"[[voice_route]]
tenant = "t"
name = "US primary"
usage = "US and Canada"
pattern = '^\+1(\d{10})$'
priority = 1
gateways = ["sbc1", "sbc2"]

[[voice_route]]
tenant = "t"
name = "US fallback"
usage = "US and Canada"
pattern = '^\+1'
priority = 2
gateways = ["sbc3", "sbc1"]

[[voice_route]]
tenant = "t"
name = "Seattle"
usage = "US and Canada"
pattern = '^\+1206'
priority = 0
gateways = ["sbc2"]

[[voice_route]]
tenant = "t"
name = "International"
usage = "International"
pattern = '^\+[2-9]'
priority = 1
gateways = ["intl"]

[[voice_routing_policy]]
tenant = "t"
id = "us-first"
usages = ["US and Canada", "International"]

[[voice_routing_policy]]
tenant = "t"
id = "us-only"
usages = ["US and Canada"]
"#;

const CATALOG: &str = r#"
[regions]
pool_with = { PR = "US" }
domestic_groups = [["US", "CA", "PR"]]
[numbers]
free_domestic = ["toll_free"]
barred = ["premium_rate"]
[[sku]]
name = "MCOEV"
phone_system = true
[[sku]]
name = "MCOPSTN1"
plan = "domestic"
minutes = { default = 3000 }
[[sku]]
name = "MCOPSTNC"
credits = true
"#;

const USERS: &str = "tenant,user,usage_location,licenses,voice_routing,dial_out_policy
t,dr@t.com,US,MCOEV,policy:us-first,
t,drus@t.com,US,MCOEV,policy:us-only,
t,cp@t.com,US,MCOEV;MCOPSTN1,policy:us-only,
t,cred@t.com,US,MCOEV;MCOPSTNC,policy:us-only,
t,off@t.com,US,MCOEV,policy:us-first,DialoutCPCandPSTNDisabled
t,gw@t.com,US,MCOEV,direct_routing:sbc3,
";

const RATES: &str = "destination,number_type,price_per_minute\n*,*,0.10\n";

fn files(tenants: &str, users: &str, routing: Option<&str>) -> DirectoryFiles {
    let mut f = DirectoryFiles::with(|name| {
        Ok(match name {
            crate::load::TENANTS_FILE => tenants,
            crate::load::USERS_FILE => users,
            crate::load::CATALOG_FILE => CATALOG,
            _ => RATES,
        }
        .as_bytes()
        .to_vec())
    });
    f.routing = routing.map(|r| Ok(r.as_bytes().to_vec()));
    f
}

fn snapshot() -> Snapshot {
    Snapshot::from_files(files(TENANTS, USERS, Some(ROUTING))).unwrap_or_else(|e| panic!("{e}"))
}

fn engine() -> Engine {
    static PLAN: OnceLock<Arc<NumberingPlan>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| Arc::new(NumberingPlan::builtin().unwrap()));
    Engine::new(Arc::clone(plan), EngineConfig::default(), snapshot(), NOW)
}

/// The errors of loading `routing` (with `users`) as `(file, line, field)`.
fn errors(users: &str, routing: &str) -> Vec<(String, Option<usize>, String, String)> {
    match Snapshot::from_files(files(TENANTS, users, Some(routing))) {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.into_iter()
                .map(|e| (e.file, e.line, e.field, e.message))
                .collect()
        }
    }
}

/// `(host, q)` of each Contact.
fn contacts(r: &PolicyRoute) -> Vec<(String, &'static str)> {
    r.contacts()
        .map(|c| (c.gateway.host.to_string(), c.q))
        .collect()
}

fn policy(s: &Snapshot, user: &str) -> u32 {
    s.lookup(user).unwrap().1.voice_policy.unwrap()
}

#[test]
fn matching_routes_give_contacts_with_falling_q() {
    let s = snapshot();
    let p = policy(&s, "dr@t.com");
    // +1 212: "US primary" (1) and "US fallback" (2) match; sbc1 is in both and keeps 1.0.
    let r = s.routing.select(p, "+12125550100").unwrap();
    assert_eq!(&*r.policy, "us-first");
    assert_eq!(&*r.usage.name, "US and Canada");
    assert_eq!(&*r.first_route().unwrap().name, "US primary");
    assert_eq!(
        contacts(&r),
        [
            ("sbc1.t.com:5061;transport=tls".into(), "1.0"),
            ("sbc2.t.com:5061;transport=tls".into(), "1.0"),
            ("sbc3.t.com".into(), "0.9"),
        ]
    );
    // +1 206 also matches "Seattle", priority 0: it comes first. sbc2 is Seattle's, so the
    // primary route adds only sbc1.
    let r = s.routing.select(p, "+12065550100").unwrap();
    assert_eq!(&*r.first_route().unwrap().name, "Seattle");
    assert_eq!(
        contacts(&r),
        [
            ("sbc2.t.com:5061;transport=tls".into(), "1.0"),
            ("sbc1.t.com:5061;transport=tls".into(), "0.9"),
            ("sbc3.t.com".into(), "0.8"),
        ]
    );
    // A short +1 number: only the fallback's pattern matches.
    let r = s.routing.select(p, "+1911").unwrap();
    assert_eq!(&*r.first_route().unwrap().name, "US fallback");
    assert_eq!(
        contacts(&r),
        [
            ("sbc3.t.com".into(), "1.0"),
            ("sbc1.t.com:5061;transport=tls".into(), "1.0"),
        ]
    );
}

#[test]
fn first_usage_with_a_match_decides() {
    let s = snapshot();
    let first = policy(&s, "dr@t.com");
    // The international usage is never looked at for +1.
    let r = s.routing.select(first, "+12125550100").unwrap();
    assert!(contacts(&r).iter().all(|(h, _)| h != "intl.t.com"));
    // Abroad: the first usage matches nothing, the second does.
    let r = s.routing.select(first, "+442079460000").unwrap();
    assert_eq!(&*r.usage.name, "International");
    assert_eq!(contacts(&r), [("intl.t.com".into(), "1.0")]);
    // A policy without that usage has no route.
    let only = policy(&s, "drus@t.com");
    assert!(s.routing.select(only, "+442079460000").is_none());
}

#[test]
fn a_route_whose_gateways_are_all_listed_takes_no_q_level() {
    let routing = r#"
[[voice_route]]
tenant = "t"
name = "a"
usage = "x"
pattern = "^[+]1"
priority = 1
gateways = ["sbc1", "sbc2"]
[[voice_route]]
tenant = "t"
name = "b"
usage = "x"
pattern = "^[+]1"
priority = 2
gateways = ["sbc2"]
[[voice_route]]
tenant = "t"
name = "c"
usage = "x"
pattern = "^[+]1"
priority = 3
gateways = ["sbc3"]
[[voice_routing_policy]]
tenant = "t"
id = "p"
usages = ["x"]
"#;
    let users = "tenant,user,usage_location,licenses,voice_routing\nt,a@t.com,US,MCOEV,policy:p\n";
    let s = Snapshot::from_files(files(TENANTS, users, Some(routing))).unwrap();
    let r = s
        .routing
        .select(policy(&s, "a@t.com"), "+12125550100")
        .unwrap();
    let q: Vec<_> = contacts(&r).into_iter().map(|(_, q)| q).collect();
    assert_eq!(q, ["1.0", "1.0", "0.9"]);
}

#[test]
fn q_values_fall_and_are_rfc3261_qvalues() {
    let mut last = 2.0;
    for level in 0..40 {
        let q = q_value(level);
        let (int, frac) = q.split_once('.').unwrap();
        assert!(int == "0" || q == "1.0", "{q}");
        assert!((1..=3).contains(&frac.len()), "{q}");
        let v: f64 = q.parse().unwrap();
        assert!(v > 0.0 && v <= 1.0, "{q}");
        if level < Q.len() {
            assert!(v < last, "{q} after {last}");
        } else {
            assert_eq!(v, last);
        }
        last = v;
    }
}

#[test]
fn ledger_text_round_trips() {
    let s = snapshot();
    let r = s
        .routing
        .select(policy(&s, "dr@t.com"), "+12065550100")
        .unwrap();
    let mut text = String::new();
    r.push_text(&mut text);
    assert_eq!(
        text,
        "1.0 sbc2.t.com:5061;transport=tls,0.9 sbc1.t.com:5061;transport=tls,0.8 sbc3.t.com"
    );
    let back = PolicyRoute::from_text(&text).unwrap();
    assert_eq!(back, r);
    assert_eq!(contacts(&back), contacts(&r));
    assert_eq!(back.first_host(), "sbc2.t.com:5061;transport=tls");
    // Two gateways of one q stay one level.
    let back = PolicyRoute::from_text("1.0 a,1.0 b,0.9 c").unwrap();
    assert_eq!(
        contacts(&back),
        [
            ("a".into(), "1.0"),
            ("b".into(), "1.0"),
            ("c".into(), "0.9")
        ]
    );
    for bad in ["", "a", "1.0", "1.0 ", "0.95 a", "1.0 a,,0.9 b", "x a"] {
        assert!(PolicyRoute::from_text(bad).is_none(), "{bad:?}");
    }
    // Another Contact set is another route.
    assert_ne!(PolicyRoute::from_text("1.0 a").unwrap(), back);
}

#[test]
fn rule7_admits_direct_routing_by_policy() {
    let e = engine();
    let d = e.decide("dr@t.com", "+1 212 555 0100", NOW);
    assert_eq!(d.basis(), Some(Basis::DirectRouting));
    assert_eq!(d.rule, Rule::DirectRouting);
    let Some(Route::Policy(r)) = &d.route else {
        panic!("{:?}", d.route)
    };
    assert_eq!(contacts(r).len(), 3);
    assert_eq!(
        e.route_host(d.route.as_ref().unwrap()),
        "sbc1.t.com:5061;transport=tls"
    );
    // No pool, no charge: a reservation records the call but funds nothing.
    let d = e.authorize(
        &crate::Request {
            call_id: "c1",
            caller: "dr@t.com",
            dialed: "+442079460000",
        },
        NOW,
    );
    assert_eq!(d.basis(), Some(Basis::DirectRouting));
    let g = d.grant.unwrap();
    assert!(matches!(g.funding, crate::Funding::None));
    assert_eq!(g.route, d.route);
}

#[test]
fn no_match_falls_back_to_the_plan_or_is_no_route() {
    let e = engine();
    // Direct Routing only: dropped.
    let d = e.decide("drus@t.com", "+442079460000", NOW);
    assert_eq!(d.reason(), Some(Reason::NoRoute));
    assert_eq!(d.rule, Rule::DirectRouting);
    assert_eq!(Reason::NoRoute.as_str(), "no_route");
    // A Calling Plan user: a matching number goes to Direct Routing all the same...
    let d = e.decide("cp@t.com", "+12125550100", NOW);
    assert_eq!(d.basis(), Some(Basis::DirectRouting));
    // ...and an unmatched one falls back to the plan (a Domestic plan has no pool abroad).
    let d = e.decide("cp@t.com", "+442079460000", NOW);
    assert_eq!(d.reason(), Some(Reason::InternationalNotInPlan));
    assert_eq!(d.rule, Rule::Credits);
    // Credits without a plan are a fallback too.
    let d = e.decide("cred@t.com", "+442079460000", NOW);
    assert_eq!(d.basis(), Some(Basis::Credits));
    assert!(matches!(d.route, Some(Route::CallingPlan(_))));
}

#[test]
fn earlier_rules_still_come_first() {
    let e = engine();
    // Rule 1: 911 is emergency, not a route of the policy (its pattern matches "+1911").
    let d = e.decide("dr@t.com", "911", NOW);
    assert_eq!(d.basis(), Some(Basis::Emergency));
    // Rule 5: PSTN disabled by policy.
    let d = e.decide("off@t.com", "+12125550100", NOW);
    assert_eq!(d.reason(), Some(Reason::PstnDisabledByPolicy));
    // Rule 6: premium rate stays barred.
    let d = e.decide("dr@t.com", "+19005550100", NOW);
    assert_eq!(d.reason(), Some(Reason::DestinationNotSupported));
    // A gateway user is as before: one gateway.
    let d = e.decide("gw@t.com", "+12125550100", NOW);
    assert_eq!(d.route, Some(Route::Direct(Arc::from("sbc3.t.com"))));
}

#[test]
fn without_the_file_nothing_changes_and_policies_are_unknown() {
    let users = "tenant,user,usage_location,licenses,voice_routing\nt,a@t.com,US,MCOEV,policy:p\n";
    let e = Snapshot::from_files(files(TENANTS, users, None)).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(
        (e.0[0].file.as_str(), e.0[0].line, e.0[0].field.as_str()),
        ("users.csv", Some(2), "voice_routing")
    );
    assert!(
        e.0[0].message.contains("no voice routing policy \"p\""),
        "{e}"
    );
}

#[test]
fn errors_name_file_line_and_field() {
    let at = |line: usize, field: &str| ("routing.toml".to_string(), Some(line), field.to_string());
    let check = |routing: &str, want: &[(String, Option<usize>, String)], words: &[&str]| {
        // Users of a policy that is refused are reported too: only this file's errors here.
        let mut got = errors(USERS, routing);
        got.retain(|(f, ..)| f == ROUTING_FILE);
        let pos: Vec<_> = got
            .iter()
            .map(|(f, l, fi, _)| (f.clone(), *l, fi.clone()))
            .collect();
        assert_eq!(pos, want, "{got:?}");
        for (w, (.., m)) in words.iter().zip(&got) {
            assert!(m.contains(w), "{m:?} lacks {w:?}");
        }
    };
    // Look-around is not in the regex crate.
    check(
        &ROUTING.replace(r"'^\+1(\d{10})$'", r"'^\+1(?!900)\d{10}$'"),
        &[at(5, "pattern")],
        &["look-around"],
    );
    check(
        &ROUTING.replace(
            "gateways = [\"sbc3\", \"sbc1\"]",
            "gateways = [\"sbc3\", \"nope\"]",
        ),
        &[at(15, "gateways")],
        &["no Direct Routing gateway \"nope\""],
    );
    check(
        &ROUTING.replace("gateways = [\"sbc2\"]", "gateways = [\"sbc2\", \"sbc2\"]"),
        &[at(23, "gateways")],
        &["listed twice"],
    );
    check(
        &ROUTING.replace("gateways = [\"intl\"]", "gateways = []"),
        &[at(31, "gateways"), at(36, "usages")],
        &[
            "at least one gateway",
            "no [[voice_route]] of tenant t has usage \"International\"",
        ],
    );
    check(
        &ROUTING.replacen("tenant = \"t\"", "tenant = \"nobody\"", 1),
        &[at(2, "tenant")],
        &["unknown tenant \"nobody\""],
    );
    check(
        &ROUTING.replace("name = \"Seattle\"", "name = \"US primary\""),
        &[at(19, "name")],
        &["two voice routes named \"US primary\""],
    );
    check(
        &ROUTING.replace("priority = 0", "priority = 2"),
        &[at(22, "priority")],
        &["already has priority 2"],
    );
    check(
        &ROUTING.replace("id = \"us-only\"", "id = \"us-first\""),
        &[at(40, "id")],
        &["two voice routing policies \"us-first\""],
    );
    check(
        &ROUTING.replace(
            "usages = [\"US and Canada\"]\n",
            "usages = [\"US and Canada\", \"Europe\", \"US and Canada\"]\n",
        ),
        &[at(41, "usages"), at(41, "usages")],
        &["has usage \"Europe\"", "listed twice"],
    );
    check(
        &ROUTING.replace("priority = 0", "priority = 0\nweight = 3"),
        &[at(23, "weight")],
        &["unknown field"],
    );
    // An unknown policy in users.csv is the user's error.
    let got = errors(
        &USERS.replace("policy:us-only,\nt,cp", "policy:us-none,\nt,cp"),
        ROUTING,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].0.as_str(), got[0].1, got[0].2.as_str()),
        ("users.csv", Some(3), "voice_routing")
    );
    // A policy of another tenant is unknown too.
    let got = errors(
        &format!("{USERS}u,x@u.com,US,MCOEV,policy:us-first,\n"),
        ROUTING,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].3.contains("tenant u has no voice routing policy"),
        "{got:?}"
    );
}

#[test]
fn a_broken_file_is_one_error_not_one_per_user() {
    let got = errors(USERS, "[[voice_route]\ntenant = ");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0.as_str(), got[0].1), ("routing.toml", Some(1)));
    let mut f = files(TENANTS, USERS, None);
    f.routing = Some(Err("cannot read routing.toml: permission denied".into()));
    let e = Snapshot::from_files(f).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].file, "routing.toml");
}

#[test]
fn too_many_routes_in_a_usage_is_an_error() {
    let mut routing = String::new();
    for i in 0..=MAX_ROUTES_PER_USAGE {
        routing.push_str(&format!(
            "[[voice_route]]\ntenant = \"t\"\nname = \"r{i}\"\nusage = \"x\"\npattern = \"^[+]1\"\npriority = {i}\ngateways = [\"sbc1\"]\n"
        ));
    }
    let got = errors("tenant,user,usage_location,licenses\n", &routing);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].2, "usage");
    assert!(got[0].3.contains("at most 64"), "{got:?}");
}
