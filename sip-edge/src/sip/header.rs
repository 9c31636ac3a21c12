//! Header names (case-insensitive, with the compact forms of RFC 3261 §7.3.3 and §20) and the
//! fixed-capacity, borrowed header table of a message.

use super::error::Fault;
use super::lex::{split_values, SplitValues};

/// Most header lines a message may have; more is answered `400 Too many headers`.
pub const MAX_HEADERS: usize = 64;

/// The headers Tollgate knows by name; everything else is [`HeaderName::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// `Via` / `v` (RFC 3261 §20.42).
    Via,
    /// `From` / `f` (§20.20).
    From,
    /// `To` / `t` (§20.39).
    To,
    /// `Call-ID` / `i` (§20.8).
    CallId,
    /// `CSeq` (§20.16).
    CSeq,
    /// `Max-Forwards` (§20.22).
    MaxForwards,
    /// `Content-Length` / `l` (§20.14).
    ContentLength,
    /// `Content-Type` / `c` (§20.15).
    ContentType,
    /// `Content-Encoding` / `e` (§20.12).
    ContentEncoding,
    /// `Contact` / `m` (§20.10).
    Contact,
    /// `Supported` / `k` (§20.37).
    Supported,
    /// `Require` (§20.32).
    Require,
    /// `Subject` / `s` (§20.36).
    Subject,
    /// `Event` / `o` (RFC 6665).
    Event,
    /// `Allow-Events` / `u` (RFC 6665).
    AllowEvents,
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo,
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy,
    /// `Session-Expires` / `x` (RFC 4028).
    SessionExpires,
    /// `Route` (§20.34).
    Route,
    /// `Record-Route` (§20.30).
    RecordRoute,
    /// `Allow` (§20.5).
    Allow,
    /// `P-Asserted-Identity` (RFC 3325).
    PAssertedIdentity,
    /// Any other header.
    Other,
}

impl HeaderName {
    /// The canonical name of a header field name as written (case-insensitive, compact forms).
    pub fn from_bytes(name: &[u8]) -> Self {
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'v' => Self::Via,
                b'f' => Self::From,
                b't' => Self::To,
                b'i' => Self::CallId,
                b'm' => Self::Contact,
                b'l' => Self::ContentLength,
                b'c' => Self::ContentType,
                b'k' => Self::Supported,
                b's' => Self::Subject,
                b'e' => Self::ContentEncoding,
                b'o' => Self::Event,
                b'u' => Self::AllowEvents,
                b'r' => Self::ReferTo,
                b'b' => Self::ReferredBy,
                b'x' => Self::SessionExpires,
                _ => Self::Other,
            };
        }
        // Dispatch on (first letter, length) to one candidate, then confirm it: as Tollgate
        // and most peers spell it, or case-insensitively.
        let (Some(&first), Some(&second)) = (name.first(), name.get(1)) else {
            return Self::Other;
        };
        match (first | 0x20, name.len()) {
            (b'v', 3) => confirm(name, b"Via", Self::Via),
            (b'f', 4) => confirm(name, b"From", Self::From),
            (b't', 2) => confirm(name, b"To", Self::To),
            (b'c', 7) if second | 0x20 == b'a' => confirm(name, b"Call-ID", Self::CallId),
            (b'c', 7) => confirm(name, b"Contact", Self::Contact),
            (b'c', 4) => confirm(name, b"CSeq", Self::CSeq),
            (b'c', 14) => confirm(name, b"Content-Length", Self::ContentLength),
            (b'c', 12) => confirm(name, b"Content-Type", Self::ContentType),
            (b'c', 16) => confirm(name, b"Content-Encoding", Self::ContentEncoding),
            (b'm', 12) => confirm(name, b"Max-Forwards", Self::MaxForwards),
            (b's', 9) => confirm(name, b"Supported", Self::Supported),
            (b's', 7) => confirm(name, b"Subject", Self::Subject),
            (b's', 15) => confirm(name, b"Session-Expires", Self::SessionExpires),
            (b'r', 7) => confirm(name, b"Require", Self::Require),
            (b'r', 8) => confirm(name, b"Refer-To", Self::ReferTo),
            (b'r', 11) => confirm(name, b"Referred-By", Self::ReferredBy),
            (b'r', 5) => confirm(name, b"Route", Self::Route),
            (b'r', 12) => confirm(name, b"Record-Route", Self::RecordRoute),
            (b'e', 5) => confirm(name, b"Event", Self::Event),
            (b'a', 5) => confirm(name, b"Allow", Self::Allow),
            (b'a', 12) => confirm(name, b"Allow-Events", Self::AllowEvents),
            (b'p', 19) => confirm(name, b"P-Asserted-Identity", Self::PAssertedIdentity),
            _ => Self::Other,
        }
    }

    /// The full name as Tollgate writes it (`None` for [`HeaderName::Other`]).
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Self::Via => "Via",
            Self::From => "From",
            Self::To => "To",
            Self::CallId => "Call-ID",
            Self::CSeq => "CSeq",
            Self::MaxForwards => "Max-Forwards",
            Self::ContentLength => "Content-Length",
            Self::ContentType => "Content-Type",
            Self::ContentEncoding => "Content-Encoding",
            Self::Contact => "Contact",
            Self::Supported => "Supported",
            Self::Require => "Require",
            Self::Subject => "Subject",
            Self::Event => "Event",
            Self::AllowEvents => "Allow-Events",
            Self::ReferTo => "Refer-To",
            Self::ReferredBy => "Referred-By",
            Self::SessionExpires => "Session-Expires",
            Self::Route => "Route",
            Self::RecordRoute => "Record-Route",
            Self::Allow => "Allow",
            Self::PAssertedIdentity => "P-Asserted-Identity",
            Self::Other => return None,
        })
    }
}

/// `h` when `name` is `canonical` as Tollgate and most peers spell it (compared inline, the
/// length being fixed), or in any other case; [`HeaderName::Other`] otherwise.
#[inline(always)]
fn confirm<const N: usize>(name: &[u8], canonical: &[u8; N], h: HeaderName) -> HeaderName {
    if name == canonical || name.eq_ignore_ascii_case(canonical) {
        h
    } else {
        HeaderName::Other
    }
}

/// One header line: its canonical name and its value, borrowed from the message.
///
/// The value is trimmed of leading and trailing LWS; a folded value keeps its inner CR LF,
/// which every accessor treats as white space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Canonical name.
    pub name: HeaderName,
    /// The raw value.
    pub value: &'a str,
}

const EMPTY: Header<'static> = Header {
    name: HeaderName::Other,
    value: "",
};

/// Number of [`HeaderName`] variants.
const NAMES: usize = HeaderName::Other as usize + 1;

/// The header lines of a message, in order, without heap allocation.
///
/// An index (first line and number of lines of each known name) makes lookups by name skip
/// the lines of other names.
#[derive(Clone)]
pub struct Headers<'a> {
    entries: [Header<'a>; MAX_HEADERS],
    len: usize,
    /// Offset of the first line of each name.
    first: [u8; NAMES],
    /// Number of lines of each name.
    count: [u8; NAMES],
    /// Whether a value may hold the CR LF of a fold; when not, values copy as they are.
    folded: bool,
}

impl Default for Headers<'_> {
    fn default() -> Self {
        Self {
            entries: [EMPTY; MAX_HEADERS],
            len: 0,
            first: [0; NAMES],
            count: [0; NAMES],
            folded: false,
        }
    }
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a> Headers<'a> {
    /// Appends a header line; fails past [`MAX_HEADERS`].
    pub(crate) fn push(&mut self, name: HeaderName, value: &'a str) -> Result<(), Fault> {
        let slot = self
            .entries
            .get_mut(self.len)
            .ok_or(Fault::bad("Too many headers"))?;
        *slot = Header { name, value };
        let k = name as usize;
        if self.count[k] == 0 {
            self.first[k] = self.len as u8; // < MAX_HEADERS
        }
        self.count[k] += 1; // at most MAX_HEADERS
        self.len += 1;
        Ok(())
    }

    /// Records that a value was folded (RFC 3261 §7.3.1): it holds CR LF.
    pub(crate) fn mark_folded(&mut self) {
        self.folded = true;
    }

    /// Whether any value may hold the CR LF of a fold (see [`Header`]).
    pub fn folded(&self) -> bool {
        self.folded
    }

    /// All header lines, in order.
    pub fn as_slice(&self) -> &[Header<'a>] {
        self.entries.get(..self.len).unwrap_or_default()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw values of every line named `name`, in order.
    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        let k = name as usize;
        self.as_slice()
            .get(usize::from(self.first[k])..)
            .unwrap_or_default()
            .iter()
            .filter(move |h| h.name == name)
            .take(usize::from(self.count[k]))
            .map(|h| h.value)
    }

    /// The number of lines named `name`.
    pub fn count(&self, name: HeaderName) -> usize {
        usize::from(self.count[name as usize])
    }

    /// The raw value of the first line named `name`.
    pub fn first(&self, name: HeaderName) -> Option<&'a str> {
        let k = name as usize;
        match self.count[k] {
            0 => None,
            _ => self
                .entries
                .get(usize::from(self.first[k]))
                .map(|h| h.value),
        }
    }

    /// The comma-separated values of every line named `name`, in order (RFC 3261 §7.3.1).
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        self.all(name)
            .flat_map(split_values as fn(&'a str) -> SplitValues<'a>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full names, lower-case.
    const NAMES: [(&str, HeaderName); 22] = [
        ("via", HeaderName::Via),
        ("from", HeaderName::From),
        ("to", HeaderName::To),
        ("call-id", HeaderName::CallId),
        ("cseq", HeaderName::CSeq),
        ("max-forwards", HeaderName::MaxForwards),
        ("content-length", HeaderName::ContentLength),
        ("content-type", HeaderName::ContentType),
        ("content-encoding", HeaderName::ContentEncoding),
        ("contact", HeaderName::Contact),
        ("supported", HeaderName::Supported),
        ("require", HeaderName::Require),
        ("subject", HeaderName::Subject),
        ("event", HeaderName::Event),
        ("allow-events", HeaderName::AllowEvents),
        ("refer-to", HeaderName::ReferTo),
        ("referred-by", HeaderName::ReferredBy),
        ("session-expires", HeaderName::SessionExpires),
        ("route", HeaderName::Route),
        ("record-route", HeaderName::RecordRoute),
        ("allow", HeaderName::Allow),
        ("p-asserted-identity", HeaderName::PAssertedIdentity),
    ];

    #[test]
    fn names() {
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"X-Foo"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"z"), HeaderName::Other);
        for (n, h) in NAMES {
            assert!(h.as_str().is_some_and(|s| s.eq_ignore_ascii_case(n)));
        }
    }

    #[test]
    fn table() {
        let mut h = Headers::default();
        h.push(HeaderName::Via, "a, b").unwrap();
        h.push(HeaderName::To, "t").unwrap();
        h.push(HeaderName::Via, "c").unwrap();
        assert_eq!(
            h.values(HeaderName::Via).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(h.first(HeaderName::To), Some("t"));
        for _ in 3..MAX_HEADERS {
            h.push(HeaderName::Other, "x").unwrap();
        }
        assert!(h.push(HeaderName::Other, "x").is_err());
    }
}
