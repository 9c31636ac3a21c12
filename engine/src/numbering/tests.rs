//! Unit tests of the numbering plan against hand-picked numbers. The exhaustive tests (every
//! example number, the differential test against the `phonenumber` crate) are in
//! `engine/tests/`.

use super::*;

fn plan() -> &'static NumberingPlan {
    static PLAN: std::sync::OnceLock<NumberingPlan> = std::sync::OnceLock::new();
    PLAN.get_or_init(|| NumberingPlan::builtin().expect("builtin plan"))
}

fn r(code: &str) -> Region {
    Region::new(code).unwrap()
}

fn ok(dialed: &str, caller: &str) -> (String, String, NumberType) {
    let d = plan()
        .classify(dialed, r(caller))
        .unwrap_or_else(|e| panic!("{dialed} from {caller}: {e}"));
    (d.e164().to_owned(), d.region.to_string(), d.number_type)
}

fn t(e164: &str, region: &str, ty: NumberType) -> (String, String, NumberType) {
    (e164.to_owned(), region.to_owned(), ty)
}

#[test]
fn e164_national_and_idd_forms_agree() {
    let want = t("+442079460000", "GB", NumberType::FixedLine);
    assert_eq!(ok("+44 20 7946 0000", "US"), want);
    assert_eq!(ok("020 7946 0000", "GB"), want);
    assert_eq!(ok("00442079460000", "DE"), want);
    assert_eq!(ok("011 44 20 7946 0000", "US"), want);
    assert_eq!(ok("0011 44 20 7946 0000", "AU"), want);
    assert_eq!(ok("tel:+44-20-7946-0000", "FR"), want);
    assert_eq!(ok("sip:+442079460000@gw.example.net", "FR"), want);
}

#[test]
fn nanp_forms_and_shared_code() {
    let us = t("+12125550100", "US", NumberType::FixedLineOrMobile);
    assert_eq!(ok("2125550100", "US"), us);
    assert_eq!(ok("1 212 555 0100", "US"), us);
    assert_eq!(ok("(212) 555-0100", "CA"), us);
    assert_eq!(ok("tel:5550100;phone-context=+1-212", "GB"), us);
    assert_eq!(ok("+1 416 555 0100", "US").1, "CA");
    assert_eq!(ok("+1 787 555 0100", "US").1, "PR");
    assert_eq!(ok("+1 876 555 0100", "US").1, "JM");
    assert_eq!(ok("+1 800 555 0100", "US").2, NumberType::TollFree);
}

#[test]
fn shared_codes_resolve_like_libphonenumber() {
    assert_eq!(ok("+44 1481 256789", "GB").1, "GG");
    assert_eq!(ok("+44 7624 123456", "GB").1, "IM");
    assert_eq!(ok("+7 701 123 4567", "RU").1, "KZ");
    assert_eq!(ok("+7 912 345 6789", "RU").1, "RU");
    assert_eq!(ok("+39 06 698 12345", "IT").1, "VA");
    assert_eq!(ok("+61 8 9164 1234", "AU").1, "CX");
    assert_eq!(ok("+61 8 9162 1234", "AU").1, "CC");
}

#[test]
fn national_prefix_transform_rules() {
    // Argentina: mobile numbers dialed nationally as 0 11 15 xxxx-xxxx become +54 9 11 xxxx xxxx.
    let ar = ok("011 15 2345 6789", "AR");
    assert_eq!(ar, t("+5491123456789", "AR", NumberType::Mobile));
    // Russia dials its national prefix 8.
    assert_eq!(ok("8 912 345 67 89", "RU").0, "+79123456789");
    // Jersey: a local 6-digit number gets its area code back (1534$1).
    assert_eq!(ok("456789", "JE").0, "+441534456789");
}

#[test]
fn emergency_and_short_numbers() {
    for (dial, region) in [
        ("911", "US"),
        ("112", "US"),
        ("999", "GB"),
        ("112", "GB"),
        ("110", "DE"),
        ("000", "AU"),
        ("911", "DE"),
    ] {
        let d = plan().classify(dial, r(region)).unwrap();
        assert_eq!(d.number_type, NumberType::Emergency, "{dial} in {region}");
        assert_eq!(d.e164(), dial);
        assert_eq!(d.region, r(region));
    }
    assert_eq!(
        ok("tel:911;phone-context=+1", "GB").2,
        NumberType::Emergency
    );
    assert_eq!(ok("411", "US").2, NumberType::ShortCode);
    // 999 is not an emergency number in the US.
    assert_ne!(
        plan().classify("999", r("US")).map(|d| d.number_type),
        Ok(NumberType::Emergency)
    );
    // Unknown caller region: 112 and 911 still work.
    assert_eq!(
        plan().classify("911", r("XX")).map(|d| d.number_type),
        Ok(NumberType::Emergency)
    );
}

#[test]
fn errors_tell_incomplete_from_invalid() {
    let err = |dial: &str, region: &str| plan().classify(dial, r(region)).unwrap_err();
    assert!(err("+", "US").is_incomplete());
    assert!(err("+4", "US").is_incomplete());
    assert!(err("+44 20 7946", "US").is_incomplete());
    assert!(err("020 79", "GB").is_incomplete());
    assert!(err("555 0100", "US").is_incomplete(), "local-only length");
    assert!(err("011", "US").is_incomplete());
    assert_eq!(err("", "US"), NumberError::Invalid(Why::Empty));
    assert_eq!(err("hello", "US"), NumberError::Invalid(Why::BadCharacter));
    assert_eq!(
        err("+0 123 456", "US"),
        NumberError::Invalid(Why::UnknownCallingCode)
    );
    assert_eq!(
        err("+999 123 456", "US"),
        NumberError::Invalid(Why::UnknownCallingCode)
    );
    assert_eq!(
        err(&"9".repeat(40), "US"),
        NumberError::Invalid(Why::TooLong)
    );
    assert_eq!(
        err("+1 212 555 0100 999", "US"),
        NumberError::Invalid(Why::TooLong)
    );
    assert_eq!(
        err("+1 000 000 0000", "US"),
        NumberError::Invalid(Why::NoMatch)
    );
    assert_eq!(
        err("1234567", "XX"),
        NumberError::Invalid(Why::UnknownCallerRegion)
    );
}

#[test]
fn plan_facts() {
    assert_eq!(plan().calling_code(r("GB")), Some(44));
    assert_eq!(plan().calling_code(r("PR")), Some(1));
    assert!(plan().has_region(r("VA")));
    assert!(!plan().has_region(r("XX")));
}
