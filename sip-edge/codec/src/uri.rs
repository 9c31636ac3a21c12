//! `sip:`, `sips:` (RFC 3261 §19.1, §25.1) and `tel:` (RFC 3966) URIs, borrowed.
//!
//! Escapes (`%HH`) are checked but kept as written; parameters are kept raw and looked up on
//! demand. Other schemes are kept opaque (`absoluteURI`, RFC 3261 §25.1).

use super::error::Fault;
use super::lex::{run, split_byte};

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme, kept opaque.
    Other,
}

/// A parsed URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The URI as written.
    pub raw: &'a str,
    /// Its scheme.
    pub scheme: Scheme,
    /// `sip`/`sips`: the user part, escapes kept (`None` without `@`); `tel`: the number.
    pub user: Option<&'a str>,
    /// `sip`/`sips`: the password after `user:`.
    pub password: Option<&'a str>,
    /// `sip`/`sips`: host name, IPv4 address or bracketed IPv6 reference; empty otherwise.
    pub host: &'a str,
    /// `sip`/`sips`: explicit port.
    pub port: Option<u16>,
    /// The URI parameters, raw, without the leading `;` (empty when none).
    pub params: &'a str,
    /// `sip`/`sips`: the headers after `?`.
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// Parses a URI; `raw` must be exactly the URI (no surrounding white space or `<>`).
    pub fn parse(raw: &'a str) -> Result<Self, Fault> {
        match parse_sip_fast(raw) {
            Some(uri) => Ok(uri),
            None => Self::parse_full(raw),
        }
    }

    /// The one-pass parser of common `sip:` URIs alone (see [`parse_sip_fast`]).
    pub(crate) fn parse_fast(raw: &'a str) -> Option<Self> {
        parse_sip_fast(raw)
    }

    /// The complete grammar, for everything [`parse_sip_fast`] leaves aside (and for errors).
    pub(crate) fn parse_full(raw: &'a str) -> Result<Self, Fault> {
        const BAD: Fault = Fault::bad("Malformed URI");
        if raw
            .bytes()
            .any(|b| b <= b' ' || matches!(b, b'<' | b'>' | b'"' | 0x7f))
        {
            return Err(BAD);
        }
        let (scheme, rest) = split_byte(raw, b':').ok_or(BAD)?;
        let mut sb = scheme.bytes();
        if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
            || !sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(BAD);
        }
        let mut uri = Uri {
            raw,
            scheme: Scheme::Other,
            user: None,
            password: None,
            host: "",
            port: None,
            params: "",
            headers: None,
        };
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            uri.scheme = if scheme.len() == 3 {
                Scheme::Sip
            } else {
                Scheme::Sips
            };
            parse_sip(rest, &mut uri)?;
        } else if scheme.eq_ignore_ascii_case("tel") {
            uri.scheme = Scheme::Tel;
            parse_tel(rest, &mut uri)?;
        } else if rest.is_empty()
            || rest
                .bytes()
                .any(|b| b <= b' ' || matches!(b, b'<' | b'>' | b'"' | 0x7f))
        {
            return Err(BAD);
        }
        Ok(uri)
    }

    /// The value of the URI parameter `name` (case-insensitive): `Some(None)` when it has no
    /// value, `None` when absent.
    #[inline]
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params
            .split(';')
            .map(|p| p.split_once('=').map_or((p, None), |(n, v)| (n, Some(v))))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether the URI says it is a telephone number: `tel:`, or `user=phone` (RFC 3261 §19.1.6).
    #[inline]
    pub fn is_phone(&self) -> bool {
        self.scheme == Scheme::Tel
            || self
                .param("user")
                .flatten()
                .is_some_and(|v| v.eq_ignore_ascii_case("phone"))
    }

    /// The `phone-context` parameter (RFC 3966 §5.1.5), in `tel:` or in a `sip:` user part.
    pub fn phone_context(&self) -> Option<&'a str> {
        if let Some(v) = self.param("phone-context").flatten() {
            return Some(v);
        }
        let (_, user_params) = self.user?.split_once(';')?;
        user_params
            .split(';')
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| n.eq_ignore_ascii_case("phone-context"))
            .map(|(_, v)| v)
    }
}

/// A byte-class table: `unreserved` (RFC 3261 §25.1: alphanum and marks) plus `extra`.
const fn class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// `user` characters (`user-unreserved`).
static USER: [bool; 256] = class(b"&=+$,;?/");
/// `password` characters.
static PASSWORD: [bool; 256] = class(b"&=+$,");
/// `headers` characters (`hnv-unreserved`, `=` and `&`).
static HEADER: [bool; 256] = class(b"[]/?:+$=&");

/// Checks that every byte is in `class` or part of a `%HH` escape.
fn check_escaped(s: &str, class: &[bool; 256]) -> Result<(), Fault> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if !b
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
            {
                return Err(Fault::bad("Bad escape in URI"));
            }
            i += 3;
        } else if class[usize::from(c)] {
            i += 1;
        } else {
            return Err(Fault::bad("Malformed URI"));
        }
    }
    Ok(())
}

/// Checks `;`-separated URI parameters: names non-empty, characters of [`SEMI_PARAM`].
fn check_params(params: &str) -> Result<(), Fault> {
    let mut prev = b';';
    for c in params.bytes() {
        if prev == b';' && matches!(c, b';' | b'=') {
            return Err(Fault::bad("Empty URI parameter"));
        }
        prev = c;
    }
    if !params.is_empty() && prev == b';' {
        return Err(Fault::bad("Empty URI parameter"));
    }
    check_escaped(params, &SEMI_PARAM)
}

/// `uri-parameters` characters: `param-unreserved`, `=` between name and value, `;` between
/// parameters.
static SEMI_PARAM: [bool; 256] = class(b"[]/:&+$=;");

/// `host` characters outside IPv6 references (see [`is_host`]).
pub(crate) static HOST: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        c += 1;
    }
    t
};

/// 1 to 5 digits at the start of `b` forming a port (at most 65535): the port and its length.
pub(crate) fn port_prefix(b: &[u8]) -> Option<(u16, usize)> {
    let mut v = 0u32;
    let mut n = 0;
    while let Some(&d) = b.get(n) {
        if !d.is_ascii_digit() {
            break;
        }
        if n == 5 {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
        n += 1;
    }
    if n == 0 {
        return None;
    }
    Some((u16::try_from(v).ok()?, n))
}

/// One pass over the common `sip:`/`sips:` URI: no escapes, password, IPv6 reference, empty
/// parameter or other oddity. `None` sends the URI to [`Uri::parse_full`], which then gives
/// the same result or the error; what this accepts, it parses exactly as that would.
fn parse_sip_fast(raw: &str) -> Option<Uri<'_>> {
    let b = raw.as_bytes();
    let lower = |i: usize| b.get(i).map(|c| c | 0x20);
    if (lower(0), lower(1), lower(2)) != (Some(b's'), Some(b'i'), Some(b'p')) {
        return None;
    }
    let (scheme, start) = match (b.get(3), lower(3), b.get(4)) {
        (Some(b':'), _, _) => (Scheme::Sip, 4),
        (_, Some(b's'), Some(b':')) => (Scheme::Sips, 5),
        _ => return None,
    };
    let rest = raw.get(start..)?;
    let r = rest.as_bytes();
    // The user part runs to the first `@`; `:` (a password), `%` or anything else stops it.
    let u = run(r, &USER);
    let (user, host_start) = match r.get(u) {
        Some(b'@') if u > 0 => (Some(rest.get(..u)?), u + 1),
        _ if r
            .get(u..)
            .is_some_and(|t| memchr::memchr(b'@', t).is_some()) =>
        {
            return None
        }
        _ => (None, 0),
    };
    let h = host_start + run(r.get(host_start..)?, &HOST);
    if h == host_start {
        return None;
    }
    let host = rest.get(host_start..h)?;
    let mut j = h;
    let mut port = None;
    if r.get(j) == Some(&b':') {
        let (p, n) = port_prefix(r.get(j + 1..)?)?;
        port = Some(p);
        j += 1 + n;
    }
    let mut params = "";
    if r.get(j) == Some(&b';') {
        let ps = j + 1;
        let mut prev = b';';
        j = ps;
        while let Some(&c) = r.get(j) {
            if !SEMI_PARAM[usize::from(c)] {
                break;
            }
            if prev == b';' && matches!(c, b';' | b'=') {
                return None;
            }
            prev = c;
            j += 1;
        }
        if prev == b';' {
            return None;
        }
        params = rest.get(ps..j)?;
    }
    let headers = match r.get(j) {
        None => None,
        Some(b'?') => {
            let h = rest.get(j + 1..)?;
            if run(h.as_bytes(), &HEADER) != h.len() {
                return None;
            }
            Some(h)
        }
        Some(_) => return None,
    };
    Some(Uri {
        raw,
        scheme,
        user,
        password: None,
        host,
        port,
        params,
        headers,
    })
}

/// `sip:`/`sips:` after the colon: `[userinfo "@"] hostport uri-parameters [headers]`.
fn parse_sip<'a>(rest: &'a str, uri: &mut Uri<'a>) -> Result<(), Fault> {
    // No `@` may appear after the user part (§25.1: not in password, params or headers).
    let after = match split_byte(rest, b'@') {
        Some((userinfo, after)) => {
            let (user, password) = match split_byte(userinfo, b':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(Fault::bad("Empty user part in URI"));
            }
            check_escaped(user, &USER)?;
            if let Some(p) = password {
                check_escaped(p, &PASSWORD)?;
            }
            uri.user = Some(user);
            uri.password = password;
            after
        }
        None => rest,
    };
    let (main, headers) = match split_byte(after, b'?') {
        Some((m, h)) => (m, Some(h)),
        None => (after, None),
    };
    let (hostport, params) = split_byte(main, b';').unwrap_or((main, ""));
    let (host, port) = split_hostport(hostport)?;
    uri.host = host;
    uri.port = port;
    check_params(params)?;
    uri.params = params;
    if let Some(h) = headers {
        check_escaped(h, &HEADER)?;
    }
    uri.headers = headers;
    Ok(())
}

/// `host [":" port]`, where host may be an IPv6 reference `[...]`.
pub(crate) fn split_hostport(s: &str) -> Result<(&str, Option<u16>), Fault> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or(Fault::bad("Malformed IPv6 reference"))?;
        let (host, rest) = s.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (
                host,
                Some(rest.strip_prefix(':').ok_or(Fault::bad("Malformed host"))?),
            ),
        }
    } else {
        match split_byte(s, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !is_host(host) {
        return Err(Fault::bad("Malformed host"));
    }
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Ok((host, port))
}

/// `port = 1*DIGIT` (at most 65535).
pub(crate) fn parse_port(p: &str) -> Result<u16, Fault> {
    super::lex::parse_u32(p)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(Fault::bad("Malformed port"))
}

/// `hostname / IPv4address / IPv6reference` (RFC 3261 §25.1); `_` is tolerated in names.
pub(crate) fn is_host(h: &str) -> bool {
    match h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            v6.contains(':')
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        }
        None => !h.is_empty() && run(h.as_bytes(), &HOST) == h.len(),
    }
}

/// `tel:` after the colon: `telephone-subscriber` with its parameters (RFC 3966 §3).
fn parse_tel<'a>(rest: &'a str, uri: &mut Uri<'a>) -> Result<(), Fault> {
    let (number, params) = split_byte(rest, b';').unwrap_or((rest, ""));
    let digits = number.strip_prefix('+').unwrap_or(number);
    let visual = |b: u8| matches!(b, b'-' | b'.' | b'(' | b')');
    let ok = if number.starts_with('+') {
        digits.bytes().all(|b| b.is_ascii_digit() || visual(b))
            && digits.bytes().any(|b| b.is_ascii_digit())
    } else {
        digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#') || visual(b))
            && digits
                .bytes()
                .any(|b| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#'))
    };
    if !ok {
        return Err(Fault::bad("Malformed tel URI"));
    }
    check_params(params)?;
    uri.user = Some(number);
    uri.params = params;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris() {
        let u = Uri::parse("sip:+442079460000@pstn-gb.example.net:5070;user=phone;lr").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("+442079460000"));
        assert_eq!(u.host, "pstn-gb.example.net");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("USER"), Some(Some("phone")));
        assert_eq!(u.param("lr"), Some(None));
        assert!(u.is_phone());

        let u = Uri::parse("SIPS:[2001:db8::10]:5061;transport=tcp").unwrap();
        assert_eq!(
            (u.scheme, u.host, u.port),
            (Scheme::Sips, "[2001:db8::10]", Some(5061))
        );

        let crazy = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = Uri::parse(crazy).unwrap();
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(u.host, "example.com");

        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        let u = Uri::parse("sip:%61lice@example.com?Subject=x").unwrap();
        assert_eq!(u.headers, Some("Subject=x"));
        let u = Uri::parse("sip:4321;phone-context=+44@example.com;user=phone").unwrap();
        assert_eq!(u.phone_context(), Some("+44"));
    }

    #[test]
    fn tel_and_other() {
        let u = Uri::parse("tel:+1-212-555-0100").unwrap();
        assert_eq!((u.scheme, u.user), (Scheme::Tel, Some("+1-212-555-0100")));
        let u = Uri::parse("tel:911;phone-context=+1").unwrap();
        assert_eq!(u.phone_context(), Some("+1"));
        assert!(u.is_phone());
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.scheme, Scheme::Other);
    }

    /// The one-pass parser agrees with the full grammar wherever it answers.
    #[test]
    fn fast_path_agrees() {
        for raw in [
            "sip:+442079460000@tollgate.example.net;user=phone",
            "sip:alice@192.0.2.10:5061;transport=tls",
            "SIPS:host:05060?a=b",
            "sip:host;",
            "sip:host:123456",
            "sip:a@b@c",
            "sip:a:pw@b",
            "sip:a@b;x=;y",
            "sip:a@b;=x",
            "sip:a@b?",
            "sip:@b",
            "sip:a@",
            "sip:a@b:",
            "sip:a@b:65536",
            "sip:a@b c",
            "sip:user;par=u%40example.net@example.com",
            "sip:h?x@y",
        ] {
            if let Some(fast) = parse_sip_fast(raw) {
                assert_eq!(Ok(fast), Uri::parse_full(raw), "{raw}");
            }
        }
        assert!(parse_sip_fast("sip:+442079460000@tollgate.example.net;user=phone").is_some());
    }

    #[test]
    fn rejects() {
        for bad in [
            "sip:user@example.com; lr",
            "<sip:a@b>",
            "sip:@example.com",
            "sip:a@",
            "sip:a@b:99999",
            "sip:a@b;;lr",
            "sip:a%4@b",
            "sip:a@[2001:db8::1",
            "tel:+",
            "tel:xyz;x=1",
            "1sip:x",
            "nocolon",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }
}
