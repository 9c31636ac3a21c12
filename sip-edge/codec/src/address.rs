//! `name-addr / addr-spec` header values with parameters: From, To, P-Asserted-Identity
//! (RFC 3261 §20.10, §20.20, §20.39, §25.1; RFC 3325 §9.1).

use super::error::Fault;
use super::lex::{
    find1, find_param, has_lws, is_lws, is_token, is_token_str, name_is, params_fast, quoted_len,
    trim_lws,
};
use super::uri::Uri;

/// An address header value: `[display-name] <URI> *(;param)` or `URI *(;param)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (a quoted one keeps its quotes).
    pub display: Option<&'a str>,
    /// The address. URIs of other schemes than `sip`, `sips` and `tel` are kept opaque.
    pub uri: Uri<'a>,
    /// The header parameters, raw (after the URI or `>`).
    pub params: &'a str,
    /// The `tag` parameter (RFC 3261 §19.3).
    pub tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    /// Parses one address value (one element of a comma-separated list).
    pub fn parse(value: &'a str) -> Result<Self, Fault> {
        match parse_fast(value, None) {
            Some(a) => Ok(a),
            None => Self::parse_full(value),
        }
    }

    /// The one-pass parser of the common form alone (see [`parse_fast`]). When it answers, the
    /// value holds no comma outside quotes and `<>`: it is one element of its list.
    ///
    /// `known` is a URI parsed before (the Request-URI for To, From for P-Asserted-Identity):
    /// when the value holds the same text, it is taken as it is rather than parsed again.
    pub(crate) fn parse_fast(value: &'a str, known: Option<&Uri<'a>>) -> Option<Self> {
        parse_fast(value, known)
    }

    /// The complete grammar, for everything [`parse_fast`] leaves aside (and for errors).
    pub(crate) fn parse_full(value: &'a str) -> Result<Self, Fault> {
        let s = trim_lws(value);
        if s.is_empty() {
            return Err(Fault::bad("Empty address"));
        }
        let (display, uri, params) = if s.starts_with('"') {
            let q = quoted_len(s)?;
            let (display, rest) = s.split_at(q);
            let (uri, params) = bracketed(rest)?;
            (Some(display), uri, params)
        } else if let Some(lt) = s.find('<') {
            let (display, rest) = s.split_at(lt);
            let display = trim_lws(display);
            if !display
                .split(|c: char| is_lws(c as u8))
                .all(|w| w.is_empty() || w.bytes().all(is_token))
            {
                return Err(Fault::bad("Invalid display name"));
            }
            let (uri, params) = bracketed(rest)?;
            (Some(display).filter(|d| !d.is_empty()), uri, params)
        } else {
            // addr-spec: the URI may not contain `,`, `;` or `?` (RFC 3261 §20.10).
            let end = s
                .bytes()
                .position(|b| b == b';' || is_lws(b))
                .unwrap_or(s.len());
            let (uri, params) = s.split_at(end);
            if uri.contains('?') {
                return Err(Fault::bad("URI with headers must be enclosed in <>"));
            }
            (None, uri, params)
        };
        let uri = Uri::parse(uri)?;
        let tag = find_param(params, "tag")?.map(|t| t.unwrap_or_default());
        if tag.is_some_and(|t| !is_token_str(t)) {
            return Err(Fault::bad("Malformed tag"));
        }
        Ok(Self {
            display,
            uri,
            params,
            tag,
        })
    }
}

/// The common form, `["quoted display" SP*] <sip-URI> *(;name[=value])`, in one pass; `None`
/// sends the value to [`NameAddr::parse_full`], which then gives the same result or the error.
fn parse_fast<'a>(value: &'a str, known: Option<&Uri<'a>>) -> Option<NameAddr<'a>> {
    let s = trim_lws(value);
    let b = s.as_bytes();
    let (display, lt) = match b.first()? {
        b'"' => {
            let q = quoted_len(s).ok()?;
            let lt = q + b.get(q..)?.iter().take_while(|&&c| c == b' ').count();
            (Some(s.get(..q)?), lt)
        }
        _ => (None, 0),
    };
    if b.get(lt) != Some(&b'<') {
        return None;
    }
    let gt = lt + 1 + find1(b'>', b.get(lt + 1..)?)?;
    let raw = s.get(lt + 1..gt)?;
    let uri = match known {
        // The same text parses the same (`Uri::parse` is `Uri::parse_full` where it answers).
        Some(k) if k.raw == raw => *k,
        _ => Uri::parse_fast(raw)?,
    };
    let params = s.get(gt + 1..)?;
    let mut tag = None;
    params_fast(params, |name, value| {
        if tag.is_none() && name_is(name, "tag") {
            tag = Some(value.filter(|t| is_token_str(t))?);
        }
        Some(())
    })?;
    Some(NameAddr {
        display,
        uri,
        params,
        tag,
    })
}

/// Splits `<URI> params` (after an optional display name and LWS) into URI and params.
fn bracketed(rest: &str) -> Result<(&str, &str), Fault> {
    let rest = super::lex::trim_lws_start(rest);
    let inner = rest
        .strip_prefix('<')
        .ok_or(Fault::bad("Expected < after display name"))?;
    let (uri, params) = inner
        .split_once('>')
        .ok_or(Fault::bad("Unterminated <URI>"))?;
    if has_lws(uri) {
        return Err(Fault::bad("White space inside <URI>"));
    }
    Ok((uri, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Scheme;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"  <sip:jdrosen@example.com>\r\n ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(a.display, Some("\"J Rosenberg \\\\\\\"\""));
        assert_eq!(a.uri.user, Some("jdrosen"));
        assert_eq!(a.tag, Some("98asjd8"));

        let a =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!((a.display, a.tag), (None, Some("1918181833n")));
        assert_eq!(a.uri.host, "chair-dnrc.example.com");

        let a = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display, Some("caller"));
        let a = NameAddr::parse("<tel:+14255550101>").unwrap();
        assert_eq!(a.uri.scheme, Scheme::Tel);
        assert_eq!(a.tag, None);
        let a = NameAddr::parse("<http://example.com/x>;tag=1").unwrap();
        assert_eq!(a.uri.scheme, Scheme::Other);
    }

    #[test]
    fn fast_path_agrees() {
        for v in [
            "\"Alice Smith\" <sip:+14255550101@contoso.com>;tag=8d2f41c7",
            "<sip:+442079460000@tollgate.example.net;user=phone>",
            "<sip:a@b>;tag=1;TAG=2",
            "<sip:a@b>;tag",
            "<sip:a@b>;tag=\"x\"",
            "<sip:a@b>;tag=a/b",
            "<sip:a@b> ;tag=1",
            "\"x\"<sip:a@b>",
            "\"x\"  <sip:a@b>x",
            "<sip:a@b",
            "<sip:a@b>>",
        ] {
            if let Some(fast) = parse_fast(v, None) {
                assert_eq!(Ok(fast), NameAddr::parse_full(v), "{v}");
            }
        }
        assert!(parse_fast("\"A\" <sip:a@b>;tag=1", None).is_some());
        let known = Uri::parse("sip:%61@b").unwrap();
        let a = parse_fast("<sip:%61@b>;tag=1", Some(&known)).unwrap();
        assert_eq!(Ok(a), NameAddr::parse_full("<sip:%61@b>;tag=1"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "\"unterminated <sip:a@b>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Bell@x <sip:a@b>",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b>;tag=",
            "<sip:a@b>;;",
            "<sip:a@b",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
