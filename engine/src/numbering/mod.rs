//! The numbering plan: dialed strings to E.164, region and number type.
//!
//! Built once from libphonenumber's `PhoneNumberMetadata.xml` and `ShortNumberMetadata.xml`
//! (vendored in `engine/data/libphonenumber`, Apache-2.0), then read-only: `classify` takes
//! `&self` and writes nothing shared, so any number of threads classify in parallel.
//!
//! The parsing rules follow libphonenumber's `PhoneNumberUtil.parse` (Java), step for step:
//! `+` or the caller region's IDD prefix (a `0` right after the IDD means it was not one), the
//! caller's own calling code dialed without `+`, national prefix stripping with
//! `nationalPrefixForParsing` / `nationalPrefixTransformRule` (kept only when the result still
//! has a possible length), then `getRegionCodeForNumber` (`leadingDigits`, else the first
//! region whose type patterns match) and `getNumberType`. Short numbers follow
//! `ShortNumberInfo`: emergency numbers match the region's `<emergency>` pattern exactly, other
//! short numbers must match both the general and `<shortCode>` descriptions.
//!
//! Numbers whose type is unknown are refused, as libphonenumber's `isValidNumber` would:
//! a length below the region's shortest (or a local-only length, which lacks its area code) is
//! [`NumberError::Incomplete`]; anything else is [`NumberError::Invalid`].

mod automaton;
mod compile;
mod dialstring;
pub mod metadata;
mod types;

use std::cell::RefCell;

use crate::fxhash::FxMap;
use compile::{
    CodePlan, Kind, NationalPrefix, Part, RegionPlan, ShortKind, Tables, FIXED, MOBILE, TYPE_DESCS,
};
use dialstring::{Dialed, Digits};
pub use types::{Destination, NumberError, NumberType, Region, Why, MAX_E164_LEN};

/// The metadata could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("numbering metadata: {0}")]
pub struct MetadataError(pub String);

/// A national number: part of the dialed digits, or rewritten by a transform rule.
enum Nsn<'a> {
    Slice(&'a [u8]),
    Owned(Digits),
}

impl Nsn<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Nsn::Slice(s) => s,
            Nsn::Owned(d) => d.as_bytes(),
        }
    }
}

/// libphonenumber's `MIN_LENGTH_FOR_NSN` and `MAX_LENGTH_FOR_NSN`.
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;

/// The compiled numbering plan: every region's patterns as automata, read-only once built.
///
/// Compiling it is the costly part (build it once at start-up, share it in an `Arc`); a
/// [`NumberingPlan::classify`] is then a few automaton walks and no allocation.
pub struct NumberingPlan {
    t: Tables,
}

/// Outcome of libphonenumber's `testNumberLength` against a general description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LengthCheck {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    InvalidLength,
}

/// Which patterns of a calling code matched one national number, per member region:
/// `full` holds, for each member with a whole-number match, a [`Kind::bit`] for each of its
/// patterns that matched (lengths not yet checked); `leading` a bit per member whose
/// `leadingDigits` matched.
struct Hits<'p> {
    full: &'p [(u8, u16)],
    leading: u32,
    len: usize,
}

impl Hits<'_> {
    /// The [`Kind::bit`]s of member `m`'s patterns that matched the whole number.
    #[inline]
    fn bits(&self, m: usize) -> u16 {
        self.full
            .iter()
            .find(|&&(member, _)| member as usize == m)
            .map_or(0, |&(_, bits)| bits)
    }

    /// Whether member `m`'s general pattern matched (no length check).
    fn general(&self, m: usize) -> bool {
        self.bits(m) & Kind::GENERAL_BIT != 0
    }
}

impl NumberingPlan {
    /// The plan compiled from the vendored metadata.
    pub fn builtin() -> Result<NumberingPlan, MetadataError> {
        Self::from_xml(
            metadata::PHONE_NUMBER_METADATA,
            metadata::SHORT_NUMBER_METADATA,
        )
    }

    /// Compiles a plan from the text of `PhoneNumberMetadata.xml` and `ShortNumberMetadata.xml`.
    pub fn from_xml(phone_xml: &str, short_xml: &str) -> Result<NumberingPlan, MetadataError> {
        let phone = metadata::parse("PhoneNumberMetadata.xml", phone_xml)?;
        let short = metadata::parse("ShortNumberMetadata.xml", short_xml)?;
        Ok(NumberingPlan {
            t: compile::compile(&phone, &short)?,
        })
    }

    /// Whether `region` is in the metadata (so national numbers can be read for its callers).
    pub fn has_region(&self, region: Region) -> bool {
        self.region(region).is_some()
    }

    /// Digits of the longest emergency number of any region: a dialed string with more digits
    /// is no emergency number anywhere (see [`crate::Engine::may_shed`]).
    pub fn longest_emergency_number(&self) -> usize {
        self.t.longest_emergency
    }

    /// The country calling code of a region (`GB` → 44).
    pub fn calling_code(&self, region: Region) -> Option<u16> {
        self.region(region).map(|r| self.t.codes[r.code_idx].code)
    }

    /// Heap memory held by the compiled automata, in bytes.
    pub fn memory_usage(&self) -> usize {
        let codes: usize = self.t.codes.iter().map(|c| c.set.memory_usage()).sum();
        let regions: usize = self
            .t
            .regions
            .iter()
            .map(|r| {
                r.idd.as_ref().map_or(0, |p| p.memory_usage())
                    + r.national_prefix
                        .as_ref()
                        .map_or(0, |n| n.prefix.memory_usage())
                    + r.short.as_ref().map_or(0, |s| s.set.memory_usage())
            })
            .sum();
        codes + regions
    }

    /// Resolves `dialed` as dialed by a caller whose license location is `caller_region`.
    ///
    /// Emergency numbers of the caller's region, and 112 and 911 everywhere, come back as
    /// [`NumberType::Emergency`] whatever else the digits could mean (DESIGN §4 rule 1).
    /// Accepts what a Request-URI user part carries: `+` or the region's IDD prefix, visual
    /// separators, and RFC 3966 `;phone-context=`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tollgate_engine::numbering::{NumberType, NumberingPlan, Region};
    ///
    /// let plan = NumberingPlan::builtin()?;
    /// let gb = Region::new("GB").unwrap();
    ///
    /// // A national number dialed in GB: trunk prefix stripped, E.164 and type found.
    /// let d = plan.classify("020 7946 0000", gb)?;
    /// assert_eq!(d.e164(), "+442079460000");
    /// assert_eq!((d.region, d.number_type), (gb, NumberType::FixedLine));
    ///
    /// // The IDD prefix of the caller's region works like `+`.
    /// assert_eq!(plan.classify("0033 1 23 45 67 89", gb)?.region, Region::new("FR").unwrap());
    ///
    /// // 999 is an emergency number for a caller licensed in GB (a short number: no `+`).
    /// let sos = plan.classify("999", gb)?;
    /// assert_eq!((sos.number_type, sos.e164()), (NumberType::Emergency, "999"));
    ///
    /// // A number cut off mid-dial is incomplete (SIP 484), not invalid (404).
    /// assert!(plan.classify("020 79", gb).unwrap_err().is_incomplete());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classify(
        &self,
        dialed: &str,
        caller_region: Region,
    ) -> Result<Destination, NumberError> {
        let d = Dialed::parse(dialed)?;
        let caller = self.region(caller_region);
        if d.plus {
            return self.international(d.digits.as_bytes());
        }
        let digits = d.digits.as_bytes();
        if let Some(ctx) = d.context {
            // RFC 3966 §5.1.5: a local number in a global context. A short number is dialed as
            // is within the context's country (the caller's, if it shares the code).
            let ctx_region = self
                .code_plan_for(ctx.as_bytes())
                .map(|(code, _)| match caller {
                    Some(c) if c.code_idx == code => c,
                    _ => &self.t.regions[self.t.codes[code].members[0].region_idx],
                });
            if let Some(dest) = ctx_region.and_then(|r| self.short_number(digits, r)) {
                return Ok(dest);
            }
            let mut full = ctx;
            full.push_slice(digits)?;
            return self.international(full.as_bytes());
        }
        let Some(caller) = caller else {
            return match is_universal_emergency(digits) {
                true => Ok(short_destination(
                    digits,
                    0,
                    caller_region,
                    NumberType::Emergency,
                )),
                false => Err(NumberError::Invalid(Why::UnknownCallerRegion)),
            };
        };
        if let Some(dest) = self.emergency(digits, caller) {
            return Ok(dest);
        }
        if let Some(n) = caller.idd.as_ref().and_then(|p| p.match_len(digits)) {
            // parsePrefixAsIdd: a 0 right after the prefix means it was not an IDD prefix
            // (no calling code starts with 0).
            if n > 0 && digits.get(n) != Some(&b'0') {
                return self.international(&digits[n..]);
            }
        }
        let national = self.national(digits, caller);
        match national {
            Err(e) => match self.short_code(digits, caller) {
                Some(dest) => Ok(dest),
                None => Err(e),
            },
            ok => ok,
        }
    }

    fn region(&self, region: Region) -> Option<&RegionPlan> {
        let slot = compile::region_slot(region)?;
        match self.t.region_index[slot] {
            0 => None,
            i => Some(&self.t.regions[i as usize - 1]),
        }
    }

    /// The calling code at the start of `digits` (libphonenumber `extractCountryCode`):
    /// (index into codes, its length in digits).
    fn code_plan_for(&self, digits: &[u8]) -> Option<(usize, usize)> {
        if digits.first() == Some(&b'0') {
            return None;
        }
        let mut value = 0usize;
        for (i, &d) in digits.iter().take(3).enumerate() {
            value = value * 10 + (d - b'0') as usize;
            if let idx @ 1.. = self.t.code_index[value] {
                return Some((idx as usize - 1, i + 1));
            }
        }
        None
    }

    /// Digits after `+` or an IDD prefix.
    fn international(&self, digits: &[u8]) -> Result<Destination, NumberError> {
        if digits.len() <= MIN_NSN {
            // TOO_SHORT_AFTER_IDD: the caller has not finished dialing the calling code.
            return Err(NumberError::Incomplete(Why::NoCallingCode));
        }
        let (code_idx, cc_len) = self
            .code_plan_for(digits)
            .ok_or(NumberError::Invalid(Why::UnknownCallingCode))?;
        let code = &self.t.codes[code_idx];
        let main = &self.t.regions[code.members[0].region_idx];
        self.finish(code, &digits[cc_len..], main, None)
    }

    /// A national-format number dialed by `caller` (no `+`, no IDD).
    fn national(&self, digits: &[u8], caller: &RegionPlan) -> Result<Destination, NumberError> {
        let code = &self.t.codes[caller.code_idx];
        // maybeExtractCountryCode, FROM_DEFAULT_COUNTRY: the caller's own calling code dialed
        // without `+` (e.g. `44 20 7946 0000` in GB, `1 212 555 0100` in the US).
        let cc = code.code;
        let cc_len = if cc >= 100 {
            3
        } else if cc >= 10 {
            2
        } else {
            1
        };
        if digits.len() > cc_len && leading_value(digits, cc_len) == Some(cc as usize) {
            let rest = &digits[cc_len..];
            let (stripped, _) = self.strip_national_prefix(rest, caller);
            // Both scans are handed on, so that `finish` need not walk the same digits again.
            let whole = self.scan(code, digits);
            let without_cc = match whole.general(caller.member) {
                true => None,
                false => Some(self.scan(code, stripped.as_bytes())),
            };
            let general_without_cc = without_cc
                .as_ref()
                .is_some_and(|h| h.general(caller.member));
            if general_without_cc || self.test_length(digits.len(), caller) == LengthCheck::TooLong
            {
                let main = &self.t.regions[code.members[0].region_idx];
                return self.finish(code, stripped.as_bytes(), main, without_cc);
            }
            return self.finish(code, digits, caller, Some(whole));
        }
        self.finish(code, digits, caller, None)
    }

    /// The end of `parseHelper` and validation: strip the national prefix of `strip_region`
    /// when that leaves a possible length, then find region and type.
    ///
    /// `known`: the scan of `national` itself, if the caller already has it.
    fn finish(
        &self,
        code: &CodePlan,
        national: &[u8],
        strip_region: &RegionPlan,
        known: Option<Hits<'_>>,
    ) -> Result<Destination, NumberError> {
        if national.len() < MIN_NSN {
            return Err(NumberError::Incomplete(Why::TooShort));
        }
        let (stripped, stripped_hits) = self.strip_national_prefix(national, strip_region);
        let (nsn, hits) = match self.test_length(stripped.as_bytes().len(), strip_region) {
            LengthCheck::TooShort | LengthCheck::LocalOnly | LengthCheck::InvalidLength => {
                (national, None)
            }
            _ => (stripped.as_bytes(), stripped_hits),
        };
        if nsn.len() < MIN_NSN {
            return Err(NumberError::Incomplete(Why::TooShort));
        }
        if nsn.len() > MAX_NSN {
            return Err(NumberError::Invalid(Why::TooLong));
        }
        let hits = match (hits, known) {
            (Some(h), _) => h,
            (None, Some(h)) if std::ptr::eq(nsn, national) => h,
            _ => self.scan(code, nsn),
        };
        let member = self.member_for(code, &hits);
        if let Some(m) = member {
            if let Some(t) = number_type(code, m, &hits) {
                let region = self.t.regions[code.members[m].region_idx].region;
                return Ok(e164_destination(code, nsn, region, t));
            }
        }
        let judge = &self.t.regions[code.members[member.unwrap_or(0)].region_idx];
        Err(match self.test_length(nsn.len(), judge) {
            LengthCheck::TooShort | LengthCheck::LocalOnly => {
                NumberError::Incomplete(Why::TooShort)
            }
            LengthCheck::TooLong => NumberError::Invalid(Why::TooLong),
            LengthCheck::Possible | LengthCheck::InvalidLength => {
                NumberError::Invalid(Why::NoMatch)
            }
        })
    }

    #[inline]
    fn scan<'p>(&self, code: &'p CodePlan, nsn: &[u8]) -> Hits<'p> {
        let walk = code.set.scan(nsn);
        let set = walk
            .full
            .checked_sub(1)
            .and_then(|i| code.hit_sets.get(i as usize));
        Hits {
            full: set.map_or(&[], |s| &s.members),
            leading: walk.prefix | set.map_or(0, |s| s.leading),
            len: nsn.len(),
        }
    }

    /// `getRegionCodeForNumberFromRegionList`.
    fn member_for(&self, code: &CodePlan, hits: &Hits) -> Option<usize> {
        if code.members.len() == 1 {
            return Some(0);
        }
        code.members.iter().enumerate().find_map(|(m, member)| {
            let found = if member.has_leading_digits {
                hits.leading & (1 << m) != 0
            } else {
                number_type(code, m, hits).is_some()
            };
            found.then_some(m)
        })
    }

    /// `matchNationalNumber(number, generalDesc)`: the pattern alone, no length check.
    fn general_matches(&self, number: &[u8], region: &RegionPlan) -> bool {
        let code = &self.t.codes[region.code_idx];
        self.scan(code, number).general(region.member)
    }

    /// `testNumberLength` against the region's general description.
    fn test_length(&self, len: usize, region: &RegionPlan) -> LengthCheck {
        if region.local_only.contains(len) {
            return LengthCheck::LocalOnly;
        }
        match (region.lengths.min(), region.lengths.max()) {
            (Some(min), _) if len < min => LengthCheck::TooShort,
            (_, Some(max)) if len > max => LengthCheck::TooLong,
            _ if region.lengths.contains(len) => LengthCheck::Possible,
            _ => LengthCheck::InvalidLength,
        }
    }

    /// `maybeStripNationalPrefixAndCarrierCode`: the number with the national prefix removed
    /// (or transformed), or unchanged when there is none or removing it would turn a number
    /// matching the general pattern into one that does not. When the candidate was scanned,
    /// its [`Hits`] come along so that [`Self::finish`] need not scan it again.
    fn strip_national_prefix<'a, 'p>(
        &'p self,
        number: &'a [u8],
        region: &RegionPlan,
    ) -> (Nsn<'a>, Option<Hits<'p>>) {
        let Some(np) = region.national_prefix.as_ref() else {
            return (Nsn::Slice(number), None);
        };
        let Some(end) = np.prefix.match_len(number).filter(|_| !number.is_empty()) else {
            return (Nsn::Slice(number), None);
        };
        let candidate = match transformed(np, number) {
            Some(Some(t)) => Nsn::Owned(t),
            // No transform rule, or its last group did not take part: just remove the prefix.
            _ => Nsn::Slice(&number[end..]),
        };
        let code = &self.t.codes[region.code_idx];
        let hits = self.scan(code, candidate.as_bytes());
        // Java checks whether the original was viable first; it only matters when the
        // candidate is not, so the original is scanned only then.
        if !hits.general(region.member) && self.general_matches(number, region) {
            return (Nsn::Slice(number), None);
        }
        (candidate, Some(hits))
    }

    /// Emergency numbers: the caller region's `<emergency>` pattern, and 112/911 everywhere.
    fn emergency(&self, digits: &[u8], region: &RegionPlan) -> Option<Destination> {
        let code = self.t.codes[region.code_idx].code;
        let found = is_universal_emergency(digits)
            || region
                .short
                .as_ref()
                .is_some_and(|s| s.set.scan(digits).full & ShortKind::Emergency.bit() != 0);
        found.then(|| short_destination(digits, code, region.region, NumberType::Emergency))
    }

    /// Other short numbers (`isValidShortNumberForRegion`): general and `<shortCode>` both
    /// match, with possible lengths.
    fn short_code(&self, digits: &[u8], region: &RegionPlan) -> Option<Destination> {
        let s = region.short.as_ref()?;
        let full = s.set.scan(digits).full;
        let general = full & ShortKind::General.bit() != 0;
        let short = full & ShortKind::ShortCode.bit() != 0;
        let len = digits.len();
        let ok = general
            && short
            && (s.general_lengths.is_empty() || s.general_lengths.contains(len))
            && (s.short_code_lengths.is_empty() || s.short_code_lengths.contains(len));
        let code = self.t.codes[region.code_idx].code;
        ok.then(|| short_destination(digits, code, region.region, NumberType::ShortCode))
    }

    fn short_number(&self, digits: &[u8], region: &RegionPlan) -> Option<Destination> {
        self.emergency(digits, region)
            .or_else(|| self.short_code(digits, region))
    }
}

fn is_universal_emergency(digits: &[u8]) -> bool {
    digits == b"112" || digits == b"911"
}

/// The numeric value of the first `n` digits.
fn leading_value(digits: &[u8], n: usize) -> Option<usize> {
    digits
        .get(..n)
        .map(|d| d.iter().fold(0usize, |v, &b| v * 10 + (b - b'0') as usize))
}

/// `getNumberTypeHelper` for member `m`; `None` is libphonenumber's `UNKNOWN`.
fn number_type(code: &CodePlan, m: usize, hits: &Hits) -> Option<NumberType> {
    let member = &code.members[m];
    let bits = hits.bits(m);
    let matches = |kind: Kind, lengths_idx: usize| {
        let lengths = member.lengths[lengths_idx];
        bits & kind.bit() != 0 && (lengths.is_empty() || lengths.contains(hits.len))
    };
    if !matches(Kind::General, 0) {
        return None;
    }
    for (i, &(_, ty)) in TYPE_DESCS.iter().enumerate().take(FIXED as usize) {
        if matches(Kind::Type(i as u8), 1 + i) {
            return Some(ty);
        }
    }
    let mobile = || matches(Kind::Type(MOBILE), 1 + MOBILE as usize);
    if matches(Kind::Type(FIXED), 1 + FIXED as usize) {
        if member.same_mobile_and_fixed || mobile() {
            return Some(NumberType::FixedLineOrMobile);
        }
        return Some(NumberType::FixedLine);
    }
    if !member.same_mobile_and_fixed && mobile() {
        return Some(NumberType::Mobile);
    }
    None
}

fn e164_destination(code: &CodePlan, nsn: &[u8], region: Region, t: NumberType) -> Destination {
    let mut buf = [0u8; MAX_E164_LEN];
    // `+` and the calling code, written at build time; nsn is at most MAX_NSN (17) digits, so
    // 1 + 3 + 17 fits in MAX_E164_LEN.
    buf[..4].copy_from_slice(&code.e164_prefix);
    let at = code.e164_prefix_len as usize;
    let len = (at + nsn.len()).min(MAX_E164_LEN);
    buf[at..len].copy_from_slice(&nsn[..len - at]);
    Destination::from_ascii(buf, len, code.code, region, t)
}

fn short_destination(digits: &[u8], code: u16, region: Region, t: NumberType) -> Destination {
    let mut buf = [0u8; MAX_E164_LEN];
    let len = digits.len().min(MAX_E164_LEN);
    buf[..len].copy_from_slice(&digits[..len]);
    Destination::from_ascii(buf, len, code, region, t)
}

thread_local! {
    /// Search caches for transform-rule regexes, per thread, keyed by `Transform::id`: each
    /// thread searches with its own cache, so no lock is shared between threads.
    static TRANSFORM_CACHES: RefCell<FxMap<usize, (regex_automata::meta::Cache, regex_automata::util::captures::Captures)>> =
        RefCell::new(FxMap::default());
}

/// Applies a national prefix transform rule. `None`: no rule; `Some(None)`: the rule's last
/// group did not take part in the match (libphonenumber then just strips the prefix).
fn transformed(np: &NationalPrefix, number: &[u8]) -> Option<Option<Digits>> {
    let t = np.transform.as_ref()?;
    TRANSFORM_CACHES
        .with(|caches| {
            let mut caches = caches.borrow_mut();
            let (cache, caps) = caches
                .entry(t.id)
                .or_insert_with(|| (t.regex.create_cache(), t.regex.create_captures()));
            let input = regex_automata::Input::new(number).anchored(regex_automata::Anchored::Yes);
            t.regex.search_captures_with(cache, &input, caps);
            let end = caps.get_match()?.end();
            let last = caps.group_len().saturating_sub(1);
            caps.get_group(last).filter(|_| last > 0)?;
            let mut out = Digits::new();
            for part in &t.parts {
                let ok = match part {
                    Part::Literal(lit) => out.push_slice(lit),
                    Part::Group(g) => match caps.get_group(*g) {
                        Some(span) => out.push_slice(&number[span.range()]),
                        None => Ok(()),
                    },
                };
                ok.ok()?;
            }
            out.push_slice(&number[end..]).ok()?;
            Some(out)
        })
        .map(Some)
        .or(Some(None))
}

#[cfg(test)]
mod tests;
