//! The message parser: start line, header section and body framing (RFC 3261 §7, §18.3, §20),
//! without copying and without heap allocation; and TCP stream framing.
//!
//! Accepted: leading CRLFs before the start line (RFC 3261 §7.5), case-insensitive and compact
//! header names, white space before the colon, folded lines, repeated header lines.
//! Rejected: bare CR or LF, lines longer than [`MAX_LINE_LEN`], more than
//! [`MAX_HEADERS`](super::header::MAX_HEADERS) header lines, messages longer than
//! [`MAX_MESSAGE_LEN`], and header sections that are not UTF-8 — which [`latin1_head`] can
//! repair first (RFC 3261 §25 asks for UTF-8, but real user agents send Latin-1 display names).

use super::error::{Fault, ParseError};
use super::header::{HeaderName, Headers};
use super::lex::{contains, find2, is_token, parse_u32, TOKEN};
use super::message::{Message, Response};
use super::validate::{validate, RequestLine};
use super::Transport;

/// Longest message accepted (the largest UDP payload).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Longest physical line accepted (a folded header may span several).
pub const MAX_LINE_LEN: usize = 8_192;

/// Parses one message: a UDP datagram, or one TCP frame found by [`frame_len`].
///
/// A request comes back validated (the headers a redirect server reads are all present and
/// well formed); a response comes back as its status line only, to be dropped. On error,
/// [`ParseError::headers`] says whether (and to whom) a response can be sent. On UDP a missing
/// Content-Length means "to the end of the datagram" (RFC 3261 §18.3); octets after the body
/// are ignored (RFC 4475 §3.1.1.8).
///
/// ```
/// use tollgate_sip::{parse_message, Message, Method, Transport};
///
/// let datagram = b"INVITE sip:+442079460000@tollgate.example.net;user=phone SIP/2.0\r\n\
/// Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
/// Max-Forwards: 70\r\n\
/// From: <sip:+14255550101@contoso.com>;tag=1928301774\r\n\
/// To: <sip:+442079460000@tollgate.example.net;user=phone>\r\n\
/// Call-ID: a84b4c76e66710\r\n\
/// CSeq: 314159 INVITE\r\n\
/// Content-Length: 0\r\n\r\n";
///
/// let Ok(Message::Request(req)) = parse_message(datagram, Transport::Udp) else {
///     panic!("a valid INVITE");
/// };
/// assert_eq!(req.method, Method::Invite);
/// assert_eq!(req.uri.user, Some("+442079460000"));
/// assert_eq!(req.from.uri.user, Some("+14255550101"));
/// assert_eq!(req.call_id, "a84b4c76e66710"); // borrowed from `datagram`, not copied
///
/// // Garbage is an error; one without headers to answer with is dropped, not answered.
/// let err = parse_message(b"hello\r\n\r\n", Transport::Udp).unwrap_err();
/// assert!(!err.addressable());
/// ```
#[allow(clippy::result_large_err)] // the error carries the headers to answer with, on the stack
pub fn parse_message(buf: &[u8], transport: Transport) -> Result<Message<'_>, ParseError<'_>> {
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(ParseError::silent(Fault::bad("Message too large")));
    }
    // The header section must be UTF-8; the body may be anything. Messages are nearly always
    // ASCII throughout, which an OR over all bytes (vector code, no early exit) finds at a
    // fraction of the cost of UTF-8 validation.
    let text = if buf.iter().fold(0u8, |acc, &c| acc | c) < 0x80 {
        // SAFETY: every byte is below 0x80: ASCII, which is valid UTF-8.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(buf)
        }
    } else {
        match std::str::from_utf8(buf) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(buf.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        }
    };
    let b = text.as_bytes();
    let start = skip_crlfs(b);
    let line = match next_line(b, start) {
        Ok(Some(line)) => line,
        Ok(None) => return Err(ParseError::silent(incomplete(buf, b))),
        Err(f) => return Err(ParseError::silent(f)),
    };
    let first = slice(text, line.start, line.end).map_err(ParseError::silent)?;
    if first.starts_with("SIP/") {
        return parse_status_line(first)
            .map(Message::Response)
            .map_err(ParseError::silent);
    }
    let request_line = parse_request_line(first);

    let mut headers = Headers::new(text);
    let mut content_length = None;
    let mut folded = false;
    let scanned = scan_headers(b, line.next, &mut folded, |name, vs, ve| {
        let value = slice(text, vs, ve)?;
        if name == HeaderName::ContentLength {
            content_length = Some(match content_length {
                None => parse_content_length(value)?,
                Some(_) => return Err(Fault::bad("Multiple Content-Length values")),
            });
        }
        headers.push(name, vs, ve)
    });
    if folded {
        headers.mark_folded();
    }
    let body_start = match scanned {
        Ok(Some(at)) => at,
        Ok(None) => return Err(ParseError::with_headers(incomplete(buf, b), headers)),
        Err(f) => return Err(ParseError::with_headers(f, headers)),
    };
    let body_end = match (content_length, transport) {
        (Some(n), _) => body_start + n as usize,
        (None, Transport::Udp) => buf.len(),
        (None, Transport::Tcp) => {
            let f = Fault::bad("Missing Content-Length");
            return Err(ParseError::with_headers(f, headers));
        }
    };
    let Some(body) = buf.get(body_start..body_end) else {
        let f = Fault::bad("Content-Length larger than message");
        return Err(ParseError::with_headers(f, headers));
    };
    validate(request_line, headers, body)
}

/// The length of the first complete message at the start of a TCP stream buffer
/// (RFC 3261 §18.3: framed by Content-Length, which is mandatory on streams), including any
/// CRLF keep-alives (RFC 5626 §3.5.1) before it; `Ok(None)` until it is all there.
///
/// An error (never addressable by itself) means the stream cannot be framed any more (missing or bad Content-Length, a
/// message over [`MAX_MESSAGE_LEN`]): the daemon answers if it can (parsing the head with
/// [`parse_message`]) and closes the connection.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Fault> {
    let start = skip_crlfs(buf);
    let too_large = Fault::bad("Message too large");
    let Some(line) = next_line(buf, start)? else {
        return if buf.len() - start > MAX_LINE_LEN {
            Err(too_large)
        } else {
            Ok(None)
        };
    };
    let mut content_length = None;
    let scanned = scan_headers(buf, line.next, &mut false, |name, vs, ve| {
        if name == HeaderName::ContentLength {
            let value = std::str::from_utf8(buf.get(vs..ve).unwrap_or_default())
                .map_err(|_| Fault::bad("Malformed Content-Length"))?;
            if content_length
                .replace(parse_content_length(value)?)
                .is_some()
            {
                return Err(Fault::bad("Multiple Content-Length values"));
            }
        }
        Ok(())
    })?;
    let Some(body_start) = scanned else {
        return if buf.len() > MAX_MESSAGE_LEN {
            Err(too_large)
        } else {
            Ok(None)
        };
    };
    let n = content_length.ok_or(Fault::bad("Missing Content-Length"))?;
    let end = body_start + n as usize;
    if end > MAX_MESSAGE_LEN {
        return Err(too_large);
    }
    Ok((end <= buf.len()).then_some(end))
}

/// Repairs a header section that is not UTF-8 by reading each byte of every invalid sequence
/// as Latin-1 (ISO 8859-1: byte `0xE9` is `é`), writing the repaired message to `out`; the
/// body and the valid UTF-8 around the bad bytes are copied unchanged. Returns `false` (and
/// leaves `out` alone) when the head is already UTF-8, or when the repaired message would be
/// longer than [`MAX_MESSAGE_LEN`].
///
/// RFC 3261 §25 has UTF-8 in quoted strings (`UTF8-NONASCII`), but user agents and PBXs in the
/// field send Latin-1 display names (`From: "Jos\xe9" <sip:...>`); the display name takes no
/// part in a decision, so such a request is parsed from the repaired copy and answered like any
/// other, rather than dropped without an answer. Bad bytes elsewhere (in a URI) make the copy
/// fail to parse with the usual, addressable 400. Content-Length counts the body only, so it
/// still holds after the head grew. No heap allocation here beyond what `out` needs to grow:
/// the caller reuses it.
pub fn latin1_head(buf: &[u8], out: &mut Vec<u8>) -> bool {
    let head_len = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    let (head, body) = buf.split_at(head_len);
    if std::str::from_utf8(head).is_ok() {
        return false;
    }
    let non_ascii = head.iter().filter(|&&b| b >= 0x80).count();
    if buf.len() + non_ascii > MAX_MESSAGE_LEN {
        return false;
    }
    out.clear();
    let mut rest = head;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.extend_from_slice(valid.as_bytes());
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.extend_from_slice(valid);
                let bad_len = e.error_len().unwrap_or(after.len());
                let (bad, after) = after.split_at(bad_len.min(after.len()));
                for &b in bad {
                    // Latin-1 is the first 256 code points of Unicode.
                    let mut utf8 = [0u8; 2];
                    out.extend_from_slice(char::from(b).encode_utf8(&mut utf8).as_bytes());
                }
                rest = after;
            }
        }
    }
    out.extend_from_slice(body);
    true
}

/// Why a message without a complete head failed: truncated, or not UTF-8.
fn incomplete(buf: &[u8], text: &[u8]) -> Fault {
    if text.len() < buf.len() {
        Fault::bad("Header section is not UTF-8")
    } else {
        Fault::bad("Missing end of header section")
    }
}

/// Slices `text` at offsets found by the byte scanners (always at ASCII delimiters).
fn slice(text: &str, start: usize, end: usize) -> Result<&str, Fault> {
    text.get(start..end)
        .ok_or(Fault::bad("Header section is not UTF-8"))
}

/// Offset of the first byte after any leading CRLF pairs.
fn skip_crlfs(b: &[u8]) -> usize {
    let mut i = 0;
    while b.get(i..i + 2) == Some(b"\r\n") {
        i += 2;
    }
    i
}

/// One physical line: `[start, end)` without its CRLF; `next` is the offset after the CRLF.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

/// The line starting at `pos`; `Ok(None)` when no CRLF follows yet.
#[inline]
fn next_line(b: &[u8], pos: usize) -> Result<Option<Line>, Fault> {
    let rest = b.get(pos..).unwrap_or_default();
    let Some(i) = find2(b'\r', b'\n', rest) else {
        return if rest.len() > MAX_LINE_LEN {
            Err(Fault::bad("Line too long"))
        } else {
            Ok(None)
        };
    };
    if i > MAX_LINE_LEN {
        return Err(Fault::bad("Line too long"));
    }
    match (rest[i], rest.get(i + 1)) {
        (b'\r', Some(b'\n')) => Ok(Some(Line {
            start: pos,
            end: pos + i,
            next: pos + i + 2,
        })),
        (b'\r', None) => Ok(None),
        _ => Err(Fault::bad("Bare CR or LF")),
    }
}

/// Walks the header lines from `pos`, joining folded continuation lines (RFC 3261 §7.3.1), and
/// calls `f(name, value_start, value_end)` for each header, the value trimmed of LWS. Returns
/// the offset of the body, or `None` when the empty line has not arrived. `folded` is set when
/// a line was folded.
fn scan_headers(
    b: &[u8],
    mut pos: usize,
    folded: &mut bool,
    mut f: impl FnMut(HeaderName, usize, usize) -> Result<(), Fault>,
) -> Result<Option<usize>, Fault> {
    // The header being read: (name, value start, value end).
    let mut pending: Option<(HeaderName, usize, usize)> = None;
    // Inline (a closure here would be a call per header line).
    #[inline(always)]
    fn flush(
        b: &[u8],
        p: Option<(HeaderName, usize, usize)>,
        f: &mut impl FnMut(HeaderName, usize, usize) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        match p {
            Some((name, mut vs, mut ve)) => {
                while vs < ve && super::lex::is_lws(b[vs]) {
                    vs += 1;
                }
                while ve > vs && super::lex::is_lws(b[ve - 1]) {
                    ve -= 1;
                }
                f(name, vs, ve)
            }
            None => Ok(()),
        }
    }
    loop {
        let Some(line) = next_line(b, pos)? else {
            return Ok(None);
        };
        pos = line.next;
        let text = &b[line.start..line.end];
        if let Some(b' ' | b'\t') = text.first() {
            match pending.as_mut() {
                Some(p) => {
                    p.2 = line.end;
                    *folded = true;
                }
                None => return Err(Fault::bad("Folded line without header")),
            }
            continue;
        }
        // The header before is complete (one call site: `f` is inlined here).
        flush(b, pending.take(), &mut f)?;
        if text.is_empty() {
            return Ok(Some(line.next));
        }
        let (name, colon) = match HeaderName::canonical_prefix(text) {
            Some(found) => found,
            None => {
                // Usually the name runs straight to the colon.
                let n = text.iter().position(|&c| !TOKEN[usize::from(c)]);
                let (name, colon) = match n {
                    Some(n) if n > 0 && text[n] == b':' => (&text[..n], n),
                    _ => name_and_colon(text)?,
                };
                (HeaderName::from_bytes(name), colon)
            }
        };
        let vs = line.start + colon + 1;
        pending = Some((name, vs, line.end));
    }
}

/// The header name of a line (trimmed of white space before the colon) and the colon's offset.
fn name_and_colon(text: &[u8]) -> Result<(&[u8], usize), Fault> {
    let colon = text
        .iter()
        .position(|&c| c == b':')
        .ok_or(Fault::bad("Header line without colon"))?;
    let name = text[..colon].trim_ascii_end();
    if name.is_empty() || !name.iter().all(|&c| is_token(c)) {
        return Err(Fault::bad("Invalid header name"));
    }
    Ok((name, colon))
}

/// `Content-Length = 1*DIGIT` (RFC 3261 §20.14), at most [`MAX_MESSAGE_LEN`].
fn parse_content_length(value: &str) -> Result<u32, Fault> {
    let trimmed = super::lex::trim_lws(value);
    if trimmed.contains(',') {
        return Err(Fault::bad("Multiple Content-Length values"));
    }
    let n = parse_u32(trimmed).ok_or(Fault::bad("Malformed Content-Length"))?;
    if n as usize > MAX_MESSAGE_LEN {
        return Err(Fault::bad("Content-Length too large"));
    }
    Ok(n)
}

/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase` (RFC 3261 §7.2).
fn parse_status_line(line: &str) -> Result<Response<'_>, Fault> {
    const BAD: Fault = Fault::bad("Malformed status line");
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().ok_or(BAD)?;
    let code = parts.next().ok_or(BAD)?;
    let reason = parts.next().ok_or(BAD)?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(Fault {
            status: 505,
            reason: "Version Not Supported",
        });
    }
    let status = (code.len() == 3)
        .then(|| parse_u32(code))
        .flatten()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (100..700).contains(n))
        .ok_or(BAD)?;
    Ok(Response { status, reason })
}

/// `Request-Line = Method SP Request-URI SP SIP-Version` (RFC 3261 §7.1, §25.1), split on
/// single spaces: extra or trailing white space is malformed (RFC 4475 §3.1.2.8–10).
fn parse_request_line(line: &str) -> Result<RequestLine<'_>, Fault> {
    // The common form, `token SP URI SP "SIP/2.0"`, without splitting.
    let b = line.as_bytes();
    let m = b
        .iter()
        .position(|&c| !TOKEN[usize::from(c)])
        .unwrap_or(b.len());
    let v = b.len().saturating_sub(8);
    if m > 0
        && v > m + 1
        && b[m] == b' '
        && (b[v..] == *b" SIP/2.0" || b[v..].eq_ignore_ascii_case(b" SIP/2.0"))
        && !contains(&b[m + 1..v], b' ')
    {
        if let (Some(method), Some(uri)) = (line.get(..m), line.get(m + 1..v)) {
            return Ok(RequestLine { method, uri });
        }
    }
    parse_request_line_full(line)
}

/// [`parse_request_line`] for any other form (and for errors).
fn parse_request_line_full(line: &str) -> Result<RequestLine<'_>, Fault> {
    const BAD: Fault = Fault::bad("Malformed Request-Line");
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if !super::lex::is_token_str(method) || uri.is_empty() {
        return Err(BAD);
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let looks_like_sip = version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            && version
                .get(4..)
                .and_then(|v| v.split_once('.'))
                .is_some_and(|(a, b)| parse_u32(a).is_some() && parse_u32(b).is_some());
        return Err(if looks_like_sip {
            Fault {
                status: 505,
                reason: "Version Not Supported",
            }
        } else {
            BAD
        });
    }
    Ok(RequestLine { method, uri })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let msg = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nX: y\r\n z\r\n\r\nabcINVITE";
        assert_eq!(frame_len(msg).unwrap(), Some(msg.len() - 6));
        assert_eq!(frame_len(&msg[..20]).unwrap(), None);
        assert_eq!(frame_len(&msg[..msg.len() - 8]).unwrap(), None);
        assert_eq!(frame_len(b"\r\n\r\n").unwrap(), None);
        assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n\r\n").is_err());
        assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\n").is_err());
        assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999\r\n\r\n").is_err());
    }

    #[test]
    fn latin1_display_name() {
        let msg =
            b"INVITE sip:+14255550100@t SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: \"Jos\xe9 M\xfcller\" <sip:+14255550101@contoso.com>;tag=1\r\nTo: <sip:+14255550100@t>\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 2\r\n\r\n\xff\xfe";
        let e = parse_message(msg, Transport::Udp).unwrap_err();
        assert!(
            e.headers.is_none(),
            "not UTF-8: cannot be addressed as it is"
        );
        let mut fixed = Vec::new();
        assert!(latin1_head(msg, &mut fixed));
        let Ok(Message::Request(r)) = parse_message(&fixed, Transport::Udp) else {
            panic!("repaired copy parses");
        };
        assert_eq!(r.from.display, Some("\"Jos\u{e9} M\u{fc}ller\""));
        assert_eq!(r.from.uri.user, Some("+14255550101"));
        assert_eq!(r.body, b"\xff\xfe", "the body is copied as it is");
        // A head already UTF-8 (whatever the body) is left alone.
        let mut untouched = Vec::new();
        assert!(!latin1_head(&fixed, &mut untouched));
        assert!(untouched.is_empty());
        // A cut-off sequence at the end of an unterminated head is repaired too.
        assert!(latin1_head(b"INVITE \xc3", &mut fixed));
        assert_eq!(fixed, "INVITE \u{c3}".as_bytes());
    }

    #[test]
    fn lines() {
        assert!(next_line(b"abc\ndef", 0).is_err());
        assert!(next_line(b"abc\rdef", 0).is_err());
        assert!(next_line(b"abc\r", 0).unwrap().is_none());
        let long = vec![b'a'; MAX_LINE_LEN + 1];
        assert!(next_line(&long, 0).is_err());
    }

    #[test]
    fn start_lines() {
        assert_eq!(
            parse_status_line("SIP/2.0 100 ").unwrap(),
            Response {
                status: 100,
                reason: ""
            }
        );
        assert!(parse_status_line("SIP/2.0 4294967301 better not break the receiver").is_err());
        assert!(parse_request_line("INVITE  sip:a@b SIP/2.0").is_err());
        assert!(parse_request_line("OPTIONS sip:a@b SIP/2.0 ").is_err());
        assert_eq!(
            parse_request_line("INVITE sip:a@b SIP/7.0")
                .unwrap_err()
                .status,
            505
        );
        assert_eq!(
            parse_request_line("INVITE sip:a@b HTTP/1.1")
                .unwrap_err()
                .status,
            400
        );
    }
}
