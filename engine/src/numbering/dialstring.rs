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

    #[inline]
    fn push(&mut self, digit: u8) -> Result<(), NumberError> {
        let at = self.len as usize;
        if at == MAX_DIGITS {
            return Err(NumberError::Invalid(Why::TooLong));
        }
        self.buf[at] = digit;
        self.len += 1;
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
    /// One pass over the bytes: this runs for every INVITE. Inlined: returned through memory,
    /// the digits cost a copy more than the parse.
    #[inline]
    pub(crate) fn parse(input: &str) -> Result<Dialed, NumberError> {
        let s = input.as_bytes().trim_ascii();
        let (s, sip) = strip_scheme(s);
        let mut digits = Digits::new();
        let mut len = 0usize;
        let mut plus = false;
        let mut i = 0;
        while i < s.len() {
            // The common case, a run of digits, eight bytes at a time: all eight are stored
            // (the buffer has room), but only the run up to the first non-digit is kept.
            if let (Some(chunk), Some(dst)) = (
                s.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()),
                digits.buf.get_mut(len..len + 8),
            ) {
                dst.copy_from_slice(&chunk);
                let run = digit_run(u64::from_le_bytes(chunk));
                len += run;
                i += run;
                if run == 8 {
                    continue;
                }
            }
            let Some(&c) = s.get(i) else { break };
            i += 1;
            if c.wrapping_sub(b'0') < 10 {
                *digits
                    .buf
                    .get_mut(len)
                    .ok_or(NumberError::Invalid(Why::TooLong))? = c;
                len += 1;
                continue;
            }
            match c {
                b'+' if !plus && len == 0 => plus = true,
                c if is_separator(c) => {}
                b';' => break,
                // In a SIP URI the user part ends at `@` (RFC 3261 §19.1.1).
                b'@' if sip => {
                    i = s.len();
                    break;
                }
                _ => return Err(NumberError::Invalid(Why::BadCharacter)),
            }
        }
        digits.len = len as u8;
        let context = match s.get(i..) {
            Some(params) if !params.is_empty() => phone_context(params)?,
            _ => None,
        };
        if !plus && len == 0 {
            return Err(NumberError::Invalid(Why::Empty));
        }
        Ok(Dialed {
            plus,
            digits,
            context,
        })
    }
}

/// How many of the eight bytes of `w` (little-endian: the first byte lowest) are ASCII digits
/// before the first that is not. A byte `c` is a digit iff neither `c - 0x30` nor `c + 0x46`
/// sets its top bit; below the first non-digit no borrow or carry crosses a byte, so the
/// lowest flagged byte is exactly the first non-digit.
#[inline(always)]
fn digit_run(w: u64) -> usize {
    const LO: u64 = 0x3030_3030_3030_3030;
    const HI: u64 = 0x4646_4646_4646_4646;
    const TOP: u64 = 0x8080_8080_8080_8080;
    let flagged = (w.wrapping_sub(LO) | w.wrapping_add(HI)) & TOP;
    (flagged.trailing_zeros() / 8) as usize
}

/// The digits of a global `phone-context` parameter among `;`-separated URI parameters.
fn phone_context(params: &[u8]) -> Result<Option<Digits>, NumberError> {
    for param in params.split(|&b| b == b';') {
        let Some(eq) = param.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (param[..eq].trim_ascii(), param[eq + 1..].trim_ascii());
        // A domain-name context (`phone-context=example.com`) says nothing about the
        // digits; only a global-number context does.
        if name.eq_ignore_ascii_case(b"phone-context") && value.first() == Some(&b'+') {
            let mut ctx = Digits::new();
            for &c in &value[1..] {
                match c {
                    b'0'..=b'9' => ctx.push(c)?,
                    c if is_separator(c) => {}
                    _ => return Err(NumberError::Invalid(Why::BadCharacter)),
                }
            }
            return Ok(Some(ctx));
        }
    }
    Ok(None)
}

/// `tel:N` → `N`; `sip:N@host` / `sips:N@host` → `N@host` and `true` (cut at `@` later).
fn strip_scheme(s: &[u8]) -> (&[u8], bool) {
    let starts = |p: &[u8]| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    match s.first() {
        Some(b't' | b'T') if starts(b"tel:") => (&s[4..], false),
        Some(b's' | b'S') if starts(b"sip:") => (&s[4..], true),
        Some(b's' | b'S') if starts(b"sips:") => (&s[5..], true),
        _ => (s, false),
    }
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
    fn digit_runs() {
        for bytes in [
            *b"12345678",
            *b"1234567/",
            *b"+1234567",
            *b"0009:999",
            *b"99\xff99999",
            *b"9\x809\xb9\x00123",
            *b"12 45678",
        ] {
            let want = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            assert_eq!(digit_run(u64::from_le_bytes(bytes)), want, "{bytes:?}");
        }
        for b in 0..=255u8 {
            let mut w = *b"11111111";
            w[3] = b;
            let want = if b.is_ascii_digit() { 8 } else { 3 };
            assert_eq!(digit_run(u64::from_le_bytes(w)), want, "{b}");
        }
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
