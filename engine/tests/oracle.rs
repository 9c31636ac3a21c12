//! Differential test against the `phonenumber` crate (a Rust port of libphonenumber), loaded
//! with the *same* vendored metadata, over generated numbers: mutations of every example
//! number of every region and type, written as E.164, nationally from their own region, and
//! with an IDD prefix from another region (issue 2).
//!
//! The crate has defects of its own (see `engine/tests/oracle-disagreements.md`, where every
//! class of disagreement was reviewed): it matches some patterns as prefixes, loses leading
//! zeros of national numbers, and strips national prefixes from international numbers. So
//! each disagreement goes to a third party, a *judge* that checks a verdict against the
//! metadata itself with the `regex` crate (full-match patterns and possible lengths, as
//! libphonenumber's `isNumberMatchingDesc`). A disagreement where the judge upholds our
//! verdict and rejects the crate's counts as agreement; every other one counts against us.
//! Agreement so adjudicated must be at least 99.5 %, and raw agreement is printed beside it.

mod common;

use std::collections::BTreeMap;

use common::{examples, oracle_db, phone, plan, TYPES};
use tollgate_engine::numbering::metadata::Territory;
use tollgate_engine::numbering::{NumberType, Region};

/// splitmix64: a deterministic generator, so every run tests the same numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn digit(&mut self) -> char {
        (b'0' + self.below(10) as u8) as char
    }
}

fn mutate(rng: &mut Rng, nsn: &str) -> String {
    let mut d: Vec<char> = nsn.chars().collect();
    let n = d.len();
    match rng.below(8) {
        0..=2 => {
            // Change one digit (the commonest mutation: a different valid-looking number).
            let i = rng.below(n);
            d[i] = rng.digit();
        }
        3 => {
            // Change the last few digits (stays valid in most plans).
            for c in d.iter_mut().skip(n.saturating_sub(4)) {
                *c = rng.below(10).to_string().chars().next().unwrap_or('0');
            }
        }
        4 => {
            d.remove(rng.below(n));
        }
        5 => d.insert(rng.below(n + 1), rng.digit()),
        6 => {
            d.truncate(n.saturating_sub(1 + rng.below(3)));
        }
        _ => {
            if n > 1 {
                let i = rng.below(n - 1);
                d.swap(i, i + 1);
            }
        }
    }
    d.into_iter().collect()
}

type Verdict = Option<(String, String, NumberType)>;

fn oracle(dialed: &str, caller: &str) -> Verdict {
    let db = oracle_db();
    let id = caller.parse::<phonenumber::country::Id>().ok()?;
    let n = phonenumber::parse_with(db, Some(id), dialed).ok()?;
    if !n.is_valid_with(db) {
        return None;
    }
    let region = n.metadata(db)?.id().to_owned();
    use phonenumber::Type as T;
    let ty = match n.number_type(db) {
        T::FixedLine => NumberType::FixedLine,
        T::Mobile => NumberType::Mobile,
        T::FixedLineOrMobile => NumberType::FixedLineOrMobile,
        T::TollFree => NumberType::TollFree,
        T::PremiumRate => NumberType::PremiumRate,
        T::SharedCost => NumberType::SharedCost,
        T::PersonalNumber => NumberType::PersonalNumber,
        T::Voip => NumberType::Voip,
        T::Pager => NumberType::Pager,
        T::Uan => NumberType::Uan,
        T::Voicemail => NumberType::Voicemail,
        _ => NumberType::Unknown,
    };
    let e164 = n.format_with(db).mode(phonenumber::Mode::E164).to_string();
    Some((e164, region, ty))
}

/// `None` for refused numbers; short numbers (which the crate does not model) are `Err`.
fn ours(dialed: &str, caller: &str) -> Result<Verdict, ()> {
    let region = Region::new(caller).ok_or(())?;
    match plan().classify(dialed, region) {
        Ok(d) if d.is_short_number() => Err(()),
        Ok(d) => Ok(Some((
            d.e164().to_owned(),
            d.region.to_string(),
            d.number_type,
        ))),
        Err(_) => Ok(None),
    }
}

/// Whether the metadata itself says `verdict` is right: the region's general pattern and the
/// type's pattern both match the whole national number, at a possible length. `None` (not a
/// valid number) is upheld when the dialed digits make no valid number per the judge's view
/// of the other verdict, so it is judged by the caller.
struct Judge {
    patterns: std::collections::HashMap<String, regex::Regex>,
}

impl Judge {
    fn matches(&mut self, t: &Territory, desc: &str, nsn: &str) -> bool {
        let Some(d) = t.desc(desc) else { return false };
        let Some(p) = d.pattern.as_deref() else {
            return false;
        };
        let lengths_ok = desc == "generalDesc"
            || d.national_lengths.is_empty()
            || d.national_lengths.contains(nsn.len());
        let re = self
            .patterns
            .entry(p.to_owned())
            .or_insert_with(|| regex::Regex::new(&format!("^(?:{p})$")).expect("pattern"));
        lengths_ok && re.is_match(nsn)
    }

    fn upholds(&mut self, verdict: &(String, String, NumberType)) -> bool {
        let (e164, region, ty) = verdict;
        let Some(t) = phone()
            .iter()
            .find(|t| t.id == *region && e164[1..].starts_with(&t.country_code.to_string()))
        else {
            return false;
        };
        let nsn = &e164[1 + t.country_code.to_string().len()..];
        if !self.matches(t, "generalDesc", nsn) {
            return false;
        }
        match ty {
            NumberType::FixedLineOrMobile => self.matches(t, "fixedLine", nsn),
            ty => TYPES
                .iter()
                .find(|(_, x)| x == ty)
                .is_some_and(|(name, _)| self.matches(t, name, nsn)),
        }
    }

    /// Our verdict stands and the crate's falls.
    fn sides_with_us(&mut self, ours: &Verdict, theirs: &Verdict) -> bool {
        let ours_ok = ours.as_ref().is_none_or(|v| self.upholds(v));
        let theirs_ok = theirs.as_ref().is_none_or(|v| self.upholds(v));
        match (ours, theirs) {
            // Both name a number: ours must hold and theirs must not.
            (Some(_), Some(_)) => ours_ok && !theirs_ok,
            // We accept, the crate refuses: our number must be valid per the metadata.
            (Some(_), None) => ours_ok,
            // We refuse, the crate accepts: its number must be invalid per the metadata.
            (None, Some(_)) => !theirs_ok,
            (None, None) => true,
        }
    }
}

fn class(ours: &Verdict, theirs: &Verdict) -> &'static str {
    match (ours, theirs) {
        (Some(_), None) => "we accept, crate refuses",
        (None, Some(_)) => "we refuse, crate accepts",
        (Some(a), Some(b)) if a.0 != b.0 => "different E.164",
        (Some(a), Some(b)) if a.1 != b.1 => "different region",
        _ => "different type",
    }
}

#[test]
fn agrees_with_the_phonenumber_crate() {
    let mut rng = Rng(0x70_11_6a_7e);
    let callers = ["US", "GB", "DE", "FR", "CA", "AU", "IN", "BR", "JP", "RU"];
    let all: Vec<_> = examples().collect();
    let (mut total, mut agree, mut adjudicated, mut short) = (0usize, 0usize, 0usize, 0usize);
    let mut judge = Judge {
        patterns: Default::default(),
    };
    let mut classes: BTreeMap<(&str, String), (usize, Vec<String>)> = BTreeMap::new();
    while total < 100_000 {
        let (t, _, _, nsn) = all[rng.below(all.len())];
        let m = mutate(&mut rng, nsn);
        let own = Region::new(&t.id).filter(|r| !r.is_non_geographic());
        let (dialed, caller) = match (rng.below(3), own) {
            (0, Some(own)) => {
                let np = t.national_prefix.as_deref().unwrap_or("");
                (format!("{np}{m}"), own.to_string())
            }
            (1, _) => (format!("00 {} {m}", t.country_code), "DE".to_owned()),
            _ => (
                format!("+{}{m}", t.country_code),
                callers[rng.below(callers.len())].to_owned(),
            ),
        };
        let Ok(mine) = ours(&dialed, &caller) else {
            short += 1;
            continue;
        };
        total += 1;
        let theirs = oracle(&dialed, &caller);
        if mine == theirs {
            agree += 1;
        } else {
            let upheld = judge.sides_with_us(&mine, &theirs);
            adjudicated += upheld as usize;
            let verdict = if upheld { "crate wrong" } else { "UNRESOLVED" };
            let e = classes
                .entry((class(&mine, &theirs), format!("{verdict}  {}", t.id)))
                .or_default();
            e.0 += 1;
            if e.1.len() < 2 {
                e.1.push(format!(
                    "{dialed:?} from {caller}: ours {mine:?}, crate {theirs:?}"
                ));
            }
        }
    }
    let raw = agree as f64 / total as f64;
    let rate = (agree + adjudicated) as f64 / total as f64;
    let mut report = format!(
        "raw agreement {agree}/{total} = {:.3}%; after the judge {}/{total} = {:.3}% \
         ({short} short numbers skipped)\n",
        raw * 100.0,
        agree + adjudicated,
        rate * 100.0
    );
    for ((class, region), (n, samples)) in &classes {
        report += &format!("{n:6}  {class}  {region}\n");
        for s in samples {
            report += &format!("          {s}\n");
        }
    }
    println!("{report}");
    assert!(rate >= 0.995, "{report}");
}
