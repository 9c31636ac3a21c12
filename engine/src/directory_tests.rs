//! Tests of the directory snapshot: loading the shipped files, lookups, pools, errors.

use std::path::Path;

use super::*;

pub(crate) fn shipped() -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    Snapshot::from_files(load::read_for_tests(&dir)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shipped_directory_loads_and_looks_up() {
    let s = shipped();
    assert_eq!(s.tenants.len(), 3);
    let (_, a) = s.lookup("alice@contoso.com").unwrap();
    assert_eq!(&*a.upn, "alice@contoso.com");
    assert_eq!(s.lookup("sip:Alice@Contoso.com").unwrap().1.upn, a.upn);
    assert_eq!(
        s.lookup("alice@contoso.onmicrosoft.com").unwrap().1.upn,
        a.upn
    );
    assert_eq!(s.lookup("tel:+14255550101").unwrap().1.upn, a.upn);
    assert_eq!(
        s.lookup("sip:+14255550101@contoso.com;user=phone")
            .unwrap()
            .1
            .upn,
        a.upn
    );
    assert!(s.lookup("sip:+14255550101@fabrikam.de").is_none());
    assert!(s.lookup("mallory@contoso.com").is_none());
    assert!(s.lookup("").is_none());
    assert!(s.lookup("+").is_none());
}

#[test]
fn pools_and_capacities() {
    let s = shipped();
    let cap = |tenant: &str, region: &str, sku: &str, kind: PoolKind| {
        s.pools
            .iter()
            .find(|(k, _)| {
                &*k.tenant == tenant
                    && k.region.as_str() == region
                    && &*k.sku == sku
                    && k.kind == kind
            })
            .map(|(_, c)| *c)
    };
    // alice (US), carmen (PR), heidi (US), ivan (US) hold MCOPSTN1: PR pools with US.
    assert_eq!(
        cap("contoso", "US", "MCOPSTN1", PoolKind::Domestic),
        Some(4 * 3000 * 60)
    );
    assert_eq!(
        cap("contoso", "CA", "MCOPSTN1", PoolKind::Domestic),
        Some(3000 * 60)
    );
    assert_eq!(
        cap("contoso", "US", "MCOPSTN2", PoolKind::International),
        Some(600 * 60)
    );
    assert_eq!(
        cap("fabrikam", "DE", "MCOPSTN1", PoolKind::Domestic),
        Some(2 * 1200 * 60)
    );
    assert_eq!(
        cap("contoso", "US", "MCOPSTN5", PoolKind::Domestic),
        Some(120 * 60)
    );
    let carmen = s.lookup("carmen@contoso.com").unwrap().1;
    let alice = s.lookup("alice@contoso.com").unwrap().1;
    assert_eq!(carmen.domestic_pool, alice.domestic_pool);
    assert!(alice.international_pool().is_none());
    assert!(s
        .lookup("bob@contoso.com")
        .unwrap()
        .1
        .international_pool()
        .is_some());
}

#[test]
fn policies() {
    assert_eq!(
        DialOut::from_policy("DialoutCPCZoneAPSTNDisabled"),
        Some(DialOut::Disabled)
    );
    assert_eq!(
        DialOut::from_policy("DialoutCPCInternationalPSTNDomestic"),
        Some(DialOut::Domestic)
    );
    assert_eq!(DialOut::from_policy(""), Some(DialOut::International));
    assert_eq!(DialOut::from_policy("DialoutCPCZoneAndPSTNDisabled"), None);
    assert_eq!(DialOut::from_policy("Tag:Foo"), None);
}

#[test]
fn every_user_error_is_reported_with_line_and_field() {
    let mut rec = load::Records::default();
    let mut errors = LoadErrors::default();
    rec.tenants = load::parse_tenants(
        "[[tenant]]\nid = \"t\"\ndomains = [\"t.com\"]\ncredits = \"x\"\n",
        &mut errors,
    );
    rec.users = load::parse_users(
        "tenant,user,line_uri,usage_location,licenses,voice_routing,dial_out_policy\n\
         t,a@t.com,+1,USA,MCOEV,direct_routing:nope,Bogus\n\
         nope,b@other.com,,US,MCOEV,,\n\
         t,c@t.com,12345,US,WHATEVER;MCOEV,,\n",
        &mut errors,
    );
    assert!(errors.is_empty());
    let e = Snapshot::build(rec).unwrap_err();
    let got: Vec<_> =
        e.0.iter()
            .map(|e| (e.file.as_str(), e.line, e.field.as_str()))
            .collect();
    assert_eq!(
        got,
        [
            ("tenants.toml", Some(1), "credits"),
            ("users.csv", Some(2), "line_uri"),
            ("users.csv", Some(2), "usage_location"),
            ("users.csv", Some(2), "voice_routing"),
            ("users.csv", Some(2), "dial_out_policy"),
            ("users.csv", Some(3), "tenant"),
            ("users.csv", Some(4), "line_uri"),
        ]
    );
}

#[test]
fn load_streams_users_and_reports_syntax_and_semantic_errors_together() {
    let dir = std::env::temp_dir().join(format!("tollgate-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for f in ["tenants.toml", "catalog.toml", "rates.csv"] {
        std::fs::copy(shipped.join(f), dir.join(f)).unwrap();
    }
    let mut users =
        b"tenant,user,usage_location,licenses\ncontoso,a@contoso.com,XXX,MCOEV\n".to_vec();
    users
        .extend_from_slice(b"contoso,b\xff@contoso.com,US,MCOEV\ncontoso,c@contoso.com,US,MCOEV\n");
    std::fs::write(dir.join("users.csv"), users).unwrap();
    let e = Snapshot::from_files(load::read_for_tests(&dir)).unwrap_err();
    let got: Vec<_> = e.0.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(got, [(Some(2), "usage_location"), (Some(3), "")]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: a usage location outside the numbering plan (`UK`, `XX`), a license list that is not
/// `;`-separated and a row short of columns are refused with file, line and field; each would
/// otherwise leave a user unable to call (999 included) or without their licenses, silently.
#[test]
fn rows_that_would_silently_disable_a_user_are_refused() {
    let mut rec = Records::default();
    let mut errors = LoadErrors::default();
    rec.tenants = load::parse_tenants(
        "[[tenant]]\nid = \"t\"\ndomains = [\"t.com\"]\n",
        &mut errors,
    );
    rec.catalog = load::parse_catalog(include_str!("../../config/catalog.toml"), &mut errors);
    rec.users = load::parse_users(
        "tenant,user,line_uri,usage_location,licenses,voice_routing\n\
         t,a@t.com,,UK,MCOEV;MCOPSTN1,\n\
         t,b@t.com,,XX,MCOEV,\n\
         t,c@t.com,,GB,MCOEV MCOPSTN1,\n\
         t,d@t.com,,GB,\"MCOEV,MCOPSTN1\",\n\
         t,e@t.com,,GB\n\
         t,f@t.com,,gb, MCOEV ; MCOPSTN1 ;;UNKNOWN_SKU,\n",
        &mut errors,
    );
    let e = Snapshot::build(rec).unwrap_err();
    let got: Vec<_> = errors
        .0
        .iter()
        .chain(&e.0)
        .map(|e| (e.file.as_str(), e.line, e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("users.csv", Some(6), "licenses"),
            ("users.csv", Some(2), "usage_location"),
            ("users.csv", Some(3), "usage_location"),
            ("users.csv", Some(4), "licenses"),
            ("users.csv", Some(5), "licenses"),
        ],
        "{e}"
    );
}

/// A Direct Routing gateway that cannot be the host of a Contact is refused with its tenant's
/// line and the gateway's key.
#[test]
fn bad_direct_routing_gateways_are_refused() {
    let mut errors = LoadErrors::default();
    let rec = Records {
        tenants: load::parse_tenants(
            "[[tenant]]\nid = \"t\"\ndomains = [\"t.com\"]\n[tenant.direct_routing]\n\
             ok = \"sbc1.t.com:5061;transport=tls\"\nspace = \"sbc 2.t.com\"\nangle = \"sbc3>\"\n",
            &mut errors,
        ),
        catalog: load::parse_catalog(include_str!("../../config/catalog.toml"), &mut errors),
        ..Records::default()
    };
    assert!(errors.is_empty(), "{errors}");
    let e = Snapshot::build(rec).unwrap_err();
    let got: Vec<_> = e.0.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(1), "direct_routing.angle"),
            (Some(1), "direct_routing.space")
        ],
        "{e}"
    );
}
