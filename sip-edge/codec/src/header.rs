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
    /// `X-Tollgate-Service`: what a trusted proxy asks for (`conference-dialout`: a meeting's
    /// dial-out; DESIGN §3).
    XTollgateService,
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
            (b'x', 18) => confirm(name, b"X-Tollgate-Service", Self::XTollgateService),
            _ => Self::Other,
        }
    }

    /// The header named at the start of a header line when it is spelled as Tollgate and most
    /// peers write it (RFC 3261 §20) and followed at once by the colon: the name and the
    /// colon's offset. A shortcut of the general scan (token characters, then
    /// [`HeaderName::from_bytes`]), which gives the same answer for such a line; `None` sends
    /// the line there.
    #[inline(always)] // once per header line
    pub(crate) fn canonical_prefix(line: &[u8]) -> Option<(Self, usize)> {
        match *line.first()? {
            b'V' => prefix(line, b"Via:", Self::Via),
            b'F' => prefix(line, b"From:", Self::From),
            b'T' => prefix(line, b"To:", Self::To),
            b'C' => match (*line.get(1)?, line.get(4), line.get(8)) {
                (b'a', _, _) => prefix(line, b"Call-ID:", Self::CallId),
                (b'S', _, _) => prefix(line, b"CSeq:", Self::CSeq),
                (_, Some(b'a'), _) => prefix(line, b"Contact:", Self::Contact),
                (_, _, Some(b'L')) => prefix(line, b"Content-Length:", Self::ContentLength),
                (_, _, Some(b'T')) => prefix(line, b"Content-Type:", Self::ContentType),
                (_, _, Some(b'E')) => prefix(line, b"Content-Encoding:", Self::ContentEncoding),
                _ => None,
            },
            b'M' => prefix(line, b"Max-Forwards:", Self::MaxForwards),
            b'R' => match (*line.get(2)?, line.get(6)) {
                (b'c', _) => prefix(line, b"Record-Route:", Self::RecordRoute),
                (b'q', _) => prefix(line, b"Require:", Self::Require),
                (b'u', _) => prefix(line, b"Route:", Self::Route),
                (b'f', Some(b'T')) => prefix(line, b"Refer-To:", Self::ReferTo),
                (b'f', _) => prefix(line, b"Referred-By:", Self::ReferredBy),
                _ => None,
            },
            b'S' => match (*line.get(1)?, line.get(2)) {
                (b'e', _) => prefix(line, b"Session-Expires:", Self::SessionExpires),
                (b'u', Some(b'p')) => prefix(line, b"Supported:", Self::Supported),
                (b'u', _) => prefix(line, b"Subject:", Self::Subject),
                _ => None,
            },
            b'E' => prefix(line, b"Event:", Self::Event),
            b'A' => match line.get(5) {
                Some(b'-') => prefix(line, b"Allow-Events:", Self::AllowEvents),
                _ => prefix(line, b"Allow:", Self::Allow),
            },
            b'P' => prefix(line, b"P-Asserted-Identity:", Self::PAssertedIdentity),
            b'X' => prefix(line, b"X-Tollgate-Service:", Self::XTollgateService),
            _ => None,
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
            Self::XTollgateService => "X-Tollgate-Service",
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

/// `(h, N - 1)` when `line` starts with `name_colon` (a name and its colon: compared as a
/// fixed-size array, inline).
#[inline(always)]
fn prefix<const N: usize>(
    line: &[u8],
    name_colon: &[u8; N],
    h: HeaderName,
) -> Option<(HeaderName, usize)> {
    (line.first_chunk::<N>()? == name_colon).then_some((h, N - 1))
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

/// Number of [`HeaderName`] variants.
const NAMES: usize = HeaderName::Other as usize + 1;

/// The header lines of a message, in order, without heap allocation.
///
/// Values are kept as offsets into the message text (which is at most
/// [`MAX_MESSAGE_LEN`](super::parse::MAX_MESSAGE_LEN) bytes, so `u16` offsets suffice) and names
/// in an array of their own: the table is a few hundred bytes rather than 1.5 KiB of `&str`
/// and name pairs, which matters because it is moved into the parsed request (and into a
/// [`ParseError`](super::ParseError)) by value.
///
/// An index (first line and number of lines of each known name) makes lookups by name skip
/// the lines of other names.
#[derive(Clone)]
pub struct Headers<'a> {
    /// The message text the values are cut from.
    text: &'a str,
    /// Start and end offset in `text` of each line's value.
    spans: [[u16; 2]; MAX_HEADERS],
    /// Name of each line.
    names: [HeaderName; MAX_HEADERS],
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
        Self::new("")
    }
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> Headers<'a> {
    /// An empty table for the header lines of `text` (the whole message).
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            spans: [[0; 2]; MAX_HEADERS],
            names: [HeaderName::Other; MAX_HEADERS],
            len: 0,
            first: [0; NAMES],
            count: [0; NAMES],
            folded: false,
        }
    }

    /// Appends a header line whose value is `text[start..end]` (the caller has checked that
    /// this cuts `text` at character boundaries); fails past [`MAX_HEADERS`].
    pub(crate) fn push(&mut self, name: HeaderName, start: usize, end: usize) -> Result<(), Fault> {
        let i = self.len;
        let (Some(span), Some(slot)) = (self.spans.get_mut(i), self.names.get_mut(i)) else {
            return Err(Fault::bad("Too many headers"));
        };
        // `text` is at most `MAX_MESSAGE_LEN` (65 535) bytes long.
        let (Ok(s), Ok(e)) = (u16::try_from(start), u16::try_from(end)) else {
            return Err(Fault::bad("Message too large"));
        };
        *span = [s, e];
        *slot = name;
        let k = name as usize;
        if self.count[k] == 0 {
            self.first[k] = i as u8; // < MAX_HEADERS
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
    #[inline]
    pub fn folded(&self) -> bool {
        self.folded
    }

    /// The value of line `i` (checked when pushed; `""` past the end).
    #[inline]
    fn value(&self, i: usize) -> &'a str {
        let [s, e] = self.spans.get(i).copied().unwrap_or_default();
        self.text
            .get(usize::from(s)..usize::from(e))
            .unwrap_or_default()
    }

    /// All header lines, in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = Header<'a>> + '_ {
        let names = self.names.get(..self.len).unwrap_or_default();
        names.iter().enumerate().map(|(i, &name)| Header {
            name,
            value: self.value(i),
        })
    }

    /// Number of header lines.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no header lines.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw values of every line named `name`, in order.
    #[inline]
    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        let k = name as usize;
        let from = usize::from(self.first[k]);
        let names = self.names.get(from..self.len).unwrap_or_default();
        names
            .iter()
            .enumerate()
            .filter(move |(_, &n)| n == name)
            .take(usize::from(self.count[k]))
            .map(move |(i, _)| self.value(from + i))
    }

    /// The number of lines named `name`.
    #[inline]
    pub fn count(&self, name: HeaderName) -> usize {
        usize::from(self.count[name as usize])
    }

    /// The raw value of the first line named `name`.
    #[inline]
    pub fn first(&self, name: HeaderName) -> Option<&'a str> {
        let k = name as usize;
        match self.count[k] {
            0 => None,
            _ => Some(self.value(usize::from(self.first[k]))),
        }
    }

    /// The comma-separated values of every line named `name`, in order (RFC 3261 §7.3.1).
    #[inline]
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        self.all(name)
            .flat_map(split_values as fn(&'a str) -> SplitValues<'a>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full names, lower-case.
    const NAMES: [(&str, HeaderName); 23] = [
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
        ("x-tollgate-service", HeaderName::XTollgateService),
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

    /// The shortcut agrees with the general scan on every canonical name, and leaves
    /// everything else to it.
    #[test]
    fn canonical_prefixes() {
        for (_, h) in NAMES {
            let name = h.as_str().unwrap();
            for rest in [": x", ":", " : x", "x: y", "-X: y"] {
                let line = format!("{name}{rest}");
                let found = HeaderName::canonical_prefix(line.as_bytes());
                if rest.starts_with(':') {
                    assert_eq!(found, Some((h, name.len())), "{line}");
                } else {
                    assert_eq!(found, None, "{line}");
                }
                let lower = line.to_ascii_lowercase();
                assert_eq!(HeaderName::canonical_prefix(lower.as_bytes()), None);
            }
        }
        for line in [
            "", "C", "Co", "Cont", "X-Via: 1", "Rx", "Sx: 1", "Allow", "v: x",
        ] {
            assert_eq!(
                HeaderName::canonical_prefix(line.as_bytes()),
                None,
                "{line}"
            );
        }
    }

    #[test]
    fn table() {
        let mut h = Headers::new("a, b t c x");
        h.push(HeaderName::Via, 0, 4).unwrap();
        h.push(HeaderName::To, 5, 6).unwrap();
        h.push(HeaderName::Via, 7, 8).unwrap();
        assert_eq!(
            h.values(HeaderName::Via).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(h.first(HeaderName::To), Some("t"));
        for _ in 3..MAX_HEADERS {
            h.push(HeaderName::Other, 9, 10).unwrap();
        }
        assert!(h.push(HeaderName::Other, 9, 10).is_err());
    }
}
