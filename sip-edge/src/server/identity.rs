//! Who calls and what they dialed (DESIGN §2 steps 4 and 5).
//!
//! Caller: `P-Asserted-Identity` (RFC 3325 §9.1; only trusted peers get this far), else the
//! `From` URI. A telephone-number user part (`tel:`, `user=phone`, or one starting with `+` or
//! a digit) is used as it is, without its parameters; any other `sip:` user part is taken with
//! its host as a UPN (`alice@contoso.com`). The directory matches both forms.
//!
//! Dialed: the Request-URI user part (`tel:` number), without user-part parameters
//! (`911;phone-context=...` → `911`).

use std::borrow::Cow;

use tollgate_engine::conference::Service;

use crate::sip::{HeaderName, Request, Scheme, Uri};

/// The caller identity to look up.
pub fn caller<'a>(req: &Request<'a>) -> Cow<'a, str> {
    let uri = req
        .p_asserted_identity
        .as_ref()
        .map_or(req.from.uri, |n| n.uri);
    of_uri(&uri)
}

fn of_uri<'a>(uri: &Uri<'a>) -> Cow<'a, str> {
    let Some(user) = uri.user else {
        return Cow::Borrowed("");
    };
    let number = strip_params(user);
    let phone_like = number
        .bytes()
        .next()
        .is_some_and(|b| b == b'+' || b.is_ascii_digit());
    if uri.scheme == Scheme::Tel || uri.is_phone() || phone_like || uri.host.is_empty() {
        Cow::Borrowed(number)
    } else if let Some(upn) = user_at_host(uri, user) {
        // The usual `sip:alice@contoso.com`: `alice@contoso.com` as written, not copied.
        Cow::Borrowed(upn)
    } else {
        Cow::Owned(format!("{user}@{}", uri.host))
    }
}

/// `user@host` as one slice of the URI as written, when it is written that way (no password
/// between them).
fn user_at_host<'a>(uri: &Uri<'a>, user: &'a str) -> Option<&'a str> {
    let start = (user.as_ptr() as usize).checked_sub(uri.raw.as_ptr() as usize)?;
    let end = start + user.len() + 1 + uri.host.len();
    let upn = uri.raw.get(start..end)?;
    (uri.password.is_none()
        && upn.as_bytes().get(user.len()) == Some(&b'@')
        && upn.starts_with(user)
        && upn.ends_with(uri.host))
    .then_some(upn)
}

/// What the INVITE asks for: `X-Tollgate-Service` (DESIGN §3; only trusted peers get this
/// far), absent → a user's call; `None` for a value Tollgate does not know.
pub fn service(req: &Request<'_>) -> Option<Service> {
    match req.headers.first(HeaderName::XTollgateService) {
        None => Some(Service::Call),
        Some(v) => Service::from_header(v),
    }
}

/// The Request-URI user part, as dialed.
pub fn dialed<'a>(uri: &Uri<'a>) -> &'a str {
    uri.user.map(strip_params).unwrap_or_default()
}

fn strip_params(user: &str) -> &str {
    user.split(';').next().unwrap_or(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse_message, Message, Transport};

    fn invite(uri: &str, from: &str, pai: Option<&str>) -> String {
        let pai = pai.map_or(String::new(), |p| format!("P-Asserted-Identity: {p}\r\n"));
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nFrom: {from};tag=1\r\nTo: <{uri}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{pai}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn ids(uri: &str, from: &str, pai: Option<&str>) -> (String, String) {
        let text = invite(uri, from, pai);
        let Ok(Message::Request(r)) = parse_message(text.as_bytes(), Transport::Udp) else {
            panic!("bad test message {text}");
        };
        (caller(&r).into_owned(), dialed(&r.uri).to_string())
    }

    #[test]
    fn a_upn_is_borrowed_when_written_as_one() {
        let caller_of = |from: &str| {
            let text = invite("sip:+442079460000@tg;user=phone", from, None);
            let Ok(Message::Request(r)) = parse_message(text.as_bytes(), Transport::Udp) else {
                panic!("bad test message {text}");
            };
            let c = caller(&r);
            (c.to_string(), matches!(c, Cow::Borrowed(_)))
        };
        assert_eq!(
            caller_of("<sip:alice@contoso.com>"),
            ("alice@contoso.com".into(), true)
        );
        assert_eq!(
            caller_of("<sip:alice@contoso.com:5061;transport=tls>"),
            ("alice@contoso.com".into(), true)
        );
        // A password sits between the user and the host: joined in a copy.
        assert_eq!(
            caller_of("<sip:alice:secret@contoso.com>"),
            ("alice@contoso.com".into(), false)
        );
    }

    #[test]
    fn callers_and_dialed() {
        assert_eq!(
            ids(
                "sip:+442079460000@tg;user=phone",
                "<sip:alice@contoso.com>",
                None
            ),
            ("alice@contoso.com".into(), "+442079460000".into())
        );
        assert_eq!(
            ids(
                "tel:911;phone-context=+1",
                "<sip:alice@contoso.com>",
                Some("<sip:+14255550102@contoso.com;user=phone>")
            ),
            ("+14255550102".into(), "911".into())
        );
        assert_eq!(
            ids("sip:911;phone-context=+1@tg", "<tel:+14255550101>", None),
            ("+14255550101".into(), "911".into())
        );
        assert_eq!(
            ids("sip:tg", "<sip:tg>", None),
            (String::new(), String::new())
        );
    }
}
