//! One `Via` value (RFC 3261 §20.42, §25.1 `via-parm`), with the `rport` parameter of RFC 3581.
//!
//! `sent-protocol` may carry LWS around its slashes, and `sent-by` may be an IPv6 reference.

use super::error::Fault;
use super::lex::{is_lws, is_token, params, trim_lws, trim_lws_start, Param, Params};
use super::uri::{is_host, parse_port};

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
