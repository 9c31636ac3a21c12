//! The basic rules of the SIP grammar (RFC 3261 §25.1): character classes, linear white space,
//! quoted strings, comma-separated lists (§7.3.1) and generic `;name=value` parameters.
//!
//! Header values are borrowed from the datagram, so a folded value (RFC 3261 §7.3.1) still holds
//! its CR LF: the line scanner admits CR and LF inside a value only as part of a fold (CR LF
//! followed by SP or HTAB), so every helper here simply treats CR and LF as white space (LWS).

use super::error::Fault;

/// `token` characters (RFC 3261 §25.1).
pub(crate) const fn is_token(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// A non-empty run of token characters (looked up in [`TOKEN`]).
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TOKEN[usize::from(b)])
}

/// SP, HTAB, or the CR / LF of a fold.
pub(crate) const fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing LWS.
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// `s` without leading LWS.
pub(crate) fn trim_lws_start(s: &str) -> &str {
    let start = s.bytes().position(|c| !is_lws(c)).unwrap_or(s.len());
    s.get(start..).unwrap_or_default()
}

/// Whether `test` holds for any byte of `b`, without early exit (faster than a search on the
/// short values of a header): an OR over each 16-byte chunk, which the compiler turns into
/// vector code, the last partial chunk taken as the last 16 bytes (overlapping the one
/// before: an OR does not mind), so that no byte goes through a scalar tail loop. `test`
/// should use `|` and `&` rather than `||`, `&&` or `matches!`, which vectorize worse.
#[inline(always)]
pub(crate) fn any_byte(b: &[u8], test: impl Fn(u8) -> bool) -> bool {
    let or = |chunk: &[u8]| chunk.iter().fold(0u8, |acc, &c| acc | u8::from(test(c)));
    let Some(last) = b.last_chunk::<16>() else {
        return or(b) != 0;
    };
    let mut acc = 0u8;
    for chunk in b.chunks_exact(16) {
        if let Ok(chunk) = <&[u8; 16]>::try_from(chunk) {
            acc |= or(chunk);
        }
    }
    (acc | or(last)) != 0
}

/// Whether `b` contains `byte` (see [`any_byte`]).
pub(crate) fn contains(b: &[u8], byte: u8) -> bool {
    any_byte(b, |c| c == byte)
}

/// Whether `s` contains any LWS byte (see [`any_byte`]).
pub(crate) fn has_lws(s: &str) -> bool {
    any_byte(s.as_bytes(), |c| {
        (c == b' ') | (c == b'\t') | (c == b'\r') | (c == b'\n')
    })
}

/// The offset of the first `n1` or `n2` in `hay`.
///
/// On x86_64 the SSE2 searcher (SSE2 is part of the architecture, so it always exists) is
/// inlined into the caller, where `memchr2` dispatches at run time through a function pointer:
/// on header lines of tens of bytes the dispatch costs about as much as the search.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn find2(n1: u8, n2: u8, hay: &[u8]) -> Option<usize> {
    match memchr::arch::x86_64::sse2::memchr::Two::new(n1, n2) {
        Some(searcher) => searcher.find(hay),
        None => memchr::memchr2(n1, n2, hay),
    }
}

/// The offset of the first `n1` or `n2` in `hay`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn find2(n1: u8, n2: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr2(n1, n2, hay)
}

/// The offset of the first `n` in `hay` (see [`find2`] for why not `memchr` itself).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn find1(n: u8, hay: &[u8]) -> Option<usize> {
    match memchr::arch::x86_64::sse2::memchr::One::new(n) {
        Some(searcher) => searcher.find(hay),
        None => memchr::memchr(n, hay),
    }
}

/// The offset of the first `n` in `hay`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn find1(n: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(n, hay)
}

/// Whether a parameter or header name is `lower` (case-insensitive, RFC 3261 §7.3.1): compared
/// exactly first, as nearly everyone writes names in lower case (a fixed-size compare, inline),
/// then byte by byte ignoring case.
#[inline(always)]
pub(crate) fn name_is(name: &str, lower: &str) -> bool {
    name == lower || name.eq_ignore_ascii_case(lower)
}

/// Splits `s` around the first `byte` (an ASCII delimiter). A plain loop: the strings are
/// short, where `memchr`'s dispatch costs more than it saves.
pub(crate) fn split_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|c| c == byte)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Parses 1*DIGIT into a `u32`; `None` on anything else or on overflow.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// Length of the quoted-string at the start of `s` (which must start with `"`), quotes
/// included; quoted-pairs (`\x`) are skipped (RFC 3261 §25.1).
pub(crate) fn quoted_len(s: &str) -> Result<usize, Fault> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(Fault::bad("Unterminated quoted string"))
}

/// The comma-separated elements of a header value (RFC 3261 §7.3.1), split outside
/// quoted strings and `<...>`; each element is trimmed of LWS. An empty value yields nothing.
pub fn split_values(value: &str) -> SplitValues<'_> {
    SplitValues {
        rest: Some(value).filter(|v| !trim_lws(v).is_empty()),
    }
}

/// Iterator returned by [`split_values`].
#[derive(Debug, Clone)]
pub struct SplitValues<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for SplitValues<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let b = rest.as_bytes();
        if !contains(b, b',') {
            // No comma at all (the common case): one element, wherever quotes and `<>` are.
            self.rest = None;
            return Some(trim_lws(rest));
        }
        let mut i = 0;
        // Jump from one `,`, `"` or `<` to the next, skipping quoted strings and `<...>`.
        while let Some(off) = b
            .get(i..)
            .and_then(|t| memchr::memchr3(b',', b'"', b'<', t))
        {
            let j = i + off;
            let skip = match b[j] {
                b',' => {
                    self.rest = rest.get(j + 1..);
                    return Some(trim_lws(rest.get(..j).unwrap_or_default()));
                }
                b'"' => rest.get(j..).and_then(|q| quoted_len(q).ok()),
                _ => memchr::memchr(b'>', &b[j..]).map(|k| k + 1),
            };
            match skip {
                Some(n) => i = j + n,
                None => break, // unterminated: the rest is one element
            }
        }
        self.rest = None;
        Some(trim_lws(rest))
    }
}

/// One `;name[=value]` parameter of a header (RFC 3261 §25.1 `generic-param`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter name (a token).
    pub name: &'a str,
    /// The value as written (a quoted value keeps its quotes), if any.
    pub value: Option<&'a str>,
}

/// The header parameters in `s`, which must be empty or start (after LWS) with `;`.
/// `SEMI` and `EQUAL` may be surrounded by LWS (RFC 3261 §25.1).
pub(crate) fn params(s: &str) -> Params<'_> {
    Params { rest: s }
}

/// Iterator returned by [`params`]; it yields an error and stops on bad syntax.
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    rest: &'a str,
}

impl<'a> Params<'a> {
    fn step(&mut self) -> Result<Option<Param<'a>>, Fault> {
        let s = trim_lws_start(self.rest);
        if s.is_empty() {
            return Ok(None);
        }
        let s = s
            .strip_prefix(';')
            .ok_or(Fault::bad("Unexpected text after value"))?;
        let s = trim_lws_start(s);
        let name_len = s.bytes().take_while(|&b| is_token(b)).count();
        let (name, s) = s.split_at(name_len);
        if name.is_empty() {
            return Err(Fault::bad("Empty parameter"));
        }
        let after = trim_lws_start(s);
        let Some(v) = after.strip_prefix('=') else {
            self.rest = s;
            return Ok(Some(Param { name, value: None }));
        };
        let v = trim_lws_start(v);
        let len = if v.starts_with('"') {
            quoted_len(v)?
        } else {
            v.bytes()
                .take_while(|&b| !is_lws(b) && !matches!(b, b';' | b',' | b'"' | b'<' | b'>'))
                .count()
        };
        if len == 0 {
            return Err(Fault::bad("Empty parameter value"));
        }
        let (value, rest) = v.split_at(len);
        self.rest = rest;
        Ok(Some(Param {
            name,
            value: Some(value),
        }))
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<Param<'a>, Fault>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.step().transpose();
        if matches!(item, Some(Err(_))) {
            self.rest = "";
        }
        item
    }
}

/// Bytes of an unquoted parameter value (RFC 3261 §25.1 `gen-value`) as [`Params`] reads it.
static VALUE: [bool; 256] = {
    let mut t = [true; 256];
    let mut i = 0;
    let stop = b" \t\r\n;,\"<>";
    while i < stop.len() {
        t[stop[i] as usize] = false;
        i += 1;
    }
    t
};

/// `token` characters as a table.
pub(crate) static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = is_token(c as u8);
        c += 1;
    }
    t
};

/// Length of the run of bytes of `class` at the start of `b` (for runs of tens of bytes:
/// URI parts, hosts; shorter ones are faster with a plain loop).
pub(crate) fn run(b: &[u8], class: &[bool; 256]) -> usize {
    // Four bytes per step while all are in the class (fewer branches), then one at a time.
    let mut i = 0;
    for c in b.chunks_exact(4) {
        let all = c.iter().fold(true, |all, &c| all & class[usize::from(c)]);
        if !all {
            break;
        }
        i += 4;
    }
    let rest = b.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .position(|&c| !class[usize::from(c)])
        .unwrap_or(rest.len())
}

/// Walks the common form of header parameters, `*(";" token ["=" value])` without LWS or
/// quoted values, calling `f(name, value)` for each as [`params`] would yield them. `None`
/// when `s` has any other form: [`params`] then decides (the same parameters, or an error).
pub(crate) fn params_fast<'a>(
    s: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>) -> Option<()>,
) -> Option<()> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b';' {
            return None;
        }
        let ns = i + 1;
        let ne = ns + run(b.get(ns..)?, &TOKEN);
        if ne == ns {
            return None;
        }
        let name = s.get(ns..ne)?;
        match b.get(ne) {
            Some(b'=') => {
                let vs = ne + 1;
                let ve = vs + run(b.get(vs..)?, &VALUE);
                if ve == vs || !matches!(b.get(ve), None | Some(b';')) {
                    return None;
                }
                f(name, Some(s.get(vs..ve)?))?;
                i = ve;
            }
            None | Some(b';') => {
                f(name, None)?;
                i = ne;
            }
            Some(_) => return None,
        }
    }
    Some(())
}

/// Checks every parameter of `s` and returns the value of the first one named `name`
/// (case-insensitive): `Some(None)` for a parameter without value.
pub(crate) fn find_param<'a>(s: &'a str, name: &str) -> Result<Option<Option<&'a str>>, Fault> {
    let mut found = None;
    for p in params(s) {
        let p = p?;
        if found.is_none() && p.name.eq_ignore_ascii_case(name) {
            found = Some(p.value);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_angles() {
        let v: Vec<_> = split_values(r#""a, \"b" <sip:x@y;a=1,2>;p=1 , <sip:z> ,"#).collect();
        assert_eq!(v, [r#""a, \"b" <sip:x@y;a=1,2>;p=1"#, "<sip:z>", ""]);
        assert_eq!(split_values("  ").count(), 0);
    }

    #[test]
    fn params_with_lws() {
        let p: Vec<_> = params(" ;\r\n tag = 98asjd8 ; lr;x=\"a;b\"").collect();
        assert_eq!(
            p,
            [
                Ok(Param {
                    name: "tag",
                    value: Some("98asjd8")
                }),
                Ok(Param {
                    name: "lr",
                    value: None
                }),
                Ok(Param {
                    name: "x",
                    value: Some("\"a;b\"")
                }),
            ]
        );
        assert!(params(";;").any(|p| p.is_err()));
        assert!(params("junk").any(|p| p.is_err()));
    }

    #[test]
    fn fast_params_agree() {
        for s in [
            ";tag=8d2f41c7;x;y=\"q\"",
            ";branch=z9hG4bK9a4c.5e1f7a02;rport",
            ";a=1,b",
            ";a;;b",
            ";=1",
            ";a=",
            "x;a",
            " ;a",
            ";a ;b",
            "",
        ] {
            let mut fast = Vec::new();
            if params_fast(s, |name, value| {
                fast.push(Ok(Param { name, value }));
                Some(())
            })
            .is_some()
            {
                assert_eq!(fast, params(s).collect::<Vec<_>>(), "{s}");
            }
        }
    }

    #[test]
    fn any_byte_at_every_length_and_place() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(!contains(&clean, b','));
            assert!(!has_lws(std::str::from_utf8(&clean).unwrap()));
            for at in 0..len {
                let mut b = clean.clone();
                b[at] = b',';
                assert!(contains(&b, b','), "{len} {at}");
                b[at] = b'\t';
                assert!(has_lws(std::str::from_utf8(&b).unwrap()), "{len} {at}");
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32(""), None);
    }
}
