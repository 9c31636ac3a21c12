//! Shared by the numbering integration tests: the parsed metadata and the compiled plan.
#![allow(dead_code)]

use std::sync::OnceLock;

use tollgate_engine::numbering::metadata::{self, Territory};
use tollgate_engine::numbering::{NumberType, NumberingPlan};

pub fn plan() -> &'static NumberingPlan {
    static PLAN: OnceLock<NumberingPlan> = OnceLock::new();
    PLAN.get_or_init(|| NumberingPlan::builtin().expect("builtin plan"))
}

pub fn phone() -> &'static [Territory] {
    static T: OnceLock<Vec<Territory>> = OnceLock::new();
    T.get_or_init(|| {
        metadata::parse("PhoneNumberMetadata.xml", metadata::PHONE_NUMBER_METADATA).unwrap()
    })
}

pub fn short() -> &'static [Territory] {
    static T: OnceLock<Vec<Territory>> = OnceLock::new();
    T.get_or_init(|| {
        metadata::parse("ShortNumberMetadata.xml", metadata::SHORT_NUMBER_METADATA).unwrap()
    })
}

/// The number-type descriptions of PhoneNumberMetadata and what each means.
pub const TYPES: [(&str, NumberType); 10] = [
    ("fixedLine", NumberType::FixedLine),
    ("mobile", NumberType::Mobile),
    ("tollFree", NumberType::TollFree),
    ("premiumRate", NumberType::PremiumRate),
    ("sharedCost", NumberType::SharedCost),
    ("personalNumber", NumberType::PersonalNumber),
    ("voip", NumberType::Voip),
    ("pager", NumberType::Pager),
    ("uan", NumberType::Uan),
    ("voicemail", NumberType::Voicemail),
];

/// Every example number: (territory, type name, expected type, national number).
pub fn examples(
) -> impl Iterator<Item = (&'static Territory, &'static str, NumberType, &'static str)> {
    phone().iter().flat_map(|t| {
        TYPES.iter().filter_map(move |(name, ty)| {
            let ex = t.desc(name)?.example.as_deref()?;
            Some((t, *name, *ty, ex))
        })
    })
}

/// Whether `got` is what an example of type `want` may classify as: fixed-line and mobile
/// examples may be `fixed_line_or_mobile` where the region cannot tell them apart.
pub fn type_agrees(want: NumberType, got: NumberType) -> bool {
    want == got
        || (matches!(want, NumberType::FixedLine | NumberType::Mobile)
            && got == NumberType::FixedLineOrMobile)
}

/// Inserts visual separators the way people write numbers: `(0) 20-7946 0000`-ish.
pub fn punctuate(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 3 == 0 {
            out.push(if i % 2 == 0 { ' ' } else { '-' });
        }
        out.push(c);
    }
    out
}

/// The `phonenumber` crate's database built from the same vendored metadata (a test oracle).
pub fn oracle_db() -> &'static phonenumber::metadata::Database {
    static DB: OnceLock<phonenumber::metadata::Database> = OnceLock::new();
    DB.get_or_init(|| {
        phonenumber::metadata::Database::parse(metadata::PHONE_NUMBER_METADATA)
            .expect("phonenumber loads the vendored metadata")
    })
}

/// How libphonenumber writes `e164` for dialing within its own country (`format(NATIONAL)`,
/// which knows which number types are dialed with the national prefix).
pub fn national_format(e164: &str, nsn: &str) -> Option<String> {
    let db = oracle_db();
    let n = phonenumber::parse_with(db, None, e164).ok()?;
    let national = n
        .format_with(db)
        .mode(phonenumber::Mode::National)
        .to_string();
    // The crate strips a national prefix that is really part of the number in a few regions
    // (RU `+7 800...` comes out as `001...`): a national format must end with every digit of
    // the national number, or it is not used.
    let digits: String = national.chars().filter(char::is_ascii_digit).collect();
    digits.ends_with(nsn).then_some(national)
}
