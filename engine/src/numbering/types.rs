//! The vocabulary of the numbering plan: what a classified number is, and why one is refused.
//!
//! Everything here is `Copy` and heap-free so that a [`Destination`] can travel through the hot
//! path (classify → decide → 302) without an allocation.

use std::fmt;

/// Longest E.164 string we hold, `+` included. E.164 allows 15 digits; libphonenumber accepts
/// national numbers up to 17 digits, so a 3-digit calling code + 17 + `+` = 21. Round up.
pub const MAX_E164_LEN: usize = 24;

/// An ISO 3166-1 alpha-2 region code (`"GB"`), or `"001"` for non-geographic calling codes
/// (libphonenumber's convention, e.g. +800 international freephone).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Region([u8; 3]);

/// One word rather than a length and three bytes (the derived form): regions key the catalog
/// maps read on every decision. Equal regions have equal bytes, so this agrees with `Eq`.
impl std::hash::Hash for Region {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c] = self.0;
        state.write_u32(u32::from_le_bytes([a, b, c, 0]));
    }
}

impl Region {
    /// The non-geographic "region" `001` of libphonenumber.
    pub const NON_GEO: Region = Region(*b"001");

    /// Parses an upper- or lower-case alpha-2 code, or `001`. Returns `None` for anything else.
    pub fn new(code: &str) -> Option<Region> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Region([a.to_ascii_uppercase(), b.to_ascii_uppercase(), 0]))
            }
            b"001" => Some(Region::NON_GEO),
            _ => None,
        }
    }

    /// The code as text: `"GB"` or `"001"`.
    pub fn as_str(&self) -> &str {
        let len = if self.0[2] == 0 { 2 } else { 3 };
        // Only ASCII ever enters a Region (see `new`), so this cannot fail.
        std::str::from_utf8(&self.0[..len]).unwrap_or("??")
    }

    /// Lower-case form, for route templates such as `pstn-{region}.example.net`.
    pub fn to_lowercase_bytes(&self) -> [u8; 3] {
        [
            self.0[0].to_ascii_lowercase(),
            self.0[1].to_ascii_lowercase(),
            self.0[2].to_ascii_lowercase(),
        ]
    }

    /// The raw code: two upper-case letters and a 0, or `001`.
    pub(crate) fn bytes(&self) -> [u8; 3] {
        self.0
    }

    /// Whether this is the non-geographic pseudo-region `001`.
    pub fn is_non_geographic(&self) -> bool {
        *self == Region::NON_GEO
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.as_str())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Region {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The kind of number, as libphonenumber's `PhoneNumberType` plus the two short-number kinds
/// Tollgate needs. The snake-case names are pinned by DESIGN §5 (`tollgate numbers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    /// A geographic fixed line.
    FixedLine,
    /// A mobile number.
    Mobile,
    /// The region's fixed-line and mobile patterns cannot be told apart (e.g. the US).
    FixedLineOrMobile,
    /// Free to the caller (US 800, UK 0800): free when domestic in the shipped catalog
    /// (rule 8; unconfirmed in the Teams docs, calling-plan-rules §4).
    TollFree,
    /// Premium rate: barred in the shipped catalog, "Not supported at this time" (rule 6,
    /// calling-plan-rules §4).
    PremiumRate,
    /// Cost shared between caller and callee (UK 0843–0845, 0870–0872; calling-plan-rules §4).
    SharedCost,
    /// A VoIP number.
    Voip,
    /// A personal (follow-me) number (UK 070).
    PersonalNumber,
    /// A pager.
    Pager,
    /// A Universal Access Number (a company's single national number).
    Uan,
    /// A voicemail access number.
    Voicemail,
    /// An emergency number of the caller's region (ShortNumberMetadata `<emergency>`), or 112/911.
    Emergency,
    /// Any other short number of the caller's region (ShortNumberMetadata `<shortCode>`).
    ShortCode,
    /// Matches the region's general pattern but no specific type.
    Unknown,
}

impl NumberType {
    /// Every type, in a stable order (used for tables and tests).
    pub const ALL: [NumberType; 14] = [
        NumberType::FixedLine,
        NumberType::Mobile,
        NumberType::FixedLineOrMobile,
        NumberType::TollFree,
        NumberType::PremiumRate,
        NumberType::SharedCost,
        NumberType::Voip,
        NumberType::PersonalNumber,
        NumberType::Pager,
        NumberType::Uan,
        NumberType::Voicemail,
        NumberType::Emergency,
        NumberType::ShortCode,
        NumberType::Unknown,
    ];

    /// The pinned snake-case name (`"fixed_line"`, `"toll_free"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            NumberType::FixedLine => "fixed_line",
            NumberType::Mobile => "mobile",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::Voip => "voip",
            NumberType::PersonalNumber => "personal_number",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Voicemail => "voicemail",
            NumberType::Emergency => "emergency",
            NumberType::ShortCode => "short_code",
            NumberType::Unknown => "unknown",
        }
    }

    /// Parses the snake-case name back (for `catalog.toml` and `rates.csv`).
    pub fn from_name(name: &str) -> Option<NumberType> {
        NumberType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for NumberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dialed string resolved by the numbering plan. Heap-free and `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    e164: [u8; MAX_E164_LEN],
    e164_len: u8,
    /// Country calling code, e.g. 44.
    pub calling_code: u16,
    /// The region the number belongs to (for shared calling codes, resolved as libphonenumber
    /// does: leading digits first, then the number-type patterns).
    pub region: Region,
    /// What kind of number it is: decides emergency (rule 1), barring (rule 6), free (rule 8)
    /// and the credits rate.
    pub number_type: NumberType,
}

impl Destination {
    /// Builds a destination from its parts. `e164` must be `+` followed by digits, at most
    /// [`MAX_E164_LEN`] bytes; longer input is truncated (the plan never produces it).
    pub fn new(e164: &str, calling_code: u16, region: Region, number_type: NumberType) -> Self {
        let mut buf = [0u8; MAX_E164_LEN];
        let n = e164.len().min(MAX_E164_LEN);
        buf[..n].copy_from_slice(&e164.as_bytes()[..n]);
        Self::from_ascii(buf, n, calling_code, region, number_type)
    }

    /// From a buffer already holding `+` and ASCII digits (the plan's hot path).
    pub(crate) fn from_ascii(
        e164: [u8; MAX_E164_LEN],
        len: usize,
        calling_code: u16,
        region: Region,
        number_type: NumberType,
    ) -> Self {
        Destination {
            e164,
            e164_len: len.min(MAX_E164_LEN) as u8,
            calling_code,
            region,
            number_type,
        }
    }

    /// The normalized number, `+` and digits only, e.g. `"+442079460000"`; for a short number
    /// the dialed digits alone (see [`Destination::is_short_number`]).
    pub fn e164(&self) -> &str {
        let bytes = &self.e164[..self.e164_len as usize];
        // Only ASCII `+` and digits are written by the plan; `new` takes a `&str` and may cut
        // it mid-character only past MAX_E164_LEN, which the fallback covers.
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// The bytes of [`Destination::e164`], without its UTF-8 check (for prefix tests on the
    /// decision path).
    pub fn e164_bytes(&self) -> &[u8] {
        &self.e164[..self.e164_len as usize]
    }

    /// The national significant number: the E.164 digits after the calling code (for a short
    /// number, the short number itself).
    pub fn national_number(&self) -> &str {
        if self.is_short_number() {
            return self.e164();
        }
        let cc_len = match self.calling_code {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        self.e164().get(1 + cc_len..).unwrap_or("")
    }

    /// Short numbers (emergency, short codes) have no international form: they are dialed
    /// as-is in the caller's region. For them `e164()` holds the dialed digits without `+`
    /// (e.g. `"911"`), `region` is the caller's region and `calling_code` that region's code.
    pub fn is_short_number(&self) -> bool {
        matches!(
            self.number_type,
            NumberType::Emergency | NumberType::ShortCode
        )
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("e164", &self.e164())
            .field("calling_code", &self.calling_code)
            .field("region", &self.region)
            .field("number_type", &self.number_type)
            .finish()
    }
}

/// Why a dialed string is refused. Incomplete numbers get SIP 484 (the caller may go on
/// dialing, RFC 3261 §21.4.22); invalid ones get 404 (DESIGN §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Cut off: too short for the region, a local-only length (no area code), or a `+` with
    /// no complete calling code yet. [`crate::Reason::IncompleteNumber`], 484.
    #[error("incomplete number: {0}")]
    Incomplete(Why),
    /// Not a number: bad characters, an unknown calling code, too long, or no pattern of the
    /// region matches. [`crate::Reason::InvalidNumber`], 404.
    #[error("invalid number: {0}")]
    Invalid(Why),
}

impl NumberError {
    /// Whether the caller may complete the number by dialing more (484 rather than 404).
    pub fn is_incomplete(&self) -> bool {
        matches!(self, NumberError::Incomplete(_))
    }

    /// The detail, whichever the kind.
    pub fn why(&self) -> Why {
        match self {
            NumberError::Incomplete(w) | NumberError::Invalid(w) => *w,
        }
    }
}

/// The detail behind a [`NumberError`], for logs and the `numbers` CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Nothing was dialed.
    Empty,
    /// A character that is neither a digit, a leading `+`, nor a visual separator.
    BadCharacter,
    /// A `+` or international prefix with no (or a cut-off) country calling code after it.
    NoCallingCode,
    /// The digits after `+` / the international prefix start no known calling code.
    UnknownCallingCode,
    /// Fewer digits than any number of the region can have.
    TooShort,
    /// More digits than any number of the region can have.
    TooLong,
    /// The length is possible but no pattern of the region matches.
    NoMatch,
    /// The caller region is not in the metadata, so a national number cannot be read.
    UnknownCallerRegion,
}

impl Why {
    /// The snake-case name of the `numbers` CLI's `error` field (`"too_short"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Empty => "empty",
            Why::BadCharacter => "bad_character",
            Why::NoCallingCode => "no_calling_code",
            Why::UnknownCallingCode => "unknown_calling_code",
            Why::TooShort => "too_short",
            Why::TooLong => "too_long",
            Why::NoMatch => "no_match",
            Why::UnknownCallerRegion => "unknown_caller_region",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_round_trips() {
        assert_eq!(Region::new("gb").map(|r| r.to_string()), Some("GB".into()));
        assert_eq!(Region::new("001"), Some(Region::NON_GEO));
        assert_eq!(Region::new("G"), None);
        assert_eq!(Region::new("G1"), None);
        assert_eq!(Region::new("ÄB"), None);
    }

    #[test]
    fn number_type_names_round_trip() {
        for t in NumberType::ALL {
            assert_eq!(NumberType::from_name(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).ok(),
                Some(format!("\"{}\"", t.as_str()))
            );
        }
    }

    #[test]
    fn destination_parts() {
        let d = Destination::new(
            "+442079460000",
            44,
            Region::new("GB").unwrap(),
            NumberType::FixedLine,
        );
        assert_eq!(d.e164(), "+442079460000");
        assert_eq!(d.national_number(), "2079460000");
    }
}
