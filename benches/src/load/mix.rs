//! Who calls and what they dial: callers from a directory's `users.csv` and a weighted mix of
//! dialed numbers relative to each caller's usage location.
//!
//! The choice for call `i` is a pure function of `i` ([`Mix::pick`]), so the sender does not
//! store it: the ACK of call `i` is rebuilt from the same pick. Every string is prepared once,
//! up front; a pick is two table lookups.
//!
//! Dialed numbers are written without visual separators (they go into a SIP Request-URI user
//! part). The shares of the `default` mix are meant to look like a PBX's outbound traffic with
//! a noticeable reject share, so the daemon's reject paths get load too.

use std::path::Path;

use anyhow::Context;
use tollgate_engine::load::{self, LoadErrors};

/// The kinds of dialed number, and what the daemon usually answers for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// National or E.164 numbers of the caller's own country (or its domestic group).
    Domestic,
    International,
    TollFree,
    Premium,
    Emergency,
    /// Numbers no numbering plan accepts (`404 invalid_number`).
    Invalid,
    /// Too short to be a number yet (`484 incomplete_number`).
    Incomplete,
}

/// A named mix: weights of each kind, in percent.
#[derive(Clone, Copy, Debug)]
pub struct Weights(pub &'static [(Kind, u32)]);

impl Weights {
    /// `default`: mostly domestic, some international, a share of rejects, a little emergency.
    pub const DEFAULT: Weights = Weights(&[
        (Kind::Domestic, 50),
        (Kind::International, 15),
        (Kind::TollFree, 8),
        (Kind::Premium, 2),
        (Kind::Emergency, 5),
        (Kind::Invalid, 10),
        (Kind::Incomplete, 10),
    ]);
    /// `domestic`: domestic numbers only (mostly admitted).
    pub const DOMESTIC: Weights = Weights(&[(Kind::Domestic, 100)]);
    /// `emergency`: emergency numbers only (always admitted, whatever the licenses).
    pub const EMERGENCY: Weights = Weights(&[(Kind::Emergency, 100)]);

    /// The mix named on the command line.
    pub fn by_name(name: &str) -> Option<Weights> {
        match name {
            "default" => Some(Weights::DEFAULT),
            "domestic" => Some(Weights::DOMESTIC),
            "emergency" => Some(Weights::EMERGENCY),
            _ => None,
        }
    }
}

/// Dialed strings of one caller country, by kind.
struct Plan {
    domestic: &'static [&'static str],
    international: &'static [&'static str],
    toll_free: &'static [&'static str],
    premium: &'static [&'static str],
    emergency: &'static [&'static str],
}

/// What a number-plan caller (NANP: US, CA, PR) dials.
const NANP: Plan = Plan {
    domestic: &[
        "2125550100",
        "+12065550123",
        "14255550199",
        "+14165550100",
        "7875550142",
    ],
    international: &[
        "+442079460000",
        "011442079460000",
        "+33155550104",
        "+4930123456",
    ],
    toll_free: &["18005550100", "+18885550100"],
    premium: &["+19005550100"],
    emergency: &["911"],
};
const GB: Plan = Plan {
    domestic: &["02079460000", "07700900123", "+441614960000"],
    international: &["+12125550100", "00493012345678", "+33155550104"],
    toll_free: &["08001234567"],
    premium: &["09098790000"],
    emergency: &["999", "112"],
};
const DE: Plan = Plan {
    domestic: &["0301234567", "015123456789", "+498912345678"],
    international: &["+33155550104", "0044207946000", "+12125550100"],
    toll_free: &["08001234567"],
    premium: &["09001234567"],
    emergency: &["112", "110"],
};
const FR: Plan = Plan {
    domestic: &["0155550104", "0612345678", "+33491234567"],
    international: &["+4930123456", "00442079460000", "+12125550100"],
    toll_free: &["0800123456"],
    premium: &["0899123456"],
    emergency: &["112", "15"],
};
const INVALID: &[&str] = &["+99912345678", "+1555", "0000000000000000"];
const INCOMPLETE: &[&str] = &["+44207", "02", "+1206"];

/// Slots per weighted table: a pick is `table[hash % SLOTS]`.
const SLOTS: usize = 100;

/// Callers and their dial tables, ready for [`Mix::pick`].
pub struct Mix {
    /// `From` URIs (`sip:+14255550101@load.example;user=phone` or `sip:alice@contoso.com`),
    /// each with the index of its dial table.
    callers: Vec<(String, usize)>,
    /// One weighted table of [`SLOTS`] dialed strings per caller country (NANP, GB, DE, FR).
    tables: [Vec<&'static str>; 4],
}

impl Mix {
    /// The callers of `dir/users.csv`: each user by line URI (when it has one) and by UPN.
    pub fn from_directory(dir: &Path, weights: Weights) -> anyhow::Result<Mix> {
        let path = dir.join(load::USERS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut errors = LoadErrors::default();
        let mut callers = Vec::new();
        load::for_each_user(&text, &mut errors, |u| {
            let table = table_of(&u.usage_location);
            let number = u.line_uri.trim().trim_start_matches("tel:");
            if !number.is_empty() {
                callers.push((format!("sip:{number}@load.example;user=phone"), table));
            }
            if !u.user.is_empty() {
                callers.push((format!("sip:{}", u.user.trim()), table));
            }
        });
        if !errors.is_empty() {
            anyhow::bail!("{}: {errors}", path.display());
        }
        Mix::new(callers, weights)
    }

    /// A mix over explicit callers (`From` URI, caller country code such as `US`).
    pub fn new(callers: Vec<(String, usize)>, weights: Weights) -> anyhow::Result<Mix> {
        anyhow::ensure!(!callers.is_empty(), "no callers in the directory");
        let tables = [&NANP, &GB, &DE, &FR].map(|plan| weighted(plan, weights));
        Ok(Mix { callers, tables })
    }

    /// The caller's `From` URI and the dialed string of call `index`.
    pub fn pick(&self, index: u64) -> (&str, &'static str) {
        let h = splitmix64(index);
        let (caller, table) = &self.callers[(h % self.callers.len() as u64) as usize];
        let dial = self.tables[*table][((h >> 40) % SLOTS as u64) as usize];
        (caller, dial)
    }

    pub fn callers(&self) -> usize {
        self.callers.len()
    }
}

/// The dial table of a usage location: GB, DE, FR have their own; everyone else dials as a
/// NANP caller would (the synthetic directories have only US, PR, CA, GB, DE, FR).
pub fn table_of(usage_location: &str) -> usize {
    match usage_location.trim() {
        "GB" => 1,
        "DE" => 2,
        "FR" => 3,
        _ => 0,
    }
}

/// [`SLOTS`] dialed strings in the proportions of `weights` (rounded down, topped up with
/// domestic numbers).
fn weighted(plan: &Plan, weights: Weights) -> Vec<&'static str> {
    let mut table = Vec::with_capacity(SLOTS);
    for &(kind, weight) in weights.0 {
        let numbers = match kind {
            Kind::Domestic => plan.domestic,
            Kind::International => plan.international,
            Kind::TollFree => plan.toll_free,
            Kind::Premium => plan.premium,
            Kind::Emergency => plan.emergency,
            Kind::Invalid => INVALID,
            Kind::Incomplete => INCOMPLETE,
        };
        let slots = (weight as usize * SLOTS / 100).min(SLOTS - table.len());
        table.extend((0..slots).map(|i| numbers[i % numbers.len()]));
    }
    let mut i = 0;
    while table.len() < SLOTS {
        table.push(plan.domestic[i % plan.domestic.len()]);
        i += 1;
    }
    // Interleave kinds so that consecutive slots differ (the hash spreads picks anyway).
    let mut shuffled = Vec::with_capacity(SLOTS);
    for k in 0..SLOTS {
        shuffled.push(table[(k * 37) % SLOTS]);
    }
    shuffled
}

/// A good 64-bit mix (Steele et al., SplitMix64): consecutive call indexes spread evenly over
/// callers and dial slots.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_fill_the_table_in_proportion() {
        let t = weighted(&NANP, Weights::DEFAULT);
        assert_eq!(t.len(), SLOTS);
        assert_eq!(t.iter().filter(|d| **d == "911").count(), 5);
        let t = weighted(&GB, Weights::DOMESTIC);
        assert!(t.iter().all(|d| GB.domestic.contains(d)));
    }

    #[test]
    fn shipped_directory_callers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mix = Mix::from_directory(&dir, Weights::DEFAULT).unwrap();
        // 21 users, 20 with a line URI.
        assert_eq!(mix.callers(), 41);
        let (caller, dial) = mix.pick(7);
        assert!(caller.starts_with("sip:"), "{caller}");
        assert!(!dial.is_empty());
        assert_eq!(mix.pick(7), (caller, dial));
    }
}
