//! The response builder (RFC 3261 §8.2.6, §21; RFC 3581 §4; RFC 3326), writing into a
//! caller-supplied, reused buffer with no other allocation.
//!
//! Copied from the request: every Via value in order (one line each, written canonically
//! without inner LWS; the top one gets `received` and `rport`), From, To (with our tag added
//! when absent), Call-ID, CSeq. Folded LWS in other copied values is written as one space. A `420` lists the request's `Require` values
//! in `Unsupported`.
//!
//! `received` and `rport` are **always** set on the top Via, to the source address the request
//! came from (any values already there are replaced): Tollgate answers every request to its
//! source address and port (DESIGN §2, step 8), so the Via says exactly where the answer went.
//! RFC 3261 §18.2.1 asks for `received` only when the address differs from sent-by, and
//! RFC 3581 §4 for `rport` only when requested; always adding both is harmless to clients and
//! keeps the bytes independent of what the request's Via claimed.
//!
//! Our To tag is derived from the Call-ID and the top Via branch (the whole top Via for
//! RFC 2543 requests without a branch), so a retransmission gets identical bytes.

use std::net::SocketAddr;

use super::header::{HeaderName, Headers};
use super::lex::{find_param, name_is, params_fast, split_values, trim_lws};
use super::uri::parse_port;
use super::via::{parse_head_fast, Via};
use super::write::{header, number_header, write_lws, write_source, write_text, write_u32};

pub use super::write::write_decimal;

/// The methods Tollgate handles, for `Allow` in `405` answers (DESIGN §2).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, OPTIONS";

/// The `Server` header value.
pub const SERVER: &str = concat!("Tollgate/", env!("CARGO_PKG_VERSION"));

/// The statuses Tollgate sends with their standard reason phrases (RFC 3261 §21): the phrase
/// alone, and the whole status line as a constant (written with one copy).
macro_rules! statuses {
    ($($code:literal => $phrase:literal,)*) => {
        /// The standard reason phrase of a status (RFC 3261 §21), or `""` for one Tollgate
        /// never sends.
        pub fn reason_phrase(status: u16) -> &'static str {
            match status {
                $($code => $phrase,)*
                _ => "",
            }
        }

        /// `SIP/2.0 <status> <standard reason phrase> CRLF` (RFC 3261 §7.2), for the
        /// statuses [`reason_phrase`] knows.
        fn status_line(status: u16) -> Option<&'static str> {
            match status {
                $($code => Some(concat!("SIP/2.0 ", stringify!($code), " ", $phrase, "\r\n")),)*
                _ => None,
            }
        }
    };
}

statuses! {
    100 => "Trying",
    200 => "OK",
    302 => "Moved Temporarily",
    400 => "Bad Request",
    403 => "Forbidden",
    404 => "Not Found",
    405 => "Method Not Allowed",
    413 => "Request Entity Too Large",
    416 => "Unsupported URI Scheme",
    420 => "Bad Extension",
    481 => "Call/Transaction Does Not Exist",
    483 => "Too Many Hops",
    484 => "Address Incomplete",
    500 => "Server Internal Error",
    503 => "Service Unavailable",
    505 => "Version Not Supported",
}

/// The last lines of every response: `Server`, and no body.
const TAIL: &str = concat!(
    "Server: Tollgate/",
    env!("CARGO_PKG_VERSION"),
    "\r\nContent-Length: 0\r\n\r\n"
);

/// What a response adds to the copied headers (DESIGN §2, "SIP answer contract").
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseExtras<'x> {
    /// `Contact: <uri>` (a 302's target, e.g. `sip:+442079460000@pstn-gb.example.net;user=phone`).
    pub contact: Option<&'x str>,
    /// Several Contacts, written as the whole header value (`<uri>;q=1.0, <uri>;q=0.9`): a
    /// Direct Routing call's gateways for the proxy to fail over (DESIGN §2). Written instead
    /// of `contact` when both are given.
    pub contacts: Option<&'x str>,
    /// `X-Tollgate-Basis`.
    pub basis: Option<&'x str>,
    /// `X-Tollgate-Max-Duration`, seconds.
    pub max_duration: Option<u32>,
    /// `X-Tollgate-Shadow`: the reason a 302 would have been a reject for, had shadow mode
    /// not made it report-only (DESIGN §2).
    pub shadow: Option<&'x str>,
    /// Q.850 cause for `Reason: Q.850;cause=N;text="<reason>"` (RFC 3326); needs `reason`.
    pub q850_cause: Option<u16>,
    /// `X-Tollgate-Reason`, and the text of `Reason`.
    pub reason: Option<&'x str>,
    /// `Retry-After`, seconds (503; 403 `rate_limit_reached`).
    pub retry_after: Option<u32>,
    /// Add `Allow: INVITE, ACK, CANCEL, OPTIONS` (405).
    pub allow: bool,
}

/// Writes the response to a request with these `headers` into `out` (cleared first).
///
/// `reason` overrides the standard reason phrase (a 400 says what was wrong); control
/// characters in it are dropped. `source` is where the request came from.
///
/// ```
/// use std::net::SocketAddr;
/// use tollgate_sip::{parse_message, write_response, Message, ResponseExtras, Transport};
///
/// let invite = b"INVITE sip:+442079460000@tollgate.example.net;user=phone SIP/2.0\r\n\
/// Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
/// Max-Forwards: 70\r\n\
/// From: <sip:+14255550101@contoso.com>;tag=1928301774\r\n\
/// To: <sip:+442079460000@tollgate.example.net;user=phone>\r\n\
/// Call-ID: a84b4c76e66710\r\n\
/// CSeq: 314159 INVITE\r\n\
/// Content-Length: 0\r\n\r\n";
/// let Ok(Message::Request(req)) = parse_message(invite, Transport::Udp) else { panic!() };
///
/// let source: SocketAddr = "192.0.2.10:5060".parse().unwrap();
/// let extras = ResponseExtras {
///     contact: Some("sip:+442079460000@pstn-gb.example.net;user=phone"),
///     basis: Some("international_pool"),
///     max_duration: Some(1800),
///     ..ResponseExtras::default()
/// };
/// // One buffer, reused for every answer: after the first, writing allocates nothing.
/// let mut out = Vec::with_capacity(1024);
/// write_response(&mut out, &req.headers, 302, None, source, &extras);
///
/// let text = std::str::from_utf8(&out).unwrap();
/// assert!(text.starts_with("SIP/2.0 302 Moved Temporarily\r\n"));
/// assert!(text.contains("Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;received=192.0.2.10;rport=5060\r\n"));
/// assert!(text.contains("Contact: <sip:+442079460000@pstn-gb.example.net;user=phone>\r\n"));
/// assert!(text.contains("X-Tollgate-Max-Duration: 1800\r\n"));
/// assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
/// ```
pub fn write_response(
    out: &mut Vec<u8>,
    headers: &Headers<'_>,
    status: u16,
    reason: Option<&str>,
    source: SocketAddr,
    extras: &ResponseExtras<'_>,
) {
    out.clear();
    match (reason, status_line(status)) {
        (None, Some(line)) => out.extend_from_slice(line.as_bytes()),
        _ => {
            out.extend_from_slice(b"SIP/2.0 ");
            write_u32(out, u32::from(status));
            out.push(b' ');
            write_text(out, reason.unwrap_or_else(|| reason_phrase(status)));
            out.extend_from_slice(b"\r\n");
        }
    }

    // Values hold CR LF only when the request had a folded line.
    let folded = headers.folded();
    let copy = |out: &mut Vec<u8>, value: &str| {
        if folded {
            write_lws(out, value);
        } else {
            out.extend_from_slice(value.as_bytes());
        }
    };
    let mut top_branch = None;
    // Every Via value, line by line (nested loops cost less than `Headers::values`).
    let mut i = 0;
    for line in headers.all(HeaderName::Via) {
        for value in split_values(line) {
            let top = i == 0;
            i += 1;
            out.extend_from_slice(b"Via: ");
            if top {
                if let Some(branch) = write_top_via_fast(out, value, source) {
                    top_branch = Some(branch.unwrap_or(value));
                    out.extend_from_slice(b"\r\n");
                    continue;
                }
            } else if is_canonical_via(value) {
                // Already canonical (one space, after the transport): copied as it is.
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
                continue;
            }
            match Via::parse(value) {
                Ok(via) => {
                    if top {
                        top_branch = Some(via.branch.unwrap_or(value));
                    }
                    write_via(out, &via, top.then_some(source));
                }
                Err(_) => write_lws(out, value),
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    let call_id = headers.first(HeaderName::CallId).unwrap_or_default();
    if let Some(from) = headers.first(HeaderName::From) {
        out.extend_from_slice(b"From: ");
        copy(out, from);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(to) = headers.first(HeaderName::To) {
        out.extend_from_slice(b"To: ");
        copy(out, to);
        if !has_tag(to) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(&to_tag(call_id, top_branch.unwrap_or_default()));
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Call-ID: ");
    copy(out, call_id);
    out.extend_from_slice(b"\r\n");
    if let Some(cseq) = headers.first(HeaderName::CSeq) {
        out.extend_from_slice(b"CSeq: ");
        copy(out, cseq);
        out.extend_from_slice(b"\r\n");
    }
    if status == 420 {
        // RFC 3261 §8.2.2.3: list what we do not support.
        for require in headers.all(HeaderName::Require) {
            header(out, b"Unsupported: ", require);
        }
    }
    write_extras(out, extras);
    out.extend_from_slice(TAIL.as_bytes());
}

/// Turns one of our own responses (`ours`, written by [`write_response`]) into another status
/// with other extras: the status line is replaced, the headers copied from the request (Via,
/// From, To with our tag, Call-ID, CSeq) are kept as they are, the rest is written anew.
///
/// The ledger uses it when a batch fails to commit: the 302 it held becomes a `503
/// store_unavailable` for the same transaction, without the request at hand.
pub fn rewrite_response(out: &mut Vec<u8>, ours: &[u8], status: u16, extras: &ResponseExtras<'_>) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    write_u32(out, u32::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let copied = [&b"Via: "[..], b"From: ", b"To: ", b"Call-ID: ", b"CSeq: "];
    // Our headers are one per line (folded values were unfolded when written).
    for line in ours.split(|&b| b == b'\n').skip(1) {
        if copied.iter().any(|h| line.starts_with(h)) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    write_extras(out, extras);
    out.extend_from_slice(TAIL.as_bytes());
}

/// The headers of [`ResponseExtras`], in the order of DESIGN §2.
fn write_extras(out: &mut Vec<u8>, x: &ResponseExtras<'_>) {
    if let Some(contacts) = x.contacts {
        out.extend_from_slice(b"Contact: ");
        write_text(out, contacts);
        out.extend_from_slice(b"\r\n");
    } else if let Some(contact) = x.contact {
        out.extend_from_slice(b"Contact: <");
        write_text(out, contact);
        out.extend_from_slice(b">\r\n");
    }
    if let Some(basis) = x.basis {
        header(out, b"X-Tollgate-Basis: ", basis);
    }
    if let Some(d) = x.max_duration {
        number_header(out, b"X-Tollgate-Max-Duration: ", d);
    }
    if let Some(shadow) = x.shadow {
        header(out, b"X-Tollgate-Shadow: ", shadow);
    }
    if let (Some(cause), Some(reason)) = (x.q850_cause, x.reason) {
        out.extend_from_slice(b"Reason: Q.850;cause=");
        write_u32(out, u32::from(cause));
        out.extend_from_slice(b";text=\"");
        for c in reason.bytes().filter(|&c| c >= b' ' && c != 0x7f) {
            if matches!(c, b'"' | b'\\') {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.extend_from_slice(b"\"\r\n");
    }
    if let Some(reason) = x.reason {
        header(out, b"X-Tollgate-Reason: ", reason);
    }
    if let Some(s) = x.retry_after {
        number_header(out, b"Retry-After: ", s);
    }
    if x.allow {
        header(out, b"Allow: ", ALLOW);
    }
}

/// A Via value, written canonically (no LWS inside); the top one (`source` given) without
/// its `received` and `rport`, then with those of the source address (RFC 3581 §4).
pub(crate) fn write_via(out: &mut Vec<u8>, via: &Via<'_>, source: Option<SocketAddr>) {
    write_via_head(out, via);
    for p in via.param_iter().flatten() {
        let ours = p.name.eq_ignore_ascii_case("received") || p.name.eq_ignore_ascii_case("rport");
        if ours && source.is_some() {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(p.name.as_bytes());
        if let Some(v) = p.value {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
    }
    if let Some(source) = source {
        write_source(out, source);
    }
}

/// `sent-protocol SP sent-by` of a Via, canonical.
fn write_via_head(out: &mut Vec<u8>, via: &Via<'_>) {
    for (part, sep) in [
        (via.protocol, b'/'),
        (via.version, b'/'),
        (via.transport, b' '),
    ] {
        out.extend_from_slice(part.as_bytes());
        out.push(sep);
    }
    out.extend_from_slice(via.host.as_bytes());
    if let Some(port) = via.port {
        out.push(b':');
        write_u32(out, u32::from(port));
    }
}

/// Whether a Via value has exactly one LWS byte, a space (after the transport): it is then
/// written as it is.
fn is_canonical_via(value: &str) -> bool {
    // Counting (no early exit) lets the compiler test many bytes per instruction.
    let b = value.as_bytes();
    let spaces: u32 = b.iter().map(|&c| u32::from(c == b' ')).sum();
    let others = b.iter().fold(0u8, |acc, &c| {
        acc | u8::from(c == b'\t') | u8::from(c == b'\r') | u8::from(c == b'\n')
    });
    spaces == 1 && others == 0
}

/// [`write_via`] for the top Via in its common form (the one [`Via::parse_fast`] accepts),
/// checked while it is written: the text before the parameters is already canonical, and so
/// are the parameters. Returns the `branch` parameter; `None` (nothing written) for any other
/// form.
pub(crate) fn write_top_via_fast<'v>(
    out: &mut Vec<u8>,
    value: &'v str,
    source: SocketAddr,
) -> Option<Option<&'v str>> {
    let via = parse_head_fast(value)?;
    let value = trim_lws(value);
    let head = value
        .get(..value.len().saturating_sub(via.params.len()))
        .unwrap_or_default();
    // A port written with leading zeros is rewritten without them.
    let h = head.as_bytes();
    let zero_port = via.port.is_some()
        && h.iter()
            .rposition(|&c| c == b':')
            .is_some_and(|colon| h.get(colon + 1) == Some(&b'0'));
    let mark = out.len();
    if zero_port {
        write_via_head(out, &via);
    } else {
        out.extend_from_slice(head.as_bytes());
    }
    // The checks of `Via::parse_fast`, with the writing of `write_via`.
    let mut branch = None;
    let written = params_fast(via.params, |name, value| {
        let ours = if name_is(name, "branch") {
            branch = Some(value?);
            false
        } else if name_is(name, "rport") {
            if let Some(p) = value {
                parse_port(p).ok()?;
            }
            true
        } else if name_is(name, "received") {
            value?;
            true
        } else {
            false
        };
        if !ours {
            out.push(b';');
            out.extend_from_slice(name.as_bytes());
            if let Some(v) = value {
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
            }
        }
        Some(())
    });
    if written.is_none() {
        out.truncate(mark);
        return None;
    }
    write_source(out, source);
    Some(branch)
}

/// Our To tag: 16 hex digits of FNV-1a over the Call-ID and the top Via branch.
pub fn to_tag(call_id: &str, branch: &str) -> [u8; 16] {
    let step = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    // Four bytes per loop turn (the multiplications stay serial; the loop overhead does not).
    let fnv = |h: u64, bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(4);
        let h = chunks
            .by_ref()
            .fold(h, |h, c| c.iter().fold(h, |h, &b| step(h, b)));
        chunks.remainder().iter().fold(h, |h, &b| step(h, b))
    };
    // Call-ID, a zero byte, the branch (plain loops: a chained iterator costs more per byte).
    let h = fnv(0xcbf2_9ce4_8422_2325, call_id.as_bytes());
    let h = fnv(step(h, 0), branch.as_bytes());
    // Two hex digits per byte of the hash, most significant first.
    let mut tag = [0u8; 16];
    for (pair, byte) in tag.chunks_exact_mut(2).zip(h.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    tag
}

/// Each byte as two lower-case hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let hex = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [hex[i >> 4], hex[i & 0xf]];
        i += 1;
    }
    t
};

/// Whether a To value carries a `tag` (RFC 3261 §19.3); a malformed one is treated as tagged, so
/// that nothing is appended to it.
fn has_tag(to: &str) -> bool {
    let params = match to.bytes().rposition(|c| c == b'>') {
        Some(i) => to.get(i + 1..),
        None => to.find(';').and_then(|i| to.get(i..)),
    };
    find_param(params.unwrap_or_default(), "tag").map_or(true, |t| t.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_via_fast_path_agrees() {
        let source: SocketAddr = "198.51.100.5:5060".parse().unwrap();
        for v in [
            "SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK9a4c.5e1f7a02;rport",
            "SIP/2.0/UDP h:05060;received=1.2.3.4;BRANCH=a;x;rport=7;y=z",
            "SIP/2.0/UDP h:0;branch=1;branch=2",
            "SIP/2.0/UDP h;rport=99999",
            "SIP/2.0/UDP h;branch",
            "SIP/2.0/UDP h ;branch=1",
            "SIP/2.0/TCP [::1]:5060;branch=1",
        ] {
            let mut fast = b"x".to_vec();
            let branch = write_top_via_fast(&mut fast, v, source);
            let mut full = b"x".to_vec();
            match branch {
                Some(branch) => {
                    let via = Via::parse(v).unwrap();
                    write_via(&mut full, &via, Some(source));
                    assert_eq!(branch, via.branch, "{v}");
                }
                None => assert_eq!(fast, full, "{v}"),
            }
            assert_eq!(String::from_utf8(fast), String::from_utf8(full), "{v}");
        }
    }

    #[test]
    fn status_lines_are_the_phrases() {
        for status in 100..700 {
            match status_line(status) {
                Some(line) => assert_eq!(
                    line,
                    format!("SIP/2.0 {status} {}\r\n", reason_phrase(status))
                ),
                None => assert_eq!(reason_phrase(status), ""),
            }
        }
    }

    #[test]
    fn canonical_vias() {
        assert!(is_canonical_via("SIP/2.0/UDP h;branch=1"));
        assert!(!is_canonical_via("SIP/2.0/UDP  h"));
        assert!(!is_canonical_via("SIP/2.0/UDP\th"));
        assert!(!is_canonical_via("SIP/2.0/UDP h\r\n ;x"));
        assert!(!is_canonical_via("SIP/2.0/UDP"));
    }

    #[test]
    fn tag_is_fnv1a_of_call_id_zero_branch() {
        for (call_id, branch) in [("", ""), ("6a1c2e0b@h", "z9hG4bK9a4c.5e1f7a02"), ("x", "")] {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in call_id.bytes().chain([0]).chain(branch.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            assert_eq!(to_tag(call_id, branch), *format!("{h:016x}").as_bytes());
        }
    }

    /// A voice-routed 302 (DESIGN §2): several Contacts in one header, in place of `contact`,
    /// control characters dropped like any written value.
    #[test]
    fn several_contacts_are_one_header() {
        let mut out = Vec::new();
        let x = ResponseExtras {
            contact: Some("sip:ignored@x"),
            contacts: Some("<sip:+1@a;user=phone>;q=1.0, <sip:+1@b;user=phone>;q=0.9\r\nX: y"),
            basis: Some("direct_routing"),
            ..ResponseExtras::default()
        };
        write_extras(&mut out, &x);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Contact: <sip:+1@a;user=phone>;q=1.0, <sip:+1@b;user=phone>;q=0.9X: y\r\n\
             X-Tollgate-Basis: direct_routing\r\n"
        );
    }

    #[test]
    fn tag_is_stable_hex() {
        let t = to_tag("abc@host", "z9hG4bK1");
        assert_eq!(t, to_tag("abc@host", "z9hG4bK1"));
        assert_ne!(t, to_tag("abc@host", "z9hG4bK2"));
        assert!(t.iter().all(u8::is_ascii_hexdigit));
    }
}
