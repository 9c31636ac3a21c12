//! Compiling parsed metadata into the tables [`NumberingPlan`] searches.
//!
//! Per calling code, one [`PatternSet`] holds every pattern of every region sharing the code
//! (general description, each number type, and the territory's `leadingDigits`), so that one
//! walk over a national number answers both "which region?" and "which type?". Per region, the
//! IDD and national-prefix patterns become [`Prefix`] automata, and the short-number patterns
//! (general, `shortCode`, `emergency`) a small [`PatternSet`] of their own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use regex_automata::meta;
use regex_automata::util::syntax;

use super::automaton::{PatternSet, Prefix};
use super::metadata::{Desc, Lengths, Territory};
use super::types::{NumberType, Region};
use super::MetadataError;

/// The number-type descriptions and the types they mean, in the order libphonenumber's
/// `getNumberTypeHelper` tests them after `generalDesc`. Index = bit in [`Kind`] masks.
pub(crate) const TYPE_DESCS: [(&str, NumberType); 10] = [
    ("premiumRate", NumberType::PremiumRate),
    ("tollFree", NumberType::TollFree),
    ("sharedCost", NumberType::SharedCost),
    ("voip", NumberType::Voip),
    ("personalNumber", NumberType::PersonalNumber),
    ("pager", NumberType::Pager),
    ("uan", NumberType::Uan),
    ("voicemail", NumberType::Voicemail),
    ("fixedLine", NumberType::FixedLine),
    ("mobile", NumberType::Mobile),
];
/// Indices of `fixedLine` and `mobile` in [`TYPE_DESCS`]: tested last, and together.
pub(crate) const FIXED: u8 = 8;
pub(crate) const MOBILE: u8 = 9;

/// Which pattern of a region a [`PatternSet`] match stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `generalDesc`.
    General,
    /// `TYPE_DESCS[i]`.
    Type(u8),
    /// The territory's `leadingDigits` (a prefix match).
    Leading,
}

impl Kind {
    pub(crate) const GENERAL_BIT: u16 = 1;
    pub(crate) fn bit(self) -> u16 {
        match self {
            Kind::General => Self::GENERAL_BIT,
            Kind::Type(i) => 1 << (1 + i),
            Kind::Leading => 1 << 11,
        }
    }
}

/// Most regions that share one calling code (+1 has 25); masks are sized for this.
pub(crate) const MAX_REGIONS_PER_CODE: usize = 32;

/// One region among those sharing a calling code.
pub(crate) struct Member {
    pub(crate) region_idx: usize,
    pub(crate) has_leading_digits: bool,
    pub(crate) same_mobile_and_fixed: bool,
    /// Possible national lengths per kind: `[0]` general, `[1 + i]` for `TYPE_DESCS[i]`.
    pub(crate) lengths: [Lengths; 11],
}

/// Everything about one calling code.
pub(crate) struct CodePlan {
    pub(crate) code: u16,
    /// `+` and the code's digits (`+44`), for building E.164 strings without dividing.
    pub(crate) e164_prefix: [u8; 4],
    pub(crate) e164_prefix_len: u8,
    /// Main country first, then the others in metadata order (libphonenumber's order).
    pub(crate) members: Vec<Member>,
    /// Walk payloads: the prefix bits are `1 << member` for `leadingDigits`; a full match's
    /// payload is 1 + an index into `hit_sets`.
    pub(crate) set: PatternSet,
    pub(crate) hit_sets: Vec<HitSet>,
}

/// What one set of whole-number matches of a [`CodePlan`]'s patterns means, worked out at
/// build time so that a walk ends in one lookup instead of one step per matching pattern.
pub(crate) struct HitSet {
    /// A bit per member whose `leadingDigits` matched the whole number.
    pub(crate) leading: u32,
    /// (member, [`Kind::bit`]s of its patterns that matched), for each member with a match.
    pub(crate) members: Box<[(u8, u16)]>,
}

/// A national prefix rule: `nationalPrefixForParsing` and `nationalPrefixTransformRule`.
pub(crate) struct NationalPrefix {
    pub(crate) prefix: Prefix,
    pub(crate) transform: Option<Transform>,
}

/// `nationalPrefixTransformRule`: needs capture groups, so it keeps a (meta) regex. Searched
/// only when [`NationalPrefix::prefix`] already matched, with a per-thread cache.
pub(crate) struct Transform {
    pub(crate) regex: meta::Regex,
    /// Process-unique id, keying the per-thread search caches.
    pub(crate) id: usize,
    pub(crate) parts: Vec<Part>,
}

/// A piece of a transform rule such as `9$1` or `0549$1`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(Vec<u8>),
    Group(usize),
}

/// Short numbers of a region (ShortNumberMetadata).
pub(crate) struct ShortPlan {
    /// General, `shortCode` and `emergency` (those present); a full match's payload has a
    /// [`ShortKind::bit`] for each that matched.
    pub(crate) set: PatternSet,
    pub(crate) general_lengths: Lengths,
    pub(crate) short_code_lengths: Lengths,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShortKind {
    General,
    ShortCode,
    Emergency,
}

impl ShortKind {
    pub(crate) const fn bit(self) -> u32 {
        match self {
            ShortKind::General => 1,
            ShortKind::ShortCode => 2,
            ShortKind::Emergency => 4,
        }
    }
}

pub(crate) struct RegionPlan {
    pub(crate) region: Region,
    pub(crate) code_idx: usize,
    /// This region's index among its code's members.
    pub(crate) member: usize,
    pub(crate) idd: Option<Prefix>,
    pub(crate) national_prefix: Option<NationalPrefix>,
    /// `generalDesc` possible lengths (national, and local-only).
    pub(crate) lengths: Lengths,
    pub(crate) local_only: Lengths,
    pub(crate) short: Option<ShortPlan>,
}

/// The compiled tables.
pub(crate) struct Tables {
    pub(crate) regions: Vec<RegionPlan>,
    pub(crate) codes: Vec<CodePlan>,
    /// Calling code → index into `codes` + 1 (0: no such code).
    pub(crate) code_index: Box<[u16; 1000]>,
    /// `AA`..`ZZ` → index into `regions` + 1 (0: unknown). `001` has no entry: it is never a
    /// caller's region.
    pub(crate) region_index: Box<[u16; 676]>,
    /// Digits of the longest emergency number of any region (`<emergency>` possible lengths of
    /// the short-number metadata; at least 3, for 112 and 911).
    pub(crate) longest_emergency: usize,
}

pub(crate) fn region_slot(r: Region) -> Option<usize> {
    match r.bytes() {
        [a @ b'A'..=b'Z', b @ b'A'..=b'Z', 0] => {
            Some((a - b'A') as usize * 26 + (b - b'A') as usize)
        }
        _ => None,
    }
}

static NEXT_TRANSFORM_ID: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn compile(phone: &[Territory], short: &[Territory]) -> Result<Tables, MetadataError> {
    let short_by_id: HashMap<&str, &Territory> = short.iter().map(|t| (t.id.as_str(), t)).collect();

    // Group territories by calling code, main country first (libphonenumber's region order).
    let mut by_code: BTreeMap<u16, Vec<&Territory>> = BTreeMap::new();
    for t in phone {
        by_code.entry(t.country_code).or_default().push(t);
    }

    let mut regions = Vec::new();
    let mut codes = Vec::new();
    let mut code_index = Box::new([0u16; 1000]);
    let mut region_index = Box::new([0u16; 676]);
    for (code, mut territories) in by_code {
        if code == 0 || code >= 1000 {
            return Err(MetadataError(format!("calling code {code} out of range")));
        }
        if territories.len() > MAX_REGIONS_PER_CODE {
            return Err(MetadataError(format!(
                "calling code {code} has {} regions, more than {MAX_REGIONS_PER_CODE}",
                territories.len()
            )));
        }
        // Stable sort keeps metadata order among the others.
        territories.sort_by_key(|t| !t.main_country_for_code);
        let code_idx = codes.len();
        let mut members = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut slots = Vec::new();
        for (m, t) in territories.iter().enumerate() {
            let region = Region::new(&t.id).ok_or_else(|| {
                MetadataError(format!("territory line {}: bad id {:?}", t.line, t.id))
            })?;
            let (lengths, local_only) = general_lengths(t);
            let mut kind_lengths = [Lengths::default(); 11];
            kind_lengths[0] = lengths;
            let mut add = |kind: Kind, pattern: &str| {
                patterns.push(pattern.to_owned());
                slots.push((m as u8, kind));
            };
            if let Some(p) = t.desc("generalDesc").and_then(|d| d.pattern.as_deref()) {
                add(Kind::General, p);
            }
            for (i, (name, _)) in TYPE_DESCS.iter().enumerate() {
                if let Some(d) = t.desc(name) {
                    if let Some(p) = d.pattern.as_deref() {
                        add(Kind::Type(i as u8), p);
                    }
                    kind_lengths[1 + i] = d.national_lengths;
                }
            }
            if let Some(ld) = t.leading_digits.as_deref() {
                add(Kind::Leading, ld);
            }
            let pattern_of = |name: &str| t.desc(name).and_then(|d| d.pattern.clone());
            members.push(Member {
                region_idx: regions.len(),
                has_leading_digits: t.leading_digits.is_some(),
                same_mobile_and_fixed: pattern_of("fixedLine").is_some()
                    && pattern_of("fixedLine") == pattern_of("mobile"),
                lengths: kind_lengths,
            });
            if let Some(slot) = region_slot(region) {
                region_index[slot] = regions.len() as u16 + 1;
            }
            regions.push(RegionPlan {
                region,
                code_idx,
                member: m,
                idd: t
                    .international_prefix
                    .as_deref()
                    .map(Prefix::new)
                    .transpose()?,
                national_prefix: national_prefix(t)?,
                lengths,
                local_only,
                short: short_by_id
                    .get(t.id.as_str())
                    .map(|s| short_plan(s))
                    .transpose()?,
            });
        }
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let mut hit_sets = Vec::new();
        // Many states end in the same matches: one entry each.
        let mut seen: HashMap<Vec<usize>, u32> = HashMap::new();
        let set = PatternSet::new(
            &refs,
            |p| match slots.get(p) {
                Some(&(m, Kind::Leading)) => 1 << m,
                _ => 0,
            },
            |ids| {
                if let Some(&payload) = seen.get(ids) {
                    return Ok(payload);
                }
                hit_sets.push(hit_set(&slots, ids));
                let payload = u32::try_from(hit_sets.len())
                    .map_err(|_| MetadataError("too many hit sets".into()))?;
                seen.insert(ids.to_vec(), payload);
                Ok(payload)
            },
        )
        .map_err(|e| MetadataError(format!("calling code {code}: {}", e.0)))?;
        code_index[code as usize] = code_idx as u16 + 1;
        let text = format!("+{code}");
        let mut e164_prefix = [0u8; 4];
        e164_prefix[..text.len()].copy_from_slice(text.as_bytes());
        codes.push(CodePlan {
            code,
            e164_prefix,
            e164_prefix_len: text.len() as u8,
            members,
            set,
            hit_sets,
        });
    }
    let longest_emergency = short
        .iter()
        .filter_map(|t| t.desc("emergency")?.national_lengths.max())
        .fold(3, usize::max);
    Ok(Tables {
        regions,
        codes,
        code_index,
        region_index,
        longest_emergency,
    })
}

/// What the whole-number matches `ids` of a calling code's patterns mean (see [`HitSet`]).
fn hit_set(slots: &[(u8, Kind)], ids: &[usize]) -> HitSet {
    let mut leading = 0u32;
    let mut members: Vec<(u8, u16)> = Vec::new();
    for &(m, kind) in ids.iter().filter_map(|&p| slots.get(p)) {
        match kind {
            Kind::Leading => leading |= 1 << m,
            _ => match members.iter_mut().find(|(mm, _)| *mm == m) {
                Some((_, bits)) => *bits |= kind.bit(),
                None => members.push((m, kind.bit())),
            },
        }
    }
    HitSet {
        leading,
        members: members.into_boxed_slice(),
    }
}

/// The general description's possible lengths. libphonenumber's build tools compute them as
/// the union over the number types (the XML's `generalDesc` carries none); local-only lengths
/// likewise, minus those also possible nationally.
fn general_lengths(t: &Territory) -> (Lengths, Lengths) {
    let mut national = Lengths::default();
    let mut local = Lengths::default();
    for (name, d) in &t.descs {
        if name == "noInternationalDialling" {
            continue;
        }
        national = national.union(d.national_lengths);
        local = local.union(d.local_only_lengths);
    }
    (national, Lengths(local.0 & !national.0))
}

fn national_prefix(t: &Territory) -> Result<Option<NationalPrefix>, MetadataError> {
    let Some(pattern) = t.national_prefix_for_parsing.as_deref() else {
        return Ok(None);
    };
    if pattern.is_empty() {
        return Ok(None);
    }
    let prefix = Prefix::new(pattern)?;
    let transform = match t.national_prefix_transform_rule.as_deref() {
        Some(rule) if !rule.is_empty() => {
            let regex = meta::Regex::builder()
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .build(pattern)
                .map_err(|e| MetadataError(format!("{}: nationalPrefixForParsing: {e}", t.id)))?;
            Some(Transform {
                regex,
                id: NEXT_TRANSFORM_ID.fetch_add(1, Ordering::Relaxed),
                parts: parse_transform(rule).ok_or_else(|| {
                    MetadataError(format!(
                        "{}: bad nationalPrefixTransformRule {rule:?}",
                        t.id
                    ))
                })?,
            })
        }
        _ => None,
    };
    Ok(Some(NationalPrefix { prefix, transform }))
}

/// `0549$1` → [Literal("0549"), Group(1)].
pub(crate) fn parse_transform(rule: &str) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut lit = Vec::new();
    let mut bytes = rule.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b == b'$' {
            let g = bytes.next().filter(u8::is_ascii_digit)?;
            if !lit.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            parts.push(Part::Group((g - b'0') as usize));
        } else if b.is_ascii_digit() {
            lit.push(b);
        } else {
            return None;
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Literal(lit));
    }
    Some(parts)
}

fn short_plan(t: &Territory) -> Result<ShortPlan, MetadataError> {
    let mut patterns = Vec::new();
    let mut slots = Vec::new();
    for (name, kind) in [
        ("generalDesc", ShortKind::General),
        ("shortCode", ShortKind::ShortCode),
        ("emergency", ShortKind::Emergency),
    ] {
        if let Some(p) = t.desc(name).and_then(|d| d.pattern.as_deref()) {
            patterns.push(p);
            slots.push(kind);
        }
    }
    // Short numbers match whole strings only.
    let kinds = |ids: &[usize]| {
        let bits = ids
            .iter()
            .filter_map(|&p| slots.get(p))
            .fold(0, |m, k: &ShortKind| m | k.bit());
        Ok(bits)
    };
    let set = PatternSet::new(&patterns, |_| 0, kinds)
        .map_err(|e| MetadataError(format!("short numbers of {}: {}", t.id, e.0)))?;
    let lengths_of = |name: &str| t.desc(name).map(|d: &Desc| d.national_lengths);
    Ok(ShortPlan {
        set,
        general_lengths: general_lengths(t).0,
        short_code_lengths: lengths_of("shortCode").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_rules() {
        assert_eq!(
            parse_transform("0549$1"),
            Some(vec![Part::Literal(b"0549".to_vec()), Part::Group(1)])
        );
        assert_eq!(parse_transform("$2"), Some(vec![Part::Group(2)]));
        assert_eq!(parse_transform("$x"), None);
        assert_eq!(parse_transform("a$1"), None);
    }

    #[test]
    fn region_slots() {
        assert_eq!(region_slot(Region::new("AA").unwrap()), Some(0));
        assert_eq!(region_slot(Region::new("ZZ").unwrap()), Some(675));
        assert_eq!(region_slot(Region::NON_GEO), None);
    }
}
