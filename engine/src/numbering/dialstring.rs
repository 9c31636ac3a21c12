//! Turning what was dialed into digits: visual separators, `tel:` URIs (RFC 3966) and
//! `phone-context`.
//!
//! Accepted forms: `+44 20 7946 0000`, `(020) 7946-0000`, `0044.20.7946.0000`,
//! `tel:+1-212-555-0100`, `tel:911;phone-context=+1`, `tel:5550100;phone-context=+1-212`,
//! `sip:+442079460000@host;user=phone` (the user part is taken). Anything else that is not a
//! digit or a separator is refused: Unicode digits, letters (vanity numbers are not dialed
//! through a proxy), `*` and `#`.

use super::types::{NumberError, Why};

/// Most digits we accept in a dialed string: E.164 allows 15, libphonenumber national numbers
/// 17 plus a calling code, and a dialed string may carry an IDD prefix of up to 4 digits.
pub(crate) const MAX_DIGITS: usize = 24;

/// RFC 3966 §5.1.1 visual separators, plus the space and `/` people type.
fn is_separator(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'-' | b'.' | b'(' | b')' | b'/')
}

/// A fixed-capacity digit string (ASCII `0`-`9`).
#[derive(Clone, Copy)]
pub(crate) struct Digits {
    buf: [u8; MAX_DIGITS],
    len: u8,
}

impl Digits {
    pub(crate) const fn new() -> Digits {
        Digits {
            buf: [0; MAX_DIGITS],
            len: 0,
        }
    }

    /// Appends ASCII digits; `Err` when they do not fit.
    pub(crate) fn push_slice(&mut self, digits: &[u8]) -> Result<(), NumberError> {
        let at = self.len as usize;
        let end = at + digits.len();
        if end > MAX_DIGITS {
            return Err(NumberError::Invalid(Why::TooLong));
        }
        self.buf[at..end].copy_from_slice(digits);
        self.len = end as u8;
        Ok(())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// A dialed string reduced to its digits.
pub(crate) struct Dialed {
    /// It began with `+`: the digits start with a country calling code.
    pub(crate) plus: bool,
    pub(crate) digits: Digits,
    /// A global `phone-context` (`+` and digits): the digits of the context, to be put in
    /// front of a local number (RFC 3966 §5.1.5).
    pub(crate) context: Option<Digits>,
}

impl Dialed {
    pub(crate) fn parse(input: &str) -> Result<Dialed, NumberError> {
        let s = input.trim();
        let s = strip_scheme(s);
        let (number, params) = match s.find(';') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, ""),
        };
        let (plus, digits) = digits_of(number)?;
        let mut context = None;
        for param in params.split(';') {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("phone-context") {
                let value = value.trim();
                // A domain-name context (`phone-context=example.com`) says nothing about the
                // digits; only a global-number context does.
                if value.starts_with('+') {
                    let (_, ctx) = digits_of(value)?;
                    context = Some(ctx);
                }
            }
        }
        if !plus && digits.len == 0 {
            return Err(NumberError::Invalid(Why::Empty));
        }
        Ok(Dialed {
            plus,
            digits,
            context,
        })
    }
}

/// `tel:N` → `N`; `sip:N@host` / `sips:N@host` → `N`.
fn strip_scheme(s: &str) -> &str {
    let lower_starts = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    if lower_starts("tel:") {
        return &s[4..];
    }
    for scheme in ["sip:", "sips:"] {
        if lower_starts(scheme) {
            let rest = &s[scheme.len()..];
            return match rest.find('@') {
                Some(at) => &rest[..at],
                None => rest,
            };
        }
    }
    s
}

/// Digits of a number written with separators, and whether it began with `+`.
fn digits_of(number: &str) -> Result<(bool, Digits), NumberError> {
    let bytes = number.as_bytes();
    let mut digits = Digits::new();
    let mut plus = false;
    let mut seen_digit = false;
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if digits.len as usize == MAX_DIGITS {
                    return Err(NumberError::Invalid(Why::TooLong));
                }
                digits.buf[digits.len as usize] = c;
                digits.len += 1;
                seen_digit = true;
            }
            b'+' if !plus && !seen_digit && bytes[..i].iter().all(|&b| is_separator(b)) => {
                plus = true
            }
            c if is_separator(c) => {}
            _ => return Err(NumberError::Invalid(Why::BadCharacter)),
        }
    }
    Ok((plus, digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(bool, String, Option<String>), NumberError> {
        let d = Dialed::parse(s)?;
        let text = |d: &Digits| String::from_utf8(d.as_bytes().to_vec()).unwrap();
        Ok((d.plus, text(&d.digits), d.context.as_ref().map(text)))
    }

    #[test]
    fn separators_and_uris() {
        assert_eq!(
            parse(" +44 (20) 7946-0000 "),
            Ok((true, "442079460000".into(), None))
        );
        assert_eq!(
            parse("tel:+1-212-555-0100"),
            Ok((true, "12125550100".into(), None))
        );
        assert_eq!(
            parse("TEL:911;phone-context=+1"),
            Ok((false, "911".into(), Some("1".into())))
        );
        assert_eq!(
            parse("tel:5550100;phone-context=example.com"),
            Ok((false, "5550100".into(), None))
        );
        assert_eq!(
            parse("sip:+442079460000@gw.example.net"),
            Ok((true, "442079460000".into(), None))
        );
        assert_eq!(parse("0.20/7946"), Ok((false, "0207946".into(), None)));
        assert_eq!(parse("+"), Ok((true, "".into(), None)));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["abc", "12a4", "++44", "4+4", "١٢٣", "*67", "#"] {
            assert_eq!(
                parse(bad).map(|_| ()),
                Err(NumberError::Invalid(Why::BadCharacter)),
                "{bad}"
            );
        }
        assert_eq!(parse("").map(|_| ()), Err(NumberError::Invalid(Why::Empty)));
        assert_eq!(
            parse(" - ").map(|_| ()),
            Err(NumberError::Invalid(Why::Empty))
        );
        assert_eq!(
            parse(&"1".repeat(40)).map(|_| ()),
            Err(NumberError::Invalid(Why::TooLong))
        );
    }
}
