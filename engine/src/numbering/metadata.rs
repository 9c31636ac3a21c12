//! Reading libphonenumber's XML metadata into plain structs.
//!
//! Only what the numbering plan needs is kept: per territory its calling code, international
//! (IDD) prefix, national prefix rules, leading digits, and per number type a
//! `nationalNumberPattern`, `possibleLengths` and `exampleNumber`. The same reader serves
//! `PhoneNumberMetadata.xml` and `ShortNumberMetadata.xml`, whose territories use other
//! element names (`shortCode`, `emergency`, ...) for their descriptions.
//!
//! Patterns are kept as written minus white space: the XML wraps long patterns over several
//! indented lines, which libphonenumber's own build tools strip the same way.

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::MetadataError;

/// `PhoneNumberMetadata.xml` (libphonenumber v9.0.35, Apache-2.0; see `engine/data/libphonenumber`).
pub const PHONE_NUMBER_METADATA: &str =
    include_str!("../../data/libphonenumber/PhoneNumberMetadata.xml");
/// `ShortNumberMetadata.xml`, same release.
pub const SHORT_NUMBER_METADATA: &str =
    include_str!("../../data/libphonenumber/ShortNumberMetadata.xml");

/// The geographic regions (ISO 3166-1 alpha-2) of [`PHONE_NUMBER_METADATA`], sorted: the
/// regions whose national numbers the builtin plan can read. A usage location outside this set
/// would make every national number of its users, emergency numbers included, unreadable, so the
/// directory refuses it ([`crate::directory::Snapshot::from_files`]). Found by a scan of the
/// `<territory id="..">` tags (under a millisecond, once), not by compiling the plan.
pub fn builtin_regions() -> &'static [super::Region] {
    static REGIONS: std::sync::OnceLock<Vec<super::Region>> = std::sync::OnceLock::new();
    REGIONS.get_or_init(|| {
        const TAG: &str = "<territory id=\"";
        let mut out: Vec<super::Region> = PHONE_NUMBER_METADATA
            .match_indices(TAG)
            .filter_map(|(at, _)| {
                let rest = &PHONE_NUMBER_METADATA[at + TAG.len()..];
                let id = &rest[..rest.find('"')?];
                super::Region::new(id).filter(|r| *r != super::Region::NON_GEO)
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    })
}

/// Whether `region` is a geographic region of the builtin metadata (see [`builtin_regions`]).
pub fn is_builtin_region(region: super::Region) -> bool {
    builtin_regions().binary_search(&region).is_ok()
}

/// A set of lengths (in digits) of national significant numbers, as a bit mask: bit `n` set
/// means length `n` is possible. libphonenumber numbers are at most 17 digits long.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lengths(pub u32);

impl Lengths {
    /// Whether `len` digits is a possible length.
    pub fn contains(&self, len: usize) -> bool {
        len < 32 && self.0 & (1 << len) != 0
    }

    /// Whether no length is possible (`possibleLengths` `-1`, or none given).
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The shortest length in the set, if any.
    pub fn min(&self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }

    /// The longest length in the set, if any.
    pub fn max(&self) -> Option<usize> {
        (self.0 != 0).then(|| 31 - self.0.leading_zeros() as usize)
    }

    /// Every length of either set.
    pub fn union(self, other: Lengths) -> Lengths {
        Lengths(self.0 | other.0)
    }

    /// Parses libphonenumber's `possibleLengths` syntax: `"9"`, `"9,10"`, `"[8-10]"`,
    /// `"[4-6],8"`. `"-1"` means "no numbers of this type" and gives the empty set.
    pub fn parse(text: &str) -> Option<Lengths> {
        let mut mask = 0u32;
        for item in text.split(',').map(str::trim) {
            if item == "-1" {
                continue;
            }
            let (lo, hi) = match item.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some(range) => {
                    let (a, b) = range.split_once('-')?;
                    (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)
                }
                None => {
                    let n = item.parse::<u32>().ok()?;
                    (n, n)
                }
            };
            if lo > hi || hi >= 32 {
                return None;
            }
            for n in lo..=hi {
                mask |= 1 << n;
            }
        }
        Some(Lengths(mask))
    }
}

/// One number-type description (`<fixedLine>`, `<emergency>`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// The `nationalNumberPattern`, white space removed; `None` when the type has no numbers.
    pub pattern: Option<String>,
    /// `possibleLengths national=`.
    pub national_lengths: Lengths,
    /// `possibleLengths localOnly=`: lengths dialable only within an area (no area code).
    pub local_only_lengths: Lengths,
    /// `exampleNumber`: a number of this type (the oracle and tests classify them).
    pub example: Option<String>,
}

/// One `<territory>`.
#[derive(Clone, Debug, Default)]
pub struct Territory {
    /// ISO region code, or `001` for non-geographic entities.
    pub id: String,
    /// `countryCode`: the country calling code (44).
    pub country_code: u16,
    /// `internationalPrefix`: a pattern for the IDD prefix dialed before a foreign number
    /// (`00`, `011`).
    pub international_prefix: Option<String>,
    /// `nationalPrefix`: the trunk prefix of national numbers (`0` in GB).
    pub national_prefix: Option<String>,
    /// `nationalPrefixForParsing`: a pattern for the prefix to strip when it differs from
    /// `nationalPrefix` (carrier codes, ...).
    pub national_prefix_for_parsing: Option<String>,
    /// `nationalPrefixTransformRule`: what the stripped number becomes (`$1…` groups).
    pub national_prefix_transform_rule: Option<String>,
    /// `mainCountryForCode`: the region that answers for a calling code shared by several
    /// (US for +1).
    pub main_country_for_code: bool,
    /// Territory-level `leadingDigits`: identifies this region among those sharing a code.
    pub leading_digits: Option<String>,
    /// Descriptions by element name (`generalDesc`, `fixedLine`, `emergency`, ...).
    pub descs: BTreeMap<String, Desc>,
    /// Line of the `<territory>` tag in its file, for error messages.
    pub line: usize,
}

impl Territory {
    /// The description of an element name (`"fixedLine"`), if the territory has one.
    pub fn desc(&self, name: &str) -> Option<&Desc> {
        self.descs.get(name)
    }
}

/// The element names of number-type descriptions in either file.
const DESC_ELEMENTS: &[&str] = &[
    "generalDesc",
    "fixedLine",
    "mobile",
    "tollFree",
    "premiumRate",
    "sharedCost",
    "personalNumber",
    "voip",
    "pager",
    "uan",
    "voicemail",
    "noInternationalDialling",
    "shortCode",
    "emergency",
    "standardRate",
    "carrierSpecific",
    "smsServices",
];

/// Where the reader is inside a territory.
enum Slot {
    None,
    Pattern,
    Example,
}

/// Parses a metadata file. `file` names it in errors.
pub fn parse(file: &str, xml: &str) -> Result<Vec<Territory>, MetadataError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    // Line numbers are counted incrementally: only territories and errors need one.
    let mut lines = (0usize, 1usize);
    let mut line_of = |pos: u64| {
        let pos = (pos as usize).clamp(lines.0, xml.len());
        lines.1 += xml.as_bytes()[lines.0..pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        lines.0 = pos;
        lines.1
    };
    let err = |line: usize, what: String| MetadataError(format!("{file}:{line}: {what}"));

    let mut out = Vec::new();
    let mut territory: Option<Territory> = None;
    let mut desc: Option<(String, Desc)> = None;
    let mut slot = Slot::None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| err(line_of(reader.buffer_position()), format!("XML error: {e}")))?;
        // The end of the event just read: the line of a (one-line) tag.
        let pos = reader.buffer_position();
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "territory" {
                    let line = line_of(pos);
                    let mut t = read_territory(&e).map_err(|w| err(line, w))?;
                    t.line = line;
                    territory = Some(t);
                } else if territory.is_some() && DESC_ELEMENTS.contains(&name.as_str()) {
                    desc = Some((name, Desc::default()));
                } else if let Some((_, d)) = desc.as_mut() {
                    match name.as_str() {
                        "nationalNumberPattern" => slot = Slot::Pattern,
                        "exampleNumber" => slot = Slot::Example,
                        "possibleLengths" => {
                            read_lengths(&e, d).map_err(|w| err(line_of(pos), w))?
                        }
                        _ => {}
                    }
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| err(line_of(pos), format!("bad text: {e}")))?;
                if let Some((_, d)) = desc.as_mut() {
                    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                    match slot {
                        Slot::Pattern => d.pattern = Some(clean),
                        Slot::Example => d.example = Some(clean),
                        Slot::None => {}
                    }
                }
            }
            Event::End(e) => {
                let name = e.name();
                let name = name.as_ref();
                if name == b"nationalNumberPattern" || name == b"exampleNumber" {
                    slot = Slot::None;
                } else if desc.as_ref().is_some_and(|(n, _)| n.as_bytes() == name) {
                    if let (Some(t), Some((n, d))) = (territory.as_mut(), desc.take()) {
                        t.descs.insert(n, d);
                    }
                } else if name == b"territory" {
                    out.extend(territory.take());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(MetadataError(format!("{file}: no <territory> found")));
    }
    Ok(out)
}

fn read_territory(e: &BytesStart<'_>) -> Result<Territory, String> {
    let mut t = Territory::default();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad attribute value: {e}"))?;
        let clean: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        match attr.key.as_ref() {
            b"id" => t.id = clean,
            b"countryCode" => {
                t.country_code = clean
                    .parse()
                    .map_err(|_| format!("countryCode {clean:?} is not a number"))?
            }
            b"internationalPrefix" => t.international_prefix = Some(clean),
            b"nationalPrefix" => t.national_prefix = Some(clean),
            b"nationalPrefixForParsing" => t.national_prefix_for_parsing = Some(clean),
            b"nationalPrefixTransformRule" => t.national_prefix_transform_rule = Some(clean),
            b"mainCountryForCode" => t.main_country_for_code = clean == "true",
            b"leadingDigits" => t.leading_digits = Some(clean),
            _ => {}
        }
    }
    if t.id.is_empty() {
        return Err("territory without id".into());
    }
    // As libphonenumber's BuildMetadataFromXml: the national prefix is also what is stripped
    // when parsing, unless nationalPrefixForParsing says otherwise.
    if t.national_prefix_for_parsing.is_none() {
        t.national_prefix_for_parsing = t.national_prefix.clone();
    }
    Ok(t)
}

fn read_lengths(e: &BytesStart<'_>, d: &mut Desc) -> Result<(), String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad attribute value: {e}"))?;
        let parsed =
            Lengths::parse(&value).ok_or_else(|| format!("bad possibleLengths {value:?}"))?;
        match attr.key.as_ref() {
            b"national" => d.national_lengths = parsed,
            b"localOnly" => d.local_only_lengths = parsed,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_syntax() {
        assert_eq!(Lengths::parse("9"), Some(Lengths(1 << 9)));
        assert_eq!(
            Lengths::parse("[8-10]"),
            Some(Lengths((1 << 8) | (1 << 9) | (1 << 10)))
        );
        assert_eq!(
            Lengths::parse("[4-5],8"),
            Some(Lengths((1 << 4) | (1 << 5) | (1 << 8)))
        );
        assert_eq!(Lengths::parse("-1"), Some(Lengths(0)));
        assert_eq!(Lengths::parse("x"), None);
        assert_eq!(Lengths::parse("[9-8]"), None);
        assert_eq!(Lengths::parse("40"), None);
        let l = Lengths::parse("[4-6],8").unwrap();
        assert_eq!((l.min(), l.max()), (Some(4), Some(8)));
    }

    #[test]
    fn vendored_metadata_parses() {
        let phone = parse("PhoneNumberMetadata.xml", PHONE_NUMBER_METADATA).unwrap();
        assert!(phone.len() > 240, "{} territories", phone.len());
        let gb = phone.iter().find(|t| t.id == "GB").unwrap();
        assert_eq!(gb.country_code, 44);
        assert_eq!(gb.national_prefix.as_deref(), Some("0"));
        assert!(gb.main_country_for_code);
        let fixed = gb.desc("fixedLine").unwrap();
        assert!(fixed.pattern.as_deref().is_some_and(|p| !p.contains(' ')));
        assert!(fixed.example.is_some());
        let short = parse("ShortNumberMetadata.xml", SHORT_NUMBER_METADATA).unwrap();
        let us = short.iter().find(|t| t.id == "US").unwrap();
        assert!(us.desc("emergency").is_some());
    }

    #[test]
    fn bad_xml_names_file_and_line() {
        let e = parse("x.xml", "<a>\n<territory countryCode=\"zz\" id=\"X\"/>").unwrap_err();
        assert!(
            e.to_string().starts_with("numbering metadata: x.xml:2:"),
            "{e}"
        );
    }

    #[test]
    fn builtin_regions_are_the_geographic_territories() {
        use super::super::Region;
        let r = builtin_regions();
        assert_eq!(r.len(), 245);
        for ok in ["GB", "US", "FR", "PR", "gb"] {
            assert!(is_builtin_region(Region::new(ok).unwrap()), "{ok}");
        }
        // UK is not ISO 3166 (GB is); XX is unassigned; 001 is not a place.
        for bad in ["UK", "XX", "001", "AQ"] {
            assert!(!is_builtin_region(Region::new(bad).unwrap()), "{bad}");
        }
    }
}
