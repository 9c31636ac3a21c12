//! Writing the INVITEs and ACKs of the load, as a proxy would send them.
//!
//! The sender must be cheap (100k+ INVITEs/s from a core it shares with the daemon): every
//! message is assembled in a reused buffer from pieces prepared once — the fixed header lines
//! are one pre-rendered template per message part, only the caller, the dialed number and the
//! call index change — with no formatting machinery and no allocation per message.
//!
//! The call index is in the Call-ID (`{scramble}-load-{run}-{index}`), the Via branch
//! (`z9hG4bK{run}x{index}`) and the From tag: a response is matched to its call by parsing the
//! index back out of its Call-ID (an array index, no map). `run` keeps the Call-IDs of two runs
//! against one daemon apart (its transaction cache and reservations are keyed by Call-ID). The
//! Call-ID starts with 16 hex digits scrambled from run and index ([`scramble`]) because real
//! user agents make Call-IDs random (RFC 3261 §8.1.1.4 recommends cryptographic randomness):
//! whatever the daemon keys by Call-ID (hash maps, the ledger's tables) must be measured with
//! keys that do not arrive in order.

/// Transport names in the Via header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Udp,
    Tcp,
}

/// A small SDP offer, as a proxy would forward it (the daemon ignores it but parses past it).
const SDP: &[u8] = b"v=0\r\no=- 3937844372 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

/// Renders the messages of one run from one local address.
#[derive(Clone, Debug)]
pub struct Renderer {
    run: u32,
    /// `SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK{run}x`
    via_head: Vec<u8>,
    /// `load-{run}-`
    call_id_prefix: Vec<u8>,
    /// `Contact: <sip:load@127.0.0.1:40000>` line of the INVITE.
    contact: Vec<u8>,
    sdp: bool,
}

impl Renderer {
    /// `local` is the address the daemon sees (`host:port`); `sdp` adds an SDP body.
    pub fn new(run: u32, transport: Via, local: &str, sdp: bool) -> Renderer {
        let t = match transport {
            Via::Udp => "UDP",
            Via::Tcp => "TCP",
        };
        Renderer {
            run,
            via_head: format!("Via: SIP/2.0/{t} {local};rport;branch=z9hG4bK{run}x").into_bytes(),
            call_id_prefix: call_id_prefix(run).into_bytes(),
            contact: format!("Contact: <sip:load@{local};transport={t}>\r\n").into_bytes(),
            sdp,
        }
    }

    /// The Call-ID prefix responses are matched on.
    pub fn call_id_prefix(&self) -> &[u8] {
        &self.call_id_prefix
    }

    /// The INVITE of call `index` from `caller` (a URI) to `dial`, replacing `out`.
    pub fn invite(&self, out: &mut Vec<u8>, index: u64, caller: &str, dial: &str) {
        out.clear();
        self.common(out, b"INVITE", index, caller, dial);
        out.extend_from_slice(b"To: <sip:");
        out.extend_from_slice(dial.as_bytes());
        out.extend_from_slice(b"@tollgate.example.net;user=phone>\r\nCSeq: 1 INVITE\r\n");
        out.extend_from_slice(&self.contact);
        if self.sdp {
            out.extend_from_slice(b"Content-Type: application/sdp\r\nContent-Length: ");
            push_u64(out, SDP.len() as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(SDP);
        } else {
            out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        }
    }

    /// The ACK of call `index`'s non-2xx final response (RFC 3261 §17.1.1.3): the INVITE's
    /// Request-URI, top Via (same branch), From, Call-ID and CSeq number, and the response's
    /// `To` (with the tag it added), replacing `out`.
    pub fn ack(&self, out: &mut Vec<u8>, index: u64, caller: &str, dial: &str, to: &[u8]) {
        out.clear();
        self.common(out, b"ACK", index, caller, dial);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(to);
        out.extend_from_slice(b"\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    }

    /// Request line, Via, Max-Forwards, From, Call-ID.
    fn common(&self, out: &mut Vec<u8>, method: &[u8], index: u64, caller: &str, dial: &str) {
        out.extend_from_slice(method);
        out.extend_from_slice(b" sip:");
        out.extend_from_slice(dial.as_bytes());
        out.extend_from_slice(b"@tollgate.example.net;user=phone SIP/2.0\r\n");
        out.extend_from_slice(&self.via_head);
        push_u64(out, index);
        out.extend_from_slice(b"\r\nMax-Forwards: 70\r\nFrom: <");
        out.extend_from_slice(caller.as_bytes());
        out.extend_from_slice(b">;tag=l");
        push_u64(out, index);
        out.extend_from_slice(b"\r\nCall-ID: ");
        push_hex(out, scramble(self.run, index));
        out.push(b'-');
        out.extend_from_slice(&self.call_id_prefix);
        push_u64(out, index);
        out.extend_from_slice(b"\r\n");
    }
}

/// The random-looking head of call `index`'s Call-ID: splitmix64 of run and index (a
/// bijection, so no two calls of a run share it).
pub fn scramble(run: u32, index: u64) -> u64 {
    let mut z = index ^ (u64::from(run) << 40) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Appends `n` as 16 lower-case hex digits.
fn push_hex(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

/// `load-{run}-`: the Call-ID of call `i` is `{scramble}-`, this, then `i`.
pub fn call_id_prefix(run: u32) -> String {
    format!("load-{run}-")
}

/// Appends the decimal digits of `n` (the daemon's own digit writer).
pub use tollgate_sip::write_decimal as push_u64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::response;

    #[test]
    fn digits() {
        for n in [0, 7, 10, 12345, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
    }

    #[test]
    fn invite_and_ack_parse_and_agree() {
        let r = Renderer::new(42, Via::Udp, "127.0.0.1:40000", true);
        let mut inv = Vec::new();
        r.invite(&mut inv, 1234, "sip:alice@contoso.com", "+12065550100");
        let text = String::from_utf8(inv.clone()).unwrap();
        assert!(
            text.starts_with("INVITE sip:+12065550100@tollgate.example.net;user=phone SIP/2.0\r\n")
        );
        let call_id = format!("\r\nCall-ID: {:016x}-load-42-1234\r\n", scramble(42, 1234));
        assert!(text.contains(&call_id), "{text}");
        assert!(text.contains(";branch=z9hG4bK42x1234\r\n"), "{text}");
        // The daemon's own parser accepts it, and frames it on TCP.
        let parsed = tollgate_sip::parse_message(&inv, tollgate_sip::Transport::Udp);
        assert!(parsed.is_ok(), "{parsed:?}");
        assert_eq!(response::frame_len(&inv), Ok(Some(inv.len())));

        let mut ack = Vec::new();
        r.ack(
            &mut ack,
            1234,
            "sip:alice@contoso.com",
            "+12065550100",
            b"<sip:x@y>;tag=9",
        );
        let text = String::from_utf8(ack.clone()).unwrap();
        assert!(text.starts_with("ACK sip:+12065550100@tollgate.example.net;user=phone"));
        assert!(
            text.contains("\r\nTo: <sip:x@y>;tag=9\r\nCSeq: 1 ACK\r\n"),
            "{text}"
        );
        assert!(text.contains(";branch=z9hG4bK42x1234\r\n"), "{text}");
        assert!(text.contains("From: <sip:alice@contoso.com>;tag=l1234\r\n"));
        let parsed = tollgate_sip::parse_message(&ack, tollgate_sip::Transport::Udp);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
