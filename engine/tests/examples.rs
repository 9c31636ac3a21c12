//! Every example number of the vendored metadata classifies back to its own region and type,
//! whether entered as E.164, dialed nationally in its own region (with and without
//! punctuation), or dialed with an IDD prefix from another region (issue 2).

mod common;

use common::{examples, national_format, plan, punctuate, short, type_agrees};
use tollgate_engine::numbering::{NumberType, Region};

#[test]
fn every_example_number_in_every_form() {
    let us = Region::new("US").unwrap();
    let de = Region::new("DE").unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (t, name, want, nsn) in examples() {
        let e164 = format!("+{}{}", t.country_code, nsn);
        let mut forms = vec![
            (e164.clone(), us),
            (format!("00{}{}", t.country_code, nsn), de),
            (format!("011 {} {}", t.country_code, punctuate(nsn)), us),
        ];
        if let Some(own) = Region::new(&t.id).filter(|r| !r.is_non_geographic()) {
            let national = national_format(&e164, nsn)
                .unwrap_or_else(|| format!("{}{nsn}", t.national_prefix.as_deref().unwrap_or("")));
            let bare: String = national.chars().filter(char::is_ascii_digit).collect();
            forms.push((punctuate(&bare), own));
            forms.push((bare, own));
            forms.push((national, own));
        }
        // The E.164 form is the reference: right number and type, and the example's own
        // region, or (a number valid in several regions of a shared calling code, such as
        // +1 800) the region libphonenumber's `getRegionCodeForNumber` picks first.
        let reference = plan().classify(&e164, us);
        match &reference {
            Ok(d)
                if d.e164() == e164
                    && type_agrees(want, d.number_type)
                    && (d.region.as_str() == t.id
                        || plan().calling_code(d.region) == Some(t.country_code)) => {}
            other => failures.push(format!("{} {name} {e164:?}: {other:?}", t.id)),
        }
        for (dialed, caller) in forms {
            checked += 1;
            let got = plan().classify(&dialed, caller);
            if got != reference {
                failures.push(format!(
                    "{} {name} {dialed:?} from {caller}: {got:?}, E.164 form gave {reference:?}",
                    t.id
                ));
            }
        }
    }
    assert!(checked > 5000, "only {checked} forms checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_emergency_example_is_emergency_in_its_region() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for t in short() {
        let Some(ex) = t.desc("emergency").and_then(|d| d.example.as_deref()) else {
            continue;
        };
        let Some(region) = Region::new(&t.id) else {
            continue;
        };
        checked += 1;
        match plan().classify(ex, region) {
            Ok(d) if d.number_type == NumberType::Emergency && d.region == region => {}
            other => failures.push(format!("{} {ex}: {other:?}", t.id)),
        }
    }
    assert!(checked > 200, "only {checked} regions checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn garbage_gets_a_clean_error() {
    let us = Region::new("US").unwrap();
    for bad in [
        "",
        " ",
        "+",
        "++",
        "abc",
        "0800-FLOWERS",
        &"4".repeat(40),
        "١٢٣٤٥٦٧٨٩٠",
        "+٤٤",
        "\0",
        "tel:",
        "sip:@",
        ";phone-context=+1",
        "tel:123;phone-context=+",
        "\u{feff}911",
    ] {
        let got = plan().classify(bad, us);
        assert!(got.is_err(), "{bad:?} gave {got:?}");
    }
}
