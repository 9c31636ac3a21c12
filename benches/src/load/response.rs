//! Just enough of a SIP response to match it to its call and ACK it: the status code, the
//! Call-ID, the `To` header value (it carries the tag the ACK must repeat, RFC 3261
//! §17.1.1.3) and the CSeq. Hand-written and borrowing: the receive loop runs for every
//! datagram at 100k+/s and must not allocate; anything it does not understand is `None` and is
//! counted as unparsable by the caller, never a panic (the bytes come from the network).

use memchr::memmem;

/// The parts of a response the load generator uses, borrowed from the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    pub call_id: &'a [u8],
    /// The whole `To` header value, tag included.
    pub to: &'a [u8],
    pub cseq: u32,
    pub cseq_method: &'a [u8],
}

/// Parses the head of a response; `None` for a request or anything malformed.
pub fn parse(buf: &[u8]) -> Option<Response<'_>> {
    let mut lines = Lines { rest: buf };
    let status_line = lines.next()?;
    let status = status_line.strip_prefix(b"SIP/2.0 ")?;
    let status = parse_u32(status.get(..3)?)?;
    if !(100..700).contains(&status) {
        return None;
    }
    let (mut call_id, mut to, mut cseq) = (None, None, None);
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (trim(&line[..colon]), trim(&line[colon + 1..]));
        if eq(name, b"call-id") || eq(name, b"i") {
            call_id = Some(value);
        } else if eq(name, b"to") || eq(name, b"t") {
            to = Some(value);
        } else if eq(name, b"cseq") {
            cseq = Some(value);
        }
    }
    let cseq = cseq?;
    let space = memchr::memchr(b' ', cseq)?;
    Some(Response {
        status: status as u16,
        call_id: call_id?,
        to: to?,
        cseq: parse_u32(&cseq[..space])?,
        cseq_method: trim(&cseq[space + 1..]),
    })
}

/// The call index in a Call-ID `"{16 hex digits}-{prefix}{index}"` (see
/// [`super::invite::Renderer`]); `None` for someone else's Call-ID.
pub fn call_index(call_id: &[u8], prefix: &[u8]) -> Option<u64> {
    let (head, rest) = call_id.split_at_checked(17)?;
    if head[16] != b'-' || !head[..16].iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digits = rest.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// The length of the first complete message in a TCP stream buffer (RFC 3261 §18.3: framed
/// by `Content-Length`): `Ok(None)` until the head and body are all there, `Err(())` when the
/// head has no usable `Content-Length` (the stream cannot be framed any more).
#[allow(clippy::result_unit_err)]
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ()> {
    // Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped by the caller.
    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > 64 * 1024 {
            Err(())
        } else {
            Ok(None)
        };
    };
    let head = &buf[..end];
    let mut body = None;
    for line in (Lines { rest: head }).skip(1) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim(&line[..colon]);
        if eq(name, b"content-length") || eq(name, b"l") {
            body = Some(parse_u32(trim(&line[colon + 1..])).ok_or(())? as usize);
        }
    }
    let total = end + 4 + body.ok_or(())?;
    Ok((buf.len() >= total).then_some(total))
}

/// Lines ending in CRLF (or a bare LF).
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

fn eq(a: &[u8], lower: &[u8]) -> bool {
    a.eq_ignore_ascii_case(lower)
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const R302: &[u8] = b"SIP/2.0 302 Moved Temporarily\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bKx;rport=4000;received=127.0.0.1\r\nFrom: <sip:alice@contoso.com>;tag=l7\r\nt: <sip:+12065550100@tg;user=phone>;tag=abc\r\nCall-ID: 0123456789abcdef-load-9-12345\r\nCSeq: 1 INVITE\r\nContact: <sip:+12065550100@pstn-us.example.net;user=phone>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn parses_a_302() {
        let r = parse(R302).unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(r.call_id, b"0123456789abcdef-load-9-12345");
        assert_eq!(r.to, b"<sip:+12065550100@tg;user=phone>;tag=abc");
        assert_eq!((r.cseq, r.cseq_method), (1, &b"INVITE"[..]));
        assert_eq!(call_index(r.call_id, b"load-9-"), Some(12345));
        assert_eq!(call_index(r.call_id, b"load-8-"), None);
        assert_eq!(call_index(b"0123456789abcdef-load-9-12x", b"load-9-"), None);
        assert_eq!(call_index(b"0123456789abcdef-load-9-", b"load-9-"), None);
        assert_eq!(call_index(b"0123456789abcdeg-load-9-1", b"load-9-"), None);
        assert_eq!(call_index(b"load-9-12345", b"load-9-"), None);
    }

    #[test]
    fn rejects_garbage_and_requests() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"INVITE sip:x SIP/2.0\r\n\r\n"), None);
        assert_eq!(parse(b"SIP/2.0 9"), None);
        assert_eq!(parse(b"SIP/2.0 302 x\r\nCall-ID: a\r\n\r\n"), None);
        assert_eq!(
            parse(b"SIP/2.0 302 x\r\nCall-ID: a\r\nTo: b\r\nCSeq: x INVITE\r\n"),
            None
        );
        for n in 0..R302.len() {
            let _ = parse(&R302[..n]);
            let _ = frame_len(&R302[..n]);
        }
    }

    #[test]
    fn frames_a_stream() {
        assert_eq!(frame_len(&R302[..20]), Ok(None));
        assert_eq!(frame_len(R302), Ok(Some(R302.len())));
        let mut two = R302.to_vec();
        two.extend_from_slice(R302);
        assert_eq!(frame_len(&two), Ok(Some(R302.len())));
        assert_eq!(frame_len(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nab"), Ok(None));
        assert_eq!(
            frame_len(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nabc"),
            Ok(Some(27))
        );
        assert_eq!(frame_len(b"SIP/2.0 200 OK\r\n\r\n"), Err(()));
    }
}
