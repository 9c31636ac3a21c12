//! One `Via` value (RFC 3261 §20.42, §25.1 `via-parm`), with the `rport` parameter of RFC 3581.
//!
//! `sent-protocol` may carry LWS around its slashes, and `sent-by` may be an IPv6 reference.

use super::error::Fault;
use super::lex::{
    is_lws, is_token, name_is, params, params_fast, run, trim_lws, trim_lws_start, Param, Params,
    TOKEN,
};
use super::uri::{is_host, parse_port, port_prefix, HOST};

/// A parsed `via-parm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name (`SIP`).
    pub protocol: &'a str,
    /// Protocol version (`2.0`).
    pub version: &'a str,
    /// Transport (`UDP`, `TCP`, `TLS`, `SCTP`, or any token).
    pub transport: &'a str,
    /// sent-by host (IPv6 in brackets).
    pub host: &'a str,
    /// sent-by port.
    pub port: Option<u16>,
    /// The raw parameters after sent-by (starting with `;`, or empty).
    pub params: &'a str,
    /// `branch` (RFC 3261 §8.1.1.7); RFC 2543 clients may send none or one without the cookie.
    pub branch: Option<&'a str>,
    /// `rport` (RFC 3581 §3): `Some(None)` when present without value.
    pub rport: Option<Option<u16>>,
    /// `received`.
    pub received: Option<&'a str>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (one element of the comma-separated list).
    pub fn parse(value: &'a str) -> Result<Self, Fault> {
        match parse_fast(value) {
            Some(via) => Ok(via),
            None => Self::parse_full(value),
        }
    }

    /// The one-pass parser of the common form alone (see [`parse_fast`]). When it answers, the
    /// value holds no comma: it is one element of its list.
    pub(crate) fn parse_fast(value: &'a str) -> Option<Self> {
        parse_fast(value)
    }

    /// The complete grammar, for everything [`parse_fast`] leaves aside (and for errors).
    pub(crate) fn parse_full(value: &'a str) -> Result<Self, Fault> {
        const BAD: Fault = Fault::bad("Malformed Via header");
        let v = trim_lws(value);
        let (protocol, rest) = token(v).ok_or(BAD)?;
        let rest = slash(rest).ok_or(BAD)?;
        let (version, rest) = token(rest).ok_or(BAD)?;
        let rest = slash(rest).ok_or(BAD)?;
        let (transport, rest) = token(rest).ok_or(BAD)?;
        if !rest.starts_with(|c: char| is_lws(c as u8)) {
            return Err(BAD);
        }
        let rest = trim_lws_start(rest);
        let host_len = if rest.starts_with('[') {
            rest.find(']').ok_or(BAD)? + 1
        } else {
            rest.bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
                .count()
        };
        let (host, mut rest) = rest.split_at(host_len);
        if !is_host(host) {
            return Err(BAD);
        }
        let mut port = None;
        if let Some(p) = trim_lws_start(rest).strip_prefix(':') {
            let p = trim_lws_start(p);
            let n = p.bytes().take_while(u8::is_ascii_digit).count();
            let (digits, after) = p.split_at(n);
            port = Some(parse_port(digits).map_err(|_| BAD)?);
            rest = after;
        }
        let mut via = Via {
            protocol,
            version,
            transport,
            host,
            port,
            params: rest,
            branch: None,
            rport: None,
            received: None,
        };
        for p in via.param_iter() {
            let Param { name, value } = p?;
            if name.eq_ignore_ascii_case("branch") {
                via.branch = Some(value.ok_or(BAD)?);
            } else if name.eq_ignore_ascii_case("rport") {
                via.rport = Some(value.map(parse_port).transpose()?);
            } else if name.eq_ignore_ascii_case("received") {
                via.received = Some(value.ok_or(BAD)?);
            }
        }
        Ok(via)
    }

    /// Iterates over the parameters.
    pub(crate) fn param_iter(&self) -> Params<'a> {
        params(self.params)
    }
}

/// The common form, `token/token/token SP host[:port] *(;name[=value])` without other LWS, in
/// one pass; `None` sends the value to [`Via::parse_full`], which then gives the same result or
/// the error.
fn head_fast(value: &str) -> Option<Via<'_>> {
    let s = trim_lws(value);
    let b = s.as_bytes();
    let mut i = 0;
    // `SIP/2.0/` as everyone writes it, compared at once; else token by token.
    let (protocol, version) = match b.first_chunk::<8>() {
        Some(b"SIP/2.0/") => {
            i = 8;
            (s.get(..3)?, s.get(4..7)?)
        }
        _ => (part(s, &mut i, b'/')?, part(s, &mut i, b'/')?),
    };
    let transport = part(s, &mut i, b' ')?;
    let hs = i;
    let mut j = hs + run(b.get(hs..)?, &HOST);
    let host = s.get(hs..j).filter(|h| !h.is_empty())?;
    let mut port = None;
    if b.get(j) == Some(&b':') {
        let (p, n) = port_prefix(b.get(j + 1..)?)?;
        port = Some(p);
        j += 1 + n;
    }
    Some(Via {
        protocol,
        version,
        transport,
        host,
        port,
        params: s.get(j..)?,
        branch: None,
        rport: None,
        received: None,
    })
}

/// The token at `*i` in `s`, which must be followed by `sep`; `*i` moves past `sep`.
#[inline(always)]
fn part<'s>(s: &'s str, i: &mut usize, sep: u8) -> Option<&'s str> {
    let b = s.as_bytes();
    let start = *i;
    let end = start
        + b.get(start..)?
            .iter()
            .take_while(|&&c| TOKEN[usize::from(c)])
            .count();
    let t = s.get(start..end).filter(|t| !t.is_empty())?;
    *i = end + 1;
    (b.get(end) == Some(&sep)).then_some(t)
}

/// [`parse_fast`] up to the parameters: `params` holds them raw, `branch`, `rport` and
/// `received` are not read.
pub(crate) fn parse_head_fast(value: &str) -> Option<Via<'_>> {
    head_fast(value)
}

/// The common form (see [`parse_head_fast`]), then its parameters.
fn parse_fast(value: &str) -> Option<Via<'_>> {
    let mut via = head_fast(value)?;
    params_fast(via.params, |name, value| {
        if name_is(name, "branch") {
            via.branch = Some(value?);
        } else if name_is(name, "rport") {
            via.rport = Some(match value {
                Some(p) => Some(parse_port(p).ok()?),
                None => None,
            });
        } else if name_is(name, "received") {
            via.received = Some(value?);
        }
        Some(())
    })?;
    Some(via)
}

/// A token at the start of `s` (after LWS) and the rest.
fn token(s: &str) -> Option<(&str, &str)> {
    let s = trim_lws_start(s);
    let n = s.bytes().take_while(|&b| is_token(b)).count();
    (n > 0).then(|| s.split_at(n))
}

/// `SLASH = SWS "/" SWS`: the rest after the slash.
fn slash(s: &str) -> Option<&str> {
    trim_lws_start(s).strip_prefix('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_and_spaced() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(
            (v.host, v.port, v.branch),
            ("192.0.2.2", None, Some("390skdjuw"))
        );
        assert_eq!(v.params, ";branch=390skdjuw");
    }

    #[test]
    fn ipv6_rport() {
        let v = Via::parse(
            "SIP/2.0/TCP [2001:db8::9:1] : 5070 ;rport;branch=z9hG4bKa;received=2001:db8::9:255",
        )
        .unwrap();
        assert_eq!((v.host, v.port), ("[2001:db8::9:1]", Some(5070)));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.received, Some("2001:db8::9:255"));
        let v = Via::parse("SIP/2.0/UDP host;rport=5061").unwrap();
        assert_eq!(v.rport, Some(Some(5061)));
    }

    #[test]
    fn fast_path_agrees() {
        for v in [
            "SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK9a4c.5e1f7a02;rport",
            "SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKPj5b0e;received=192.0.2.1;rport=5",
            "SIP/2.0/UDP host;rport=99999",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host ;branch=1",
            "SIP/2.0/UDP host:;branch=1",
            "SIP/2.0/UDP  host",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP [::1]",
            "SIP/2.0/ host",
            "SIP/2.0/UDP host;branch=1;BRANCH=2",
        ] {
            if let Some(fast) = parse_fast(v) {
                assert_eq!(Ok(fast), Via::parse_full(v), "{v}");
            }
        }
        assert!(parse_fast("SIP/2.0/UDP h:1;branch=x;rport").is_some());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP [::1;branch=x",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }
}
