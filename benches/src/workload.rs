//! Dialed-number workloads for the numbering benches: a deterministic mix drawn from every
//! region of the vendored metadata, in the forms a proxy sends (E.164, national, IDD from
//! another country) plus emergency numbers.

use tollgate_engine::numbering::metadata::{self, Territory};
use tollgate_engine::numbering::Region;

/// One dialed string and the caller's region.
#[derive(Clone, Debug)]
pub struct Dial {
    pub dialed: String,
    pub caller: Region,
}

/// `n` dials: 40 % E.164, 30 % national from the number's own region, 20 % with the IDD
/// prefix `00` from Germany or `011` from the US, 10 % emergency numbers of the caller's region.
pub fn mixed(n: usize) -> Vec<Dial> {
    let phone = metadata::parse("PhoneNumberMetadata.xml", metadata::PHONE_NUMBER_METADATA)
        .expect("vendored metadata parses");
    let short = metadata::parse("ShortNumberMetadata.xml", metadata::SHORT_NUMBER_METADATA)
        .expect("vendored metadata parses");
    let examples: Vec<(&Territory, &str)> = phone
        .iter()
        .flat_map(|t| {
            t.descs
                .iter()
                .filter(|(name, _)| name.as_str() != "generalDesc")
                .filter_map(move |(_, d)| Some((t, d.example.as_deref()?)))
        })
        .collect();
    let emergency: Vec<(Region, &str)> = short
        .iter()
        .filter_map(|t| {
            let ex = t.desc("emergency")?.example.as_deref()?;
            Some((Region::new(&t.id)?, ex))
        })
        .collect();
    let us = Region::new("US").expect("US");
    let de = Region::new("DE").expect("DE");
    let mut rng = 0x5eed_u64;
    let mut next = |m: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let (t, nsn) = examples[next(examples.len())];
            let own = Region::new(&t.id).filter(|r| !r.is_non_geographic());
            match (next(10), own) {
                (0..=3, _) | (4..=6, None) => Dial {
                    dialed: format!("+{}{}", t.country_code, nsn),
                    caller: us,
                },
                (4..=6, Some(own)) => Dial {
                    dialed: format!("{}{}", t.national_prefix.as_deref().unwrap_or(""), nsn),
                    caller: own,
                },
                (7, _) => Dial {
                    dialed: format!("00 {} {}", t.country_code, nsn),
                    caller: de,
                },
                (8, _) => Dial {
                    dialed: format!("011 {} {}", t.country_code, nsn),
                    caller: us,
                },
                _ => {
                    let (region, ex) = emergency[next(emergency.len())];
                    Dial {
                        dialed: ex.to_owned(),
                        caller: region,
                    }
                }
            }
        })
        .collect()
}
