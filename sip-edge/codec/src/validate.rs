//! Request validation (RFC 3261 §8.2, §16.3; RFC 4475 §3.1.2, §3.3): mandatory headers,
//! single-valued headers, CSeq, Max-Forwards, Request-URI scheme.
//!
//! The first problem found decides the answer: `505` for a SIP version other than 2.0, `400`
//! with a reason phrase saying what was wrong for malformed requests, `416` for a Request-URI
//! scheme other than `sip`, `sips`, `tel`, and `420` for any `Require` (Tollgate supports no
//! extension). Contact values are checked too (RFC 4475 §3.1.2.13). Headers Tollgate does not
//! use (Date, Expires, Accept, Content-Type, ...) are not checked, and the body is never read.

use super::address::NameAddr;
use super::error::{Fault, ParseError};
use super::header::{HeaderName, Headers};
use super::lex::{contains, has_lws, parse_u32, split_values, trim_lws};
use super::message::{CSeq, Message, Method, Request};
use super::uri::{Scheme, Uri};
use super::via::Via;

/// The parts of a Request-Line (RFC 3261 §7.1) before validation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a str,
    pub(crate) uri: &'a str,
}

/// Validates a request whose head was split into `line` (or its syntax error) and `headers`,
/// and builds it; on error, the headers go into the [`ParseError`] to address the answer.
#[allow(clippy::result_large_err)] // see `parse_message`
#[inline]
pub(crate) fn validate<'a>(
    line: Result<RequestLine<'a>, Fault>,
    headers: Headers<'a>,
    body: &'a [u8],
) -> Result<Message<'a>, ParseError<'a>> {
    match check(line, &headers) {
        Ok(parts) => Ok(Message::Request(Request {
            method: parts.method,
            uri: parts.uri,
            body,
            via: parts.via,
            from: parts.from,
            to: parts.to,
            call_id: parts.call_id,
            cseq: parts.cseq,
            max_forwards: parts.max_forwards,
            p_asserted_identity: parts.pai,
            headers,
        })),
        Err(fault) => Err(ParseError::with_headers(fault, headers)),
    }
}

/// Everything of a request but its headers and body.
struct Parts<'a> {
    method: Method<'a>,
    uri: Uri<'a>,
    via: Via<'a>,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    call_id: &'a str,
    cseq: CSeq<'a>,
    max_forwards: Option<u8>,
    pai: Option<NameAddr<'a>>,
}

#[inline(always)] // into `validate`, so that the parts are built where the request goes
fn check<'a>(
    line: Result<RequestLine<'a>, Fault>,
    headers: &Headers<'a>,
) -> Result<Parts<'a>, Fault> {
    let line = line?;
    let method = Method::from_token(line.method);
    let uri = Uri::parse(line.uri).map_err(|_| Fault::bad("Malformed Request-URI"))?;

    // Fast paths: values in their common form parse in one pass, and are then known to be
    // one element per line (see `NameAddr::parse_fast`, `Via::parse_fast`); the checks below
    // then pass for them, so only the others take the general route.
    let via = match vias_fast(headers) {
        Some(via) => via,
        None => {
            let via = single(headers, HeaderName::Via, "Missing Via header", None)?;
            let via = Via::parse(via)?;
            for v in headers.values(HeaderName::Via).skip(1) {
                Via::parse(v)?;
            }
            via
        }
    };
    let from_fast = single_address_fast(headers, HeaderName::From, None);
    let from = match from_fast {
        Some(_) => "",
        None => single(
            headers,
            HeaderName::From,
            "Missing From header",
            Some("Multiple From headers"),
        )?,
    };
    let to_fast = single_address_fast(headers, HeaderName::To, Some(&uri));
    let to = match to_fast {
        Some(_) => "",
        None => single(
            headers,
            HeaderName::To,
            "Missing To header",
            Some("Multiple To headers"),
        )?,
    };
    let call_id = single(
        headers,
        HeaderName::CallId,
        "Missing Call-ID header",
        Some("Multiple Call-ID headers"),
    )?;
    let cseq = single(
        headers,
        HeaderName::CSeq,
        "Missing CSeq header",
        Some("Multiple CSeq headers"),
    )?;
    let max_forwards = match headers.first(HeaderName::MaxForwards) {
        None => None,
        Some(_) => Some(single(
            headers,
            HeaderName::MaxForwards,
            "Missing Max-Forwards header",
            Some("Multiple Max-Forwards headers"),
        )?),
    };

    let cseq = parse_cseq(cseq)?;
    if cseq.method != method {
        return Err(Fault::bad("CSeq method does not match request method"));
    }
    if call_id.is_empty() || has_lws(call_id) {
        return Err(Fault::bad("Malformed Call-ID"));
    }
    let from = match from_fast {
        Some(from) => from,
        None => NameAddr::parse(from).map_err(|f| with_header(f, "Malformed From header"))?,
    };
    let to = match to_fast {
        Some(to) => to,
        None => NameAddr::parse(to).map_err(|f| with_header(f, "Malformed To header"))?,
    };
    let max_forwards = match max_forwards {
        Some(v) => Some(
            parse_u32(v)
                .and_then(|n| u8::try_from(n).ok())
                .ok_or(Fault::bad("Malformed Max-Forwards"))?,
        ),
        None => None,
    };
    if uri.scheme == Scheme::Other {
        return Err(Fault {
            status: 416,
            reason: "Unsupported URI Scheme",
        });
    }
    if uri.headers.is_some() {
        return Err(Fault::bad("Request-URI must not contain headers"));
    }
    let pai_fast = headers
        .first(HeaderName::PAssertedIdentity)
        .and_then(|v| NameAddr::parse_fast(v, Some(&from.uri)));
    let pai = match pai_fast {
        Some(pai) => Some(pai),
        None => match headers.values(HeaderName::PAssertedIdentity).next() {
            Some(v) => Some(
                NameAddr::parse(v).map_err(|f| with_header(f, "Malformed P-Asserted-Identity"))?,
            ),
            None => None,
        },
    };
    let contacts_fast = headers
        .all(HeaderName::Contact)
        .all(|c| NameAddr::parse_fast(c, None).is_some());
    if !contacts_fast {
        for c in headers.values(HeaderName::Contact).filter(|&c| c != "*") {
            NameAddr::parse(c).map_err(|f| with_header(f, "Malformed Contact header"))?;
        }
    }
    // Tollgate supports no extension (RFC 3261 §8.2.2.3; not for ACK and CANCEL).
    if !matches!(method, Method::Ack | Method::Cancel)
        && headers.values(HeaderName::Require).next().is_some()
    {
        return Err(Fault {
            status: 420,
            reason: "Bad Extension",
        });
    }
    Ok(Parts {
        method,
        uri,
        via,
        from,
        to,
        call_id,
        cseq,
        max_forwards,
        pai,
    })
}

/// The top Via when every Via line is one value in the common form (see [`Via::parse_fast`]).
fn vias_fast<'a>(headers: &Headers<'a>) -> Option<Via<'a>> {
    let mut lines = headers.all(HeaderName::Via);
    let top = Via::parse_fast(lines.next()?)?;
    lines.all(|v| Via::parse_fast(v).is_some()).then_some(top)
}

/// The value of a header on one line in the common form (see [`NameAddr::parse_fast`]).
fn single_address_fast<'a>(
    headers: &Headers<'a>,
    name: HeaderName,
    known: Option<&Uri<'a>>,
) -> Option<NameAddr<'a>> {
    if headers.count(name) != 1 {
        return None;
    }
    NameAddr::parse_fast(headers.first(name)?, known)
}

/// The one value of a header that must appear once (RFC 3261 §7.3.1: a single-valued header
/// may not be repeated, on several lines or comma-joined; RFC 4475 §3.3.8). For Via (a list),
/// `multiple` is `None` and the first value is returned.
fn single<'a>(
    headers: &Headers<'a>,
    name: HeaderName,
    missing: &'static str,
    multiple: Option<&'static str>,
) -> Result<&'a str, Fault> {
    if headers.count(name) == 1 {
        let line = headers.first(name).unwrap_or_default();
        if !contains(line.as_bytes(), b',') {
            // One line, one element: what `split_values` yields for it, without the iterator.
            let value = trim_lws(line);
            return if value.is_empty() {
                Err(Fault::bad(missing))
            } else {
                Ok(value)
            };
        }
        // One line: its elements are all the values.
        let mut values = split_values(line);
        let first = values.next().ok_or(Fault::bad(missing))?;
        return match multiple {
            Some(multiple) if values.next().is_some() => Err(Fault::bad(multiple)),
            _ => Ok(first),
        };
    }
    let mut values = headers.values(name);
    let first = values.next().ok_or(Fault::bad(missing))?;
    if let Some(multiple) = multiple {
        if values.next().is_some() {
            return Err(Fault::bad(multiple));
        }
    }
    Ok(first)
}

/// A grammar error inside a header gets the header's name in its reason phrase, unless it
/// already says something more precise.
fn with_header(f: Fault, generic: &'static str) -> Fault {
    match f.reason {
        "Malformed URI" | "Unexpected text after value" | "Empty address" => Fault::bad(generic),
        _ => f,
    }
}

/// `CSeq = 1*DIGIT LWS Method` (RFC 3261 §20.16); the number must be below 2**31 (§8.1.1.5).
fn parse_cseq(value: &str) -> Result<CSeq<'_>, Fault> {
    let v = trim_lws(value);
    let n = v.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = v.split_at(n);
    let method = trim_lws(rest);
    if digits.is_empty() || method.len() == rest.len() || !super::lex::is_token_str(method) {
        return Err(Fault::bad("Malformed CSeq"));
    }
    let seq = parse_u32(digits)
        .filter(|&n| n < 1 << 31)
        .ok_or(Fault::bad("CSeq number too large"))?;
    Ok(CSeq {
        seq,
        method: Method::from_token(method),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        assert_eq!(
            parse_cseq(" 4711\r\n INVITE ").unwrap(),
            CSeq {
                seq: 4711,
                method: Method::Invite
            }
        );
        assert!(parse_cseq("36893488147419103232 INVITE").is_err());
        assert!(parse_cseq("2147483648 INVITE").is_err());
        assert!(parse_cseq("1INVITE").is_err());
        assert!(parse_cseq("INVITE").is_err());
        assert!(parse_cseq("1 INVITE x").is_err());
    }
}
